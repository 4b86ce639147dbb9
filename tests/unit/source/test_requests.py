"""Source ops parsed into their resolvers' values; registry clients per session; the
content-store sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.content import ContentStore
from dockyard.core import (
    ContentError,
    Digest,
    InvalidDefinitionError,
    Platform,
    UsageError,
    VertexRef,
)
from dockyard.llb import ResolveMode
from dockyard.llbsolver import SourceRequest
from dockyard.registry import Credentials, StaticCredentials
from dockyard.session import Session, SessionManager
from dockyard.source import ImageRequest, LayoutRef, LocalSpec, SessionCredentials
from dockyard.source._registry import ClientPool, StoreSink

VERTEX = VertexRef(digest="sha256:" + "0" * 64, name="test")
AMD64 = Platform.parse("linux/amd64")


def _request(identifier: str, **attrs: str) -> SourceRequest:
    return SourceRequest.parse(identifier, attrs=attrs, vertex=VERTEX)


def test_local_spec_parses_patterns_and_hints() -> None:
    spec = LocalSpec.parse(
        _request(
            "local://context",
            **{
                "local.includepattern": '["src/**","Dockerfile"]',
                "local.excludepatterns": '["*.log","!keep.log"]',
                "local.followpaths": '["Dockerfile"]',
                "local.sharedkeyhint": "ctx",
                "local.session": "s1",
            },
        )
    )
    assert spec.name == "context"
    assert spec.sync.include_patterns == ("src/**", "Dockerfile")
    assert spec.sync.exclude_patterns == ("*.log", "!keep.log")
    assert spec.sync.follow_paths == ("Dockerfile",)
    assert (spec.shared_key_hint, spec.session_id) == ("ctx", "s1")


@pytest.mark.parametrize(
    "attrs",
    [
        {"local.excludepatterns": "*.log"},
        {"local.includepattern": "[1, 2]"},
        {"local.excludepatterns": '["["]'},
    ],
)
def test_local_spec_rejects_malformed_attrs(attrs: dict[str, str]) -> None:
    with pytest.raises(InvalidDefinitionError):
        LocalSpec.parse(_request("local://context", **attrs))


def test_image_request() -> None:
    request = ImageRequest.parse(
        _request("docker-image://docker.io/library/busybox:latest"), default_platform=AMD64
    )
    assert str(request.reference) == "docker.io/library/busybox:latest"
    assert (request.platform, request.resolve_mode, request.layer_limit) == (
        AMD64,
        ResolveMode.DEFAULT,
        None,
    )
    pulled = ImageRequest.parse(
        _request(
            "docker-image://127.0.0.1:5000/app@sha256:" + "a" * 64,
            **{"image.resolvemode": "pull", "image.layerlimit": "2"},
        ),
        default_platform=AMD64,
    )
    assert pulled.resolve_mode is ResolveMode.PULL
    assert pulled.layer_limit == 2
    assert pulled.reference.digest == "sha256:" + "a" * 64
    with pytest.raises(UsageError, match=r"image\.resolvemode"):
        ImageRequest.parse(
            _request("docker-image://busybox", **{"image.resolvemode": "sometimes"}),
            default_platform=AMD64,
        )
    with pytest.raises(InvalidDefinitionError, match="layerlimit"):
        ImageRequest.parse(
            _request("docker-image://busybox", **{"image.layerlimit": "-1"}),
            default_platform=AMD64,
        )
    with pytest.raises(InvalidDefinitionError, match="invalid image reference"):
        ImageRequest.parse(_request("docker-image://UPPER/Case"), default_platform=AMD64)


def test_layout_refs() -> None:
    digest = Digest.from_bytes(b"x")
    assert LayoutRef.parse("/srv/layout") == LayoutRef(store="/srv/layout")
    assert LayoutRef.parse("/srv/layout:v1") == LayoutRef(store="/srv/layout", tag="v1")
    assert LayoutRef.parse(f"/srv/lay:out/x@{digest}") == LayoutRef(
        store="/srv/lay:out/x", digest=digest
    )
    assert str(LayoutRef.parse(f"store:v2@{digest}")) == f"store:v2@{digest}"
    with pytest.raises(InvalidDefinitionError):
        LayoutRef.parse("store@sha256:nothex")
    with pytest.raises(InvalidDefinitionError):
        LayoutRef.parse(":tag")


class _Answers:
    async def get(self, host: str) -> Credentials | None:
        return Credentials(username="from-session", password="pw") if host == "r.io" else None


async def test_client_pool_uses_the_session_credentials_when_forwarded() -> None:
    sessions = SessionManager()
    pool = ClientPool(
        config=None,
        credentials=StaticCredentials({"r.io": Credentials(username="engine")}),
        sessions=sessions,
    )
    try:
        default = await pool.client(())
        async with (
            sessions.attach(Session(credentials=_Answers())) as forwarding,
            sessions.attach(Session()) as silent,
        ):
            assert await pool.client([silent.id]) is default
            own = await pool.client([silent.id, forwarding.id])
            assert own is not default
            assert await pool.client([forwarding.id]) is own
            provider = SessionCredentials(forwarding.credentials)
            found = await provider.get("r.io")
            assert found is not None
            assert found.username == "from-session"
            assert await provider.get("other.io") is None
        assert await pool.client(["gone"]) is default
    finally:
        await pool.aclose()
        await sessions.aclose()


async def test_store_sink_commits_verified_and_aborts_without_trace(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    try:
        data = b"layer bytes" * 1000
        digest = Digest.from_bytes(data)
        sink = StoreSink(store, digest=digest, size=len(data), lease=None)
        await sink.write(b"garbage")
        await sink.reset()
        await sink.write(data[:100])
        await sink.write(data[100:])
        await sink.commit(digest, len(data))
        assert await store.read(digest) == data

        other = b"other" * 100
        sink = StoreSink(store, digest=Digest.from_bytes(other), size=len(other), lease=None)
        await sink.write(other[:10])
        await sink.abort()
        assert store.ingests() == []
        sink = StoreSink(store, digest=Digest.from_bytes(other), size=len(other), lease=None)
        await sink.write(b"x" * len(other))
        with pytest.raises(ContentError):
            await sink.commit(Digest.from_bytes(other), len(other))
        assert store.ingests() == []
        assert not store.has(Digest.from_bytes(other))
    finally:
        store.close()
