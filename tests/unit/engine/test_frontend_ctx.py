"""The engine's frontend context: client files read through an in-process session,
base-image lookups shown as steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import (
    CollectingReporter,
    NotFoundError,
    Platform,
    SessionError,
    UsageError,
    VertexStatus,
)
from dockyard.dockerfile import ResolvedImage, UnresolvedImages
from dockyard.engine._frontend_ctx import BuildFrontendContext
from dockyard.frontend import FrontendContext
from dockyard.session import Session, SessionHandle, SessionManager
from dockyard.session._manager import _FileSync


def make_ctx(handle: SessionHandle | None, tmp_path: Path) -> BuildFrontendContext:
    return BuildFrontendContext(
        session=handle,
        reporter=CollectingReporter(),
        build_platform=Platform.parse("linux/amd64"),
        images=UnresolvedImages(),
        scratch_dir=tmp_path / "scratch",
    )


@pytest.mark.parametrize("way", ["in place", "synced"])
async def test_reads_the_asked_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """An in-process client's files are read where they are (no scratch copy); a remote
    client's (here: the sync forced) are synced into scratch and removed. Either way
    symlinks resolve inside the client's directory."""
    if way == "synced":
        monkeypatch.setattr(_FileSync, "local_directory", lambda self, name: None)
    client = tmp_path / "client"
    (client / "sub").mkdir(parents=True)
    (client / "Dockerfile").write_text("FROM scratch\n")
    (client / "sub" / "f").write_text("in sub")
    (client / "big-unrelated").write_bytes(b"x" * 100_000)
    (client / "link").symlink_to("sub/f")
    (client / "out").symlink_to("/etc/hostname")
    (client / "adir").mkdir()
    manager = SessionManager()
    async with manager.attach(Session(directories={"dockerfile": client})) as handle:
        ctx = make_ctx(handle, tmp_path)
        assert isinstance(ctx, FrontendContext)
        assert ctx.session_id == handle.id
        files = await ctx.read_client_files(
            "dockerfile", ["Dockerfile", "sub/f", "link", "missing", "out", "adir"]
        )
        assert files == {"Dockerfile": b"FROM scratch\n", "sub/f": b"in sub", "link": b"in sub"}
        assert (tmp_path / "scratch").exists() == (way == "synced")
        assert await ctx.read_client_files("dockerfile", []) == {}
        with pytest.raises(NotFoundError, match="nodir"):
            await ctx.read_client_files("nodir", ["x"])
        for bad in ("*.txt", "a[b]", "."):
            with pytest.raises(UsageError, match="not a file path"):
                await ctx.read_client_files("dockerfile", [bad])
    # nothing is left in the scratch directory (the directory the client does not offer
    # is asked for with a sync, which says so)
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_without_a_session(tmp_path: Path) -> None:
    ctx = make_ctx(None, tmp_path)
    assert ctx.session_id is None
    with pytest.raises(SessionError, match="no client session"):
        await ctx.read_client_files("dockerfile", ["Dockerfile"])


async def test_image_lookups_are_reported_as_steps(tmp_path: Path) -> None:
    class Failing:
        async def resolve(
            self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
        ) -> ResolvedImage:
            raise NotFoundError(f"image not found: {ref}")

    reporter = CollectingReporter()
    ctx = BuildFrontendContext(
        session=None,
        reporter=reporter,
        build_platform=Platform.parse("linux/amd64"),
        images=UnresolvedImages(),
        scratch_dir=tmp_path,
    )
    found = await ctx.images.resolve(
        "docker.io/library/alpine:3",
        platform=ctx.build_platform,
        resolve_mode=llb.ResolveMode.DEFAULT,
    )
    assert found.ref == "docker.io/library/alpine:3"
    failing = BuildFrontendContext(
        session=None,
        reporter=reporter,
        build_platform=Platform.parse("linux/amd64"),
        images=Failing(),
        scratch_dir=tmp_path,
    )
    with pytest.raises(NotFoundError):
        await failing.images.resolve(
            "docker.io/library/nope:1",
            platform=ctx.build_platform,
            resolve_mode=llb.ResolveMode.PULL,
        )
    done = [s for s in reporter.events if isinstance(s, VertexStatus) and s.completed]
    assert [(s.name, s.error) for s in done] == [
        ("[internal] load metadata for docker.io/library/alpine:3", None),
        (
            "[internal] load metadata for docker.io/library/nope:1",
            "image not found: docker.io/library/nope:1",
        ),
    ]
