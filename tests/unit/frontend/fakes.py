"""A :class:`~dockyard.frontend.FrontendContext` over in-memory client directories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dockyard import llb
from dockyard.core import CollectingReporter, NotFoundError, Platform, SessionError
from dockyard.dockerfile import ImageMetaResolver, ResolvedImage, UnresolvedImages


@dataclass
class FakeContext:
    directories: dict[str, dict[str, bytes]] = field(default_factory=dict)
    session_id: str | None = "sess-1"
    reporter: CollectingReporter = field(default_factory=CollectingReporter)
    build_platform: Platform = field(default_factory=lambda: Platform.parse("linux/amd64"))
    images: ImageMetaResolver = field(default_factory=UnresolvedImages)
    reads: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    async def read_client_files(self, directory: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        if self.session_id is None:
            raise SessionError("no session")
        self.reads.append((directory, tuple(paths)))
        files = self.directories.get(directory)
        if files is None:
            raise NotFoundError(f"the client offers no directory {directory!r}")
        return {p: files[p] for p in paths if p in files}


@dataclass
class FakeImages:
    """Every image has the given config; records what was asked."""

    config: bytes
    asked: list[str] = field(default_factory=list)

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        self.asked.append(ref)
        return ResolvedImage(ref=ref, digest="sha256:" + "a" * 64, config=self.config)
