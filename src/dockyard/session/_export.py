"""Client-side destinations of exported outputs (``local`` and ``tar`` outputs when the
engine runs elsewhere): a directory the engine syncs files into, or a file (or an open
file descriptor such as stdout) the engine streams a tarball into."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from dockyard.core import DockyardError, UsageError
from dockyard.core.fspath import open_special_output

__all__ = ["DirectoryTarget", "ExportTarget", "FileSink", "FileTarget"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryTarget:
    """Files are merged into ``path`` (created if missing; files already there and not
    part of the export are kept, as with BuildKit's local exporter)."""

    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class FileTarget:
    """A byte stream written to ``path`` (atomically: a temp file renamed into place when
    complete; a ``path`` that is a device or a FIFO, such as ``/dev/null``, is written
    where it is) or to the open file descriptor ``fd`` (``1`` for stdout, a pipe into
    ``docker load``); exactly one of them."""

    path: Path | None = None
    fd: int | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.fd is None):
            raise UsageError("a file export target needs exactly one of a path or an fd")


ExportTarget: TypeAlias = DirectoryTarget | FileTarget


class FileSink:
    """Writes one stream into a :class:`FileTarget`: :meth:`write` chunks in order, then
    exactly one of :meth:`commit` or :meth:`abort` (which removes a partial file)."""

    def __init__(self, target: FileTarget) -> None:
        self._target = target
        self._fd = -1
        self._temp: Path | None = None
        self._special = False  # the path is a device or a FIFO, opened where it is
        self.bytes = 0

    def _open(self) -> int:
        if self._fd >= 0:
            return self._fd
        if self._target.fd is not None:
            self._fd = self._target.fd
            return self._fd
        assert self._target.path is not None
        path = self._target.path
        try:
            special = open_special_output(path)
        except OSError as exc:
            raise DockyardError(
                f"cannot write the export to {str(path)!r}: {exc.strerror}"
            ) from exc
        if special is not None:  # a device or a FIFO: written in place
            self._fd, self._special = special, True
            return special
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            if path.parent != Path(""):
                path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DockyardError(
                f"cannot write the export to {str(path)!r}: {exc.strerror}"
            ) from exc
        self._temp = temp
        return self._fd

    def _write(self, data: bytes) -> None:
        fd = self._open()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            if self._target.fd == 1 and isinstance(exc, BrokenPipeError):
                # (the CLI then ends as a Go CLI does when its stdout's reader is gone)
                raise DockyardError("stdout was closed by its reader") from exc
            where = str(self._target.path) if self._target.path else f"fd {self._target.fd}"
            raise DockyardError(f"cannot write the export to {where!r}: {exc.strerror}") from exc
        self.bytes += len(data)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    def _commit(self) -> None:
        fd = self._open()
        if self._special:
            self._special = False
            self._fd = -1
            try:
                os.close(fd)
            except OSError as exc:
                raise DockyardError(
                    f"cannot write the export to {str(self._target.path)!r}: {exc.strerror}"
                ) from exc
            return
        if self._temp is None:
            return  # an fd we do not own: the caller closes it
        assert self._target.path is not None
        try:
            os.fsync(fd)
            os.close(fd)
            self._fd = -1
            os.replace(self._temp, self._target.path)
        except OSError as exc:
            raise DockyardError(
                f"cannot write the export to {str(self._target.path)!r}: {exc.strerror}"
            ) from exc
        self._temp = None

    async def commit(self) -> None:
        await asyncio.to_thread(self._commit)

    def abort(self) -> None:
        if self._special:  # nothing to remove: the device or FIFO stays
            self._special = False
            os.close(self._fd)
            self._fd = -1
        if self._temp is not None:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            try:
                self._temp.unlink()
            except OSError:
                pass
            self._temp = None
