"""``tag_check``/``tag_unchanged``: one anonymous ``HEAD`` of a tag's manifest, with the
standard library, against a small registry on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockyard.registry import (
    HostConfig,
    Reference,
    RegistryConfig,
    TagCheck,
    tag_check,
    tag_unchanged,
)

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@dataclass
class Registry:
    """Serves ``tags[(repo, tag)]`` as Docker-Content-Digest; with ``bearer``, only to
    requests carrying the token its realm hands out for the repository's pull scope."""

    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    bearer: bool = False
    token_status: int = 200
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    state = Registry()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            state.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
            expected = "/token?scope=repository%3Aapp%3Apull&service=test-registry"
            if self.path == expected and state.token_status == 200:
                self._reply(200, {"Content-Type": "application/json"}, b'{"token": "t0k"}')
            else:
                self._reply(state.token_status if self.path == expected else 404, {})

        def do_HEAD(self) -> None:
            auth = self.headers.get("Authorization", "")
            state.seen.append(("HEAD", self.path, auth))
            assert "application/vnd.oci.image.index.v1+json" in self.headers.get("Accept", "")
            if state.bearer and auth != "Bearer t0k":
                realm = f"http://{state.host}/token"
                challenge = f'Bearer realm="{realm}",service="test-registry",scope="x"'
                self._reply(401, {"WWW-Authenticate": challenge})
                return
            repo, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
            digest = state.tags.get((repo, tag))
            if digest is None:
                self._reply(404, {})
            else:
                self._reply(200, {"Docker-Content-Digest": digest})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def check_of(registry: Registry, digest: str = DIGEST) -> TagCheck:
    # an unlisted loopback host is insecure (HTTPS without verification, or HTTP): on
    # loopback the check asks over HTTP first
    check = tag_check(RegistryConfig(), Reference.parse(f"{registry.host}/app:1"), digest)
    assert check is not None
    assert check.urls == (
        f"http://{registry.host}/v2/app/manifests/1",
        f"https://{registry.host}/v2/app/manifests/1",
    )
    assert not check.verify
    return check


def test_an_unmoved_tag_is_unchanged_a_moved_or_missing_one_is_not(registry: Registry) -> None:
    registry.tags[("app", "1")] = DIGEST
    assert tag_unchanged(check_of(registry))
    https_first = TagCheck(
        reference="app:1",
        urls=tuple(reversed(check_of(registry).urls)),
        verify=False,
        digest=DIGEST,
        scope="repository:app:pull",
    )
    assert tag_unchanged(https_first)  # the TLS attempt fails, HTTP answers
    assert not tag_unchanged(check_of(registry, OTHER))
    registry.tags[("app", "1")] = OTHER
    assert not tag_unchanged(check_of(registry))
    del registry.tags[("app", "1")]
    assert not tag_unchanged(check_of(registry))


def test_a_bearer_challenge_is_answered_with_an_anonymous_token(registry: Registry) -> None:
    registry.bearer = True
    registry.tags[("app", "1")] = DIGEST
    assert tag_unchanged(check_of(registry))
    assert [s for s in registry.seen if s[0] == "HEAD"][-1][2] == "Bearer t0k"
    assert any(s[0] == "GET" and s[1].startswith("/token") for s in registry.seen)


def test_a_registry_that_wants_credentials_cannot_say(registry: Registry) -> None:
    registry.bearer = True
    registry.token_status = 401
    registry.tags[("app", "1")] = DIGEST
    assert not tag_unchanged(check_of(registry))


def test_an_unreachable_registry_cannot_say() -> None:
    check = TagCheck(
        reference="127.0.0.1:9/app:1",
        urls=("http://127.0.0.1:9/v2/app/manifests/1",),
        verify=True,
        digest=DIGEST,
        scope="repository:app:pull",
    )
    assert not tag_unchanged(check, timeout=2.0)


def test_no_check_for_digests_or_registries_with_mirrors() -> None:
    config = RegistryConfig()
    assert tag_check(config, Reference.parse(f"busybox@{DIGEST}"), DIGEST) is None
    mirrored = RegistryConfig(hosts={"docker.io": HostConfig(mirrors=("mirror.test",))})
    assert tag_check(mirrored, Reference.parse("busybox"), DIGEST) is None
    hub = tag_check(config, Reference.parse("busybox"), DIGEST)
    assert hub is not None
    assert hub.urls == ("https://registry-1.docker.io/v2/library/busybox/manifests/latest",)
    assert hub.verify
    assert hub.scope == "repository:library/busybox:pull"


def test_the_accept_header_is_the_registry_clients() -> None:
    from dockyard.oci import MediaType
    from dockyard.registry._tagcheck import ACCEPT_MANIFESTS

    assert tuple(MediaType.ACCEPT_MANIFESTS) == ACCEPT_MANIFESTS


def test_a_plain_http_answer_that_is_not_http_is_a_no() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-not-a-registry\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    check = TagCheck(
        reference=f"127.0.0.1:{port}/app:1",
        urls=(f"http://127.0.0.1:{port}/v2/app/manifests/1",),
        verify=False,
        digest=DIGEST,
        scope="repository:app:pull",
    )
    try:
        assert not tag_unchanged(check, timeout=2.0)
    finally:
        thread.join(timeout=5)
        listener.close()
