"""What a client build returns (:class:`BuildResult`), what it learns about its engine
(:class:`ServerInfo`, :class:`WorkerRecord`), and the reporter that watches a build's events on the way to
the caller's (:class:`Watcher`: transfers and warnings)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from dockyard.core import BuildWarning, Event, Platform, Reporter, VertexProgress

if TYPE_CHECKING:
    from dockyard.exporter import ExportOptions
    from dockyard.registry import TagCheck
    from dockyard.session import SyncRequest

__all__ = ["BuildResult", "ServerInfo", "Transfer", "Watcher", "WorkerDevice", "WorkerRecord"]

_TRANSFER = "transfer:"
_FILES = ":files"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """What one client directory sent to the engine during a build (summed over the
    syncs of that directory): regular files whose content travelled, and their
    bytes. Unchanged files are not counted."""

    files: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    """A finished build.

    ``metadata`` is what the exporters reported (``containerimage.digest``,
    ``containerimage.config.digest``, ``image.name`` ...: what ``--metadata-file``
    gets, as buildx writes it). ``image_id`` is what ``--iidfile`` and ``-q`` print
    (the image config's digest, else the manifest's), ``None`` when no image was made.
    ``outputs`` are the exports done, in order (destinations as the caller gave them).
    ``transfers`` counts what each client directory sent, by its session name
    (``context``, ``dockerfile``, named contexts). ``built`` is false for a
    ``--check`` run, which builds nothing. ``load_output`` is what ``docker load``
    said (``--load``). ``replayable``: the embedded engine found that the build
    changed nothing and read nothing but the client's directories and the local image
    store or registry tags that ``replay_checks`` ask about again (see
    ``dockyard.engine.SolveResponse``). ``synced``: the file sync requests the engine
    made of the client's directories, in order (a good
    :attr:`BuildOptions.prefetch <dockyard.client.BuildOptions.prefetch>` for the
    next build of the same context).
    """

    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    outputs: tuple[ExportOptions, ...] = ()
    warnings: tuple[BuildWarning, ...] = ()
    transfers: Mapping[str, Transfer] = field(default_factory=lambda: MappingProxyType({}))
    built: bool = True
    load_output: str = ""
    replayable: bool = False
    replay_checks: tuple[TagCheck, ...] = ()
    synced: tuple[SyncRequest, ...] = ()

    @property
    def image_digest(self) -> str | None:
        value = self.metadata.get("containerimage.digest")
        return str(value) if value else None

    @property
    def image_id(self) -> str | None:
        value = self.metadata.get("containerimage.config.digest")
        return str(value) if value else self.image_digest

    @property
    def names(self) -> tuple[str, ...]:
        value = self.metadata.get("image.name")
        return tuple(n for n in str(value).split(",") if n) if value else ()

    def call_output(self, format: Literal["text", "json"] = "text") -> str | None:
        """A subrequest's answer (:attr:`BuildOptions.subrequest
        <dockyard.client.BuildOptions.subrequest>`) as buildx prints it: the frontend's
        ``result.txt``, or its ``result.json`` document (no final newline); ``None``
        when the build answered none."""
        value = self.metadata.get("result.json" if format == "json" else "result.txt")
        return value if isinstance(value, str) else None

    def metadata_json(self) -> str:
        """The ``--metadata-file`` document."""
        return json.dumps(dict(self.metadata), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """The engine a client talks to: ``mode`` ``embedded`` (in this process, on
    ``state_dir``) or ``daemon`` (at ``address``), and its ``version``."""

    mode: Literal["embedded", "daemon"]
    version: str
    address: str | None = None
    state_dir: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerDevice:
    """A CDI device builds may ask for (``RUN --device``): its qualified name, whether
    they may use it without the ``device`` entitlement, and its annotations."""

    name: str
    auto_allow: bool = False
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRecord:
    """A worker of the engine (what ``buildctl debug workers -v`` shows): its ``id``,
    the platforms it builds for, BuildKit's labels, its CDI ``devices`` and, for the
    embedded engine, the CDI spec files it skipped and why (``cdi_problems``)."""

    id: str
    platforms: tuple[Platform, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    devices: tuple[WorkerDevice, ...] = ()
    cdi_problems: tuple[str, ...] = ()


class Watcher:
    """A :class:`~dockyard.core.Reporter` that passes every event on to ``inner`` and
    keeps what the result reports: the final transfer counts of each client directory
    (``VertexProgress`` ids ``transfer:NAME`` and ``transfer:NAME:files``, the way the
    session's receiver reports them) and the warnings."""

    __slots__ = ("_bytes", "_files", "_inner", "warnings")

    def __init__(self, inner: Reporter | None) -> None:
        self._inner = inner
        self._files: dict[tuple[str, str], int] = {}
        self._bytes: dict[tuple[str, str], int] = {}
        self.warnings: list[BuildWarning] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, VertexProgress) and event.id.startswith(_TRANSFER):
            name = event.id[len(_TRANSFER) :]
            key = (event.digest, name.removesuffix(_FILES))
            if name.endswith(_FILES):
                self._files[key] = event.current
            else:
                self._bytes[key] = event.current
        elif isinstance(event, BuildWarning):
            self.warnings.append(event)
        if self._inner is not None:
            self._inner.emit(event)

    def transfers(self) -> dict[str, Transfer]:
        """Files and bytes per directory name, summed over the build's syncs."""
        out: dict[str, Transfer] = {}
        for key in sorted(self._files.keys() | self._bytes.keys()):
            name = key[1]
            before = out.get(name, Transfer())
            out[name] = Transfer(
                files=before.files + self._files.get(key, 0),
                bytes=before.bytes + self._bytes.get(key, 0),
            )
        return out
