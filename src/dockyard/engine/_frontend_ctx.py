"""The :class:`~dockyard.frontend.FrontendContext` of one build: its session, reporter,
base-image metadata, and files read from the client's directories."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import DockyardError, Platform, Reporter, SessionError, UsageError
from dockyard.core.fspath import clean_rel, open_in_root
from dockyard.session import SessionHandle, SyncBase, SyncRequest

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.dockerfile import ImageMetaResolver, ResolvedImage

__all__ = ["BuildFrontendContext", "ReportingImages"]

_MAX_FILE = 64 << 20  # a Dockerfile or ignore file larger than this is refused


class ReportingImages:
    """Base-image lookups shown as steps (``[internal] load metadata for REF``; in a
    multi-platform build ``[linux/arm64 internal] …``), as BuildKit shows them."""

    def __init__(self, inner: ImageMetaResolver, reporter: Reporter) -> None:
        self._inner = inner
        self._reporter = reporter

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        from dockyard.frontend import internal_step, metadata_step_name

        async with internal_step(self._reporter, metadata_step_name(ref, platform)):
            return await self._inner.resolve(ref, platform=platform, resolve_mode=resolve_mode)


class BuildFrontendContext:
    """Implements :class:`dockyard.frontend.FrontendContext` over a session handle.

    A remote client's files are synced (only the asked paths, symlinks among them
    followed) into a scratch directory under ``scratch_dir`` and read from there inside
    that root, so a hostile client cannot make the engine read a file of its own host.
    An in-process client's are read in its directory, inside that root (it is this
    process: nothing to guard against but an escape from the directory it named).
    """

    def __init__(
        self,
        *,
        session: SessionHandle | None,
        reporter: Reporter,
        build_platform: Platform,
        images: ImageMetaResolver,
        scratch_dir: Path,
    ) -> None:
        self._session = session
        self._reporter = reporter
        self._platform = build_platform
        self._images = ReportingImages(images, reporter)
        self._scratch = scratch_dir

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session is not None else None

    @property
    def reporter(self) -> Reporter:
        return self._reporter

    @property
    def build_platform(self) -> Platform:
        return self._platform

    @property
    def images(self) -> ImageMetaResolver:
        return self._images

    async def read_client_files(self, directory: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        if self._session is None:
            raise SessionError(
                f"the build has no client session to read {directory!r} from "
                "(attach a session that serves it)"
            )
        wanted: dict[str, str] = {}
        for path in paths:
            rel = clean_rel(path)
            if rel == "." or any(c in rel for c in "*?[\\"):
                raise UsageError(f"cannot read {path!r} from the client: not a file path")
            wanted[path] = rel
        if not wanted:
            return {}
        local = self._session.filesync.local_directory(directory)
        if local is not None:
            # an in-process client: read in its directory (symlinks resolved inside it,
            # as the sync's follow paths are), no scratch copy made and removed
            return await asyncio.to_thread(_read_files, local, wanted)
        rels = tuple(sorted(set(wanted.values())))
        self._scratch.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix="client-files-", dir=self._scratch))

        async def fresh() -> tuple[Path, bool]:
            return dest, True  # empty and ours alone: written as a layer over nothing

        try:
            # a new layer over no entries: nothing to scan first, files written in place
            await self._session.filesync.sync(
                SyncRequest(name=directory, include_patterns=rels, follow_paths=rels),
                SyncBase(entries={}, open=fresh),
            )
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, dest, True)
            raise
        return await asyncio.to_thread(_read_and_remove, dest, wanted)


def _read_and_remove(root: Path, wanted: Mapping[str, str]) -> dict[str, bytes]:
    try:
        return _read_files(root, wanted)
    finally:
        shutil.rmtree(root, True)


def _read_files(root: Path, wanted: Mapping[str, str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for path, rel in wanted.items():
        data = _read_file(root, rel)
        if data is not None:
            out[path] = data
    return out


def _read_file(root: Path, rel: str) -> bytes | None:
    try:
        fd = open_in_root(root, rel, os.O_RDONLY | os.O_NONBLOCK)
    except DockyardError:
        return None  # missing, a symlink loop, or a link leading nowhere in the tree
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > _MAX_FILE:
            raise UsageError(f"{rel} is too large to read ({st.st_size} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(_MAX_FILE + 1)
    finally:
        os.close(fd)
