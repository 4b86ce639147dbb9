from __future__ import annotations

import pytest

from dockyard.core import UsageError
from dockyard.registry import InvalidReferenceError, Reference

H = "sha256:" + "e" * 64


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("user/app/sub:v1", "docker.io/user/app/sub:v1", "user/app/sub:v1"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag"),
        (f"busybox@{H}", f"docker.io/library/busybox@{H}", f"busybox@{H}"),
        (f"host:1234/a/b:tag@{H}", f"host:1234/a/b:tag@{H}", f"host:1234/a/b:tag@{H}"),
        ("ghcr.io/o/r:v1.2.3-rc_1", "ghcr.io/o/r:v1.2.3-rc_1", "ghcr.io/o/r:v1.2.3-rc_1"),
        ("Registry/app", "Registry/app:latest", "Registry/app:latest"),  # upper case: a host
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
        ("a.b-c/d__e.f--g:_t", "a.b-c/d__e.f--g:_t", "a.b-c/d__e.f--g:_t"),
    ],
)
def test_parse_and_normalize(text: str, canonical: str, familiar: str) -> None:
    ref = Reference.parse(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar
    assert Reference.parse(canonical) == ref
    assert Reference.parse(familiar) == ref


def test_parts() -> None:
    ref = Reference.parse(f"localhost:5000/team/app:v2@{H}")
    assert ref.domain == "localhost:5000"
    assert ref.path == "team/app"
    assert ref.tag == "v2"
    assert ref.digest == H
    assert ref.name == "localhost:5000/team/app"
    assert ref.object == H  # pulls go by digest when there is one
    assert Reference.parse("busybox").object == "latest"
    assert Reference.parse("busybox").familiar_name == "busybox"
    assert Reference.parse("busybox", default_tag="").tag == ""
    assert str(Reference.parse("busybox").with_tag("1")) == "docker.io/library/busybox:1"
    pinned = Reference.parse("busybox:1").with_digest(H)  # type: ignore[arg-type]
    assert str(pinned) == f"docker.io/library/busybox:1@{H}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty reference"),
        (" busybox", "whitespace"),
        ("Busybox", "must be lowercase"),
        ("docker.io/Library/busybox", "must be lowercase"),
        ("busybox:", "invalid tag ''"),
        ("busybox:-x", "invalid tag '-x'"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox@sha256:abc", "malformed digest"),
        ("busybox@md5:" + "0" * 32, "unsupported algorithm"),
        ("a" * 64, "image ID"),
        ("host:5000/", "invalid repository name component ''"),
        ("user//app", "invalid repository name component ''"),
        ("user/-app", "invalid repository name component '-app'"),
        ("user/app_", "invalid repository name component 'app_'"),
        ("-host.io/app", "invalid registry host '-host.io'"),
        (":tag", "missing repository name"),
        ("a/" + "b" * 260, "longer than 255"),
    ],
)
def test_invalid_references(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid image reference") as info:
        Reference.parse(text)
    assert reason in str(info.value)
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)
    assert info.value.exit_code == 2
