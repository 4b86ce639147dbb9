"""Where outputs go: a path on this host, this process's stdout, or a target the client
offers through its session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.core import DockyardError, Reporter, SessionError
from dockyard.core.fspath import open_special_output

from ._options import ClientTarget, Dest, LocalPath, Stdout
from ._tree import copy_into

if TYPE_CHECKING:
    from dockyard.session.types import ExportCaller, ExportStream

__all__ = ["describe", "open_stream", "send_directory"]

_CHUNK = 1 << 20


def describe(dest: Dest) -> str:
    if isinstance(dest, LocalPath):
        return str(dest.path)
    if isinstance(dest, Stdout):
        return "stdout"
    return f"the client's {dest.name!r}"


class _StdoutClosed(BrokenPipeError):
    def __str__(self) -> str:
        return str(self.strerror)


class _FdWriter:
    """A blocking writer to an fd this module does not own (stdout)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        n = len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BrokenPipeError as exc:
            # the reader went away: the CLI ends the command as a Go CLI ends (by SIGPIPE)
            raise _StdoutClosed(exc.errno, "stdout was closed by its reader") from exc
        except OSError as exc:
            raise DockyardError(f"cannot write the export to stdout: {exc.strerror}") from exc
        return n

    def flush(self) -> None:
        return None


class _Bridge:
    """A blocking writer (for a worker thread) forwarding to an async export stream on
    the event loop, in 1 MiB chunks."""

    def __init__(self, stream: ExportStream, loop: asyncio.AbstractEventLoop) -> None:
        self._stream = stream
        self._loop = loop
        self._buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self._send()
        return len(data)

    def _send(self) -> None:
        if not self._buf:
            return
        chunk, self._buf = bytes(self._buf), bytearray()
        asyncio.run_coroutine_threadsafe(self._stream.write(chunk), self._loop).result()

    def flush(self) -> None:
        self._send()


@contextlib.asynccontextmanager
async def open_stream(dest: Dest, client: ExportCaller | None) -> AsyncIterator[BinaryIO]:
    """A blocking binary writer for ``dest`` (write it from a worker thread). A path is
    written to a temporary name beside it and renamed when the block ends normally, and
    removed when it fails (a device or a FIFO, such as ``/dev/null``, is written where it
    is); the client's target is committed or discarded alike."""
    if isinstance(dest, Stdout):
        yield _FdWriter(1)  # type: ignore[misc]
        return
    if isinstance(dest, ClientTarget):
        if client is None:
            raise SessionError(
                f"the export goes to the client's target {dest.name!r}, but the build has "
                "no session"
            )
        async with client.open_stream(dest.name) as stream:
            bridge = _Bridge(stream, asyncio.get_running_loop())
            yield bridge  # type: ignore[misc]
            await asyncio.to_thread(bridge.flush)
        return
    path = dest.path
    try:
        special_fd = open_special_output(path)
    except OSError as exc:
        raise DockyardError(f"cannot write the export to {str(path)!r}: {exc.strerror}") from exc
    if special_fd is not None:  # a device or a FIFO: written where it is
        special = _Checked(open(special_fd, "wb"))  # noqa: ASYNC230, SIM115 - an open fd
        with _write_errors(path):
            try:
                yield special  # type: ignore[misc]
                await asyncio.to_thread(special.flush)
            except BaseException:
                special.close(quietly=True)
                raise
            special.close()
        return
    if path.is_dir():  # refused before the export is made, not at its rename
        raise DockyardError(
            f"cannot write the export to {str(path)!r}: it is a directory "
            "(name a file, or use type=local to write a directory)"
        )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = _Checked(open(tmp, "xb"))  # noqa: ASYNC230, SIM115 - opening is quick; data goes in a thread
    except OSError as exc:
        raise DockyardError(f"cannot write the export to {str(path)!r}: {exc.strerror}") from exc
    try:
        with _write_errors(path):
            try:
                yield f  # type: ignore[misc]
                await asyncio.to_thread(f.finish)
            except BaseException:
                f.close(quietly=True)
                raise
            f.close()
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _WriteError(exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    """An error writing, flushing or publishing the export file ``path`` (a full disk,
    a full device such as /dev/full) as a :class:`DockyardError` naming it, not an
    ``OSError`` traceback."""
    try:
        yield
    except _WriteError as exc:
        reason = exc.cause.strerror or str(exc.cause)
        raise DockyardError(f"cannot write the export to {str(path)!r}: {reason}") from exc.cause


class _WriteError(Exception):
    """An ``OSError`` of the output file itself (not of reading what is exported into
    it), carried from the writer's thread to :func:`_write_errors`."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Checked:
    """The output file's writer: its ``OSError`` becomes a :class:`_WriteError`."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._failed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self._failed = True
            raise _WriteError(exc) from exc

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self._failed = True
            raise _WriteError(exc) from exc

    def finish(self) -> None:
        """Flush and fsync (a regular file, before it is renamed into place)."""
        self.flush()
        try:
            os.fsync(self._f.fileno())
        except OSError as exc:
            self._failed = True
            raise _WriteError(exc) from exc

    def close(self, *, quietly: bool = False) -> None:
        """Close the file; ``quietly`` (another error is on its way) or after a failed
        write, a failing flush of what is left in the buffer raises nothing."""
        try:
            self._f.close()
        except OSError as exc:
            if not (quietly or self._failed):
                raise _WriteError(exc) from exc


async def send_directory(
    dest: Dest,
    root: Path | None,
    client: ExportCaller | None,
    *,
    epoch: int | None = None,
    reporter: Reporter | None = None,
    progress_digest: str = "",
    prefix: str = "",
) -> None:
    """Put the tree ``root`` (``None``: empty) into the directory ``dest``, or into its
    sub-directory ``prefix`` (one plain name: a platform's, ``linux_amd64``)."""
    if isinstance(dest, LocalPath):
        path = dest.path / prefix if prefix else dest.path
        await asyncio.to_thread(
            copy_into, str(root) if root is not None else None, str(path), epoch=epoch
        )
        return
    if isinstance(dest, ClientTarget):
        if client is None:
            raise SessionError(
                f"the export goes to the client's directory {dest.name!r}, but the build has "
                "no session"
            )
        if root is None:
            # an empty result still gets its (empty) directory, or its platform's, as
            # the embedded engine makes it
            with tempfile.TemporaryDirectory(prefix="dockyard-empty-") as empty:
                await client.send_directory(
                    dest.name,
                    Path(empty),
                    reporter=reporter,
                    progress_digest=progress_digest,
                    prefix=prefix,
                )
            return
        await client.send_directory(
            dest.name, root, reporter=reporter, progress_digest=progress_digest, prefix=prefix
        )
        return
    raise DockyardError("a directory export cannot go to stdout")
