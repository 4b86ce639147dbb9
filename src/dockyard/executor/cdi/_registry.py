"""The worker's CDI registry: the devices of the host's spec files, looked up by the
names builds ask for.

The spec directories are read when a lookup needs them and read again only when they
changed (a directory's listing, or a file's size or modification time): a worker whose
builds ask for no device never reads them. As in the reference implementation, only
files directly in a directory count (``*.json``, ``*.yaml``; ``*.yml`` too, as
BuildKit's documentation writes them); a device in a later directory replaces one of the
same name in an earlier directory; two files of one directory defining the same device
make that device unusable (an error naming both); a file that does not parse or check is
skipped, and its error is kept (:meth:`DeviceRegistry.problems`) and shown when a build
asks for a device that is not there.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import ConfigError, NotFoundError
from dockyard.core.cdinames import DeviceSelector, parse_selector

from .types import (
    ANNOTATION_AUTO_ALLOW,
    ANNOTATION_CLASS,
    SPEC_SUFFIXES,
    CdiConfig,
    ContainerEdits,
    DeviceInfo,
    DeviceRequest,
)

if TYPE_CHECKING:
    from ._spec import CdiDevice, CdiSpec

__all__ = ["DeviceRegistry", "DeviceView", "Resolution"]

_log = logging.getLogger("dockyard.executor.cdi")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # Go's strconv.ParseBool


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """What requested devices come to: the edits to make, in order (each spec's own
    edits once, before its first device's), the devices used (qualified names) and the
    optional requests that selected nothing."""

    edits: tuple[ContainerEdits, ...] = ()
    devices: tuple[str, ...] = ()
    missing: tuple[DeviceRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class _Entry:
    spec: CdiSpec
    device: CdiDevice
    priority: int

    @property
    def annotations(self) -> dict[str, str]:
        return {**self.spec.annotations, **self.device.annotations}


@dataclass(slots=True)
class _Index:
    devices: dict[str, _Entry] = field(default_factory=dict)  # sorted by name
    problems: tuple[str, ...] = ()


_Signature = tuple[tuple[str, tuple[tuple[str, int, int, int], ...] | None], ...]


class DeviceRegistry:
    """The CDI devices of ``spec_dirs`` (see the module docstring). ``auto_allowed``
    names devices or kinds builds may use without the ``device`` entitlement.

    Lookups are blocking (they may read the directories) and safe from any thread.
    """

    def __init__(self, spec_dirs: Sequence[Path], *, auto_allowed: Iterable[str] = ()) -> None:
        self.spec_dirs = tuple(Path(d) for d in spec_dirs)
        self._auto_allowed = frozenset(auto_allowed)
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._index = _Index()

    @classmethod
    def from_config(cls, config: CdiConfig) -> DeviceRegistry | None:
        """The registry ``config`` describes; ``None`` when CDI is disabled."""
        if config.disabled:
            return None
        return cls(config.spec_dirs, auto_allowed=config.auto_allowed)

    # -- reading -------------------------------------------------------------------------

    def _current(self) -> _Index:
        signature = self._scan_signature()
        with self._lock:
            if signature != self._signature:
                self._index = self._read(signature)
                self._signature = signature
            return self._index

    def _scan_signature(self) -> _Signature:
        out: list[tuple[str, tuple[tuple[str, int, int, int], ...] | None]] = []
        for directory in self.spec_dirs:
            try:
                entries = os.scandir(directory)
            except OSError:
                out.append((str(directory), None))
                continue
            files: list[tuple[str, int, int, int]] = []
            with entries:
                for entry in entries:
                    if not entry.name.endswith(SPEC_SUFFIXES):
                        continue
                    try:
                        st = entry.stat()  # (follows a symlink to a spec file)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        files.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
            out.append((str(directory), tuple(sorted(files))))
        return tuple(out)

    def _read(self, signature: _Signature) -> _Index:
        from ._spec import read_spec  # (the parser loads only once there is a file)

        problems: list[str] = []
        chosen: dict[str, _Entry] = {}
        conflicts: dict[str, list[Path]] = {}
        for priority, (directory, files) in enumerate(signature):
            for name, *_ in files or ():
                path = Path(directory) / name
                try:
                    spec = read_spec(path)
                except ConfigError as exc:
                    problems.append(exc.message)
                    _log.info("skipping CDI spec: %s", exc.message)
                    continue
                for device in spec.devices:
                    qualified = spec.qualified(device)
                    previous = chosen.get(qualified)
                    if previous is not None and previous.priority == priority:
                        conflicts.setdefault(qualified, [previous.spec.path]).append(path)
                    elif previous is not None:
                        conflicts.pop(qualified, None)  # a later directory wins
                    chosen[qualified] = _Entry(spec=spec, device=device, priority=priority)
        for qualified, paths in sorted(conflicts.items()):
            del chosen[qualified]
            message = f"CDI device {qualified} is defined by {' and '.join(map(str, paths))}"
            problems.append(message + " (it is not used until one of them drops it)")
            _log.info("%s", message)
        return _Index(devices=dict(sorted(chosen.items())), problems=tuple(problems))

    # -- queries -------------------------------------------------------------------------

    def view(self) -> DeviceView:
        """The devices as the spec directories have them now, for lookups that must
        agree with each other (a check of what a build may use and the resolution of
        what it asked for): a spec changed meanwhile is not seen by the view."""
        return DeviceView(self, self._current())

    def devices(self) -> tuple[DeviceInfo, ...]:
        """Every usable device, by name."""
        return self.view().devices()

    def problems(self) -> tuple[str, ...]:
        """Why spec files (or devices) were skipped, one message each."""
        return self._current().problems

    def device(self, name: str) -> DeviceInfo | None:
        """The device of qualified name ``name``, if known."""
        return self.view().device(name)

    def select(self, name: str) -> tuple[str, ...]:
        """The qualified names a requested ``name`` selects (none: ``()``); a
        :class:`~dockyard.core.UsageError` for a name outside the grammar."""
        return self.view().select(name)

    def resolve(self, requests: Sequence[DeviceRequest]) -> Resolution:
        """The edits for ``requests`` (see :class:`Resolution`); a
        :class:`~dockyard.core.NotFoundError` naming the first required request that
        selects no device (and the spec files that were skipped, if any)."""
        return self.view().resolve(requests)

    def _auto_allow(self, name: str, annotations: Mapping[str, str]) -> bool:
        kind = name.partition("=")[0]
        if name in self._auto_allowed or kind in self._auto_allowed:
            return True
        return annotations.get(ANNOTATION_AUTO_ALLOW, "") in _TRUE


class DeviceView:
    """The devices of a :class:`DeviceRegistry` as they were when :meth:`DeviceRegistry.view`
    was called: ``devices``, ``device``, ``select`` and ``resolve`` as the registry's,
    all answered from those same spec files. Never blocks."""

    def __init__(self, registry: DeviceRegistry, index: _Index) -> None:
        self._registry = registry
        self._index = index

    def devices(self) -> tuple[DeviceInfo, ...]:
        return tuple(self._info(name, entry) for name, entry in self._index.devices.items())

    def device(self, name: str) -> DeviceInfo | None:
        entry = self._index.devices.get(name)
        return None if entry is None else self._info(name, entry)

    def _info(self, name: str, entry: _Entry) -> DeviceInfo:
        annotations = entry.annotations
        return DeviceInfo(
            name=name,
            auto_allow=self._registry._auto_allow(name, annotations),
            annotations=annotations,
            spec_file=entry.spec.path,
        )

    def select(self, name: str) -> tuple[str, ...]:
        return _select(parse_selector(name), self._index.devices)

    def resolve(self, requests: Sequence[DeviceRequest]) -> Resolution:
        index = self._index
        used: list[str] = []
        missing: list[DeviceRequest] = []
        for request in requests:
            found = _select(parse_selector(request.name), index.devices)
            if not found:
                if not request.optional:
                    raise NotFoundError(_not_registered(request.name, self._registry, index))
                missing.append(request)
            used.extend(d for d in found if d not in used)
        edits: list[ContainerEdits] = []
        seen_specs: set[int] = set()
        for name in used:
            entry = index.devices[name]
            if id(entry.spec) not in seen_specs:
                seen_specs.add(id(entry.spec))
                if not entry.spec.edits.is_empty():
                    edits.append(entry.spec.edits)
            edits.append(entry.device.edits)
        return Resolution(edits=tuple(edits), devices=tuple(used), missing=tuple(missing))


def _select(selector: DeviceSelector, devices: Mapping[str, _Entry]) -> tuple[str, ...]:
    if selector.by_class:
        return tuple(
            name
            for name, entry in devices.items()
            if entry.annotations.get(ANNOTATION_CLASS) == selector.name
        )
    prefix = selector.kind + "="
    of_kind = [name for name in devices if name.startswith(prefix)]
    if not selector.name:
        return tuple(of_kind[:1])
    if selector.name == "*":
        return tuple(of_kind)
    exact = f"{selector.kind}={selector.name}"
    if exact in devices:
        return (exact,)
    return tuple(
        name for name in of_kind if devices[name].annotations.get(ANNOTATION_CLASS) == selector.name
    )


def _not_registered(name: str, registry: DeviceRegistry, index: _Index) -> str:
    message = f"required device {name!r} is not registered"
    where = ", ".join(str(d) for d in registry.spec_dirs) or "no directory"
    message += f" (CDI spec directories: {where})"
    if index.problems:
        message += "; skipped: " + "; ".join(index.problems)
    return message
