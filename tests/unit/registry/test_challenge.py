from __future__ import annotations

import pytest

from dockyard.registry import merge_scopes, parse_challenges, repository_scope


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/busybox:pull"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        ("basic realm=x", [("basic", {"realm": "x"})]),
        (
            'Basic realm="a", Bearer realm="https://t/token", service=s',
            [("basic", {"realm": "a"}), ("bearer", {"realm": "https://t/token", "service": "s"})],
        ),
        (
            'Bearer realm="q\\"uote",error="insufficient_scope",Scope="repository:a:pull,push"',
            [
                (
                    "bearer",
                    {
                        "realm": 'q"uote',
                        "error": "insufficient_scope",
                        "scope": "repository:a:pull,push",
                    },
                )
            ],
        ),
        (
            "Negotiate abc==, Basic realm=x",
            [("negotiate", {"": "abc=="}), ("basic", {"realm": "x"})],
        ),
        ("Negotiate", [("negotiate", {})]),
        (
            'Bearer realm = "spaced" , service = "s"',
            [("bearer", {"realm": "spaced", "service": "s"})],
        ),
        ('Bearer realm="unterminated', [("bearer", {"realm": "unterminated"})]),
        ("", []),
        (", ,", []),
    ],
)
def test_parse_challenges(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    assert [(c.scheme, dict(c.params)) for c in parse_challenges([header])] == expected


def test_several_headers_and_properties() -> None:
    found = parse_challenges(
        ['Basic realm="r"', 'Bearer realm="x",service="y",scope="a:b:pull c:d:push"']
    )
    assert [c.scheme for c in found] == ["basic", "bearer"]
    bearer = found[1]
    assert (bearer.realm, bearer.service) == ("x", "y")
    assert bearer.scopes == ("a:b:pull", "c:d:push")
    assert bearer.error == ""


def test_scopes() -> None:
    assert repository_scope("library/busybox", ["push", "pull", "pull"]) == (
        "repository:library/busybox:pull,push"
    )
    assert merge_scopes(
        [
            "repository:a:pull",
            "repository:a:push",
            "repository:b:pull",
            "registry:catalog:*",
            "odd",
            "repository:host:5000/x:pull",
        ]
    ) == (
        "odd",
        "registry:catalog:*",
        "repository:a:pull,push",
        "repository:b:pull",
        "repository:host:5000/x:pull",
    )
