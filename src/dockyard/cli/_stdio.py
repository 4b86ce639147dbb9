"""The command's stdout and stderr once whoever read them went away.

``dockyard images | head -1``, ``dockyard build --progress=plain 2>&1 | head``: a Go
CLI (docker, buildx) dies of SIGPIPE at its first write after the reader closed the pipe
— no message, and the shell sees 141. Python ignores SIGPIPE and raises
:class:`BrokenPipeError` instead, which click turns into exit 1 and the interpreter's
last flush into an "Exception ignored" message. :func:`dockyard.cli.main.main` ends the
command by SIGPIPE instead; the progress renderers, which write from a thread and must
not raise, interrupt the command with :func:`interrupt` (the build is cancelled and
cleaned up as on Ctrl-C) and ``main`` ends it so. Only stdout and stderr count: any
other broken pipe (``docker load`` dying under ``--load``, a session's socket) stays the
error it is.
"""

from __future__ import annotations

import os

__all__ = ["interrupt", "interrupted", "reader_gone"]

_interrupted: list[bool] = []


def reader_gone(fds: tuple[int, ...] = (1, 2)) -> bool:
    """Whether the reader of one of ``fds`` (stdout, stderr) is gone: a pipe's write end
    polls POLLERR once its last reader closed, a socket's POLLHUP."""
    import select

    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def interrupt(fd: int) -> None:
    """A write to ``fd`` failed with a broken pipe: if ``fd`` is stdout or stderr and its
    reader is gone, interrupt the command as Ctrl-C does, once (any thread may call it);
    :func:`interrupted` then says so."""
    if fd not in (1, 2) or _interrupted or not reader_gone((fd,)):
        return
    import signal

    _interrupted.append(True)
    os.kill(os.getpid(), signal.SIGINT)


def interrupted() -> bool:
    """Whether :func:`interrupt` interrupted the command."""
    return bool(_interrupted)
