"""The watchdog process: kills the containers of a process that died, however it died.

Started by :mod:`dockyard.executor._watchdog` as ``python -I -S _reaper.py PARENT`` (by
path, without site-packages: it imports the standard library only, and little of it, so
that it starts in ~10 ms). Its stdin is a socket from ``PARENT``, which writes one line
per change: ``+ID`` before it starts the runtime of container ``ID`` and ``-ID`` after
that runtime exited.

It waits for ``PARENT`` to end (a pidfd: the whole process, whichever thread started us;
end of file on stdin as well) and then, for every container still announced, kills the
container's init, whose death ends every process of its pid namespace (the kernel's
doing). The runtime process (``<runtime> ... run ... ID``, which nobody killed) is found
by its argv; the container's init is its child. A ``crun run`` or ``runc run`` killed by
SIGKILL leaves its container running (tried on crun 1.8 and runc 1.1), so the runtime
itself is killed only after the grace time, when killing its children did not end it.
The runtime then exits by itself and removes its state; mounts and bundles are left to
``OciExecutor.reap_stale`` at the next start, as before.
"""

from __future__ import annotations

import os
import select
import sys
import time

__all__ = ["GRACE", "TICK", "main", "parse_lines", "reap", "runtime_of"]

GRACE = 2.0  # seconds of killing the containers' inits before the runtimes are killed too
TICK = 0.05  # between two scans of /proc
_MAX_ID = 128


def _valid_id(name: bytes) -> bool:
    return (
        0 < len(name) <= _MAX_ID
        and name[:1].isalnum()
        and all(c in b"-_." or bytes([c]).isalnum() for c in name)
    )


def parse_lines(buffer: bytes, ids: set[bytes]) -> bytes:
    """Apply the complete ``+ID`` / ``-ID`` lines of ``buffer`` to ``ids``; returns the
    incomplete rest. Malformed lines are ignored."""
    *lines, rest = buffer.split(b"\n")
    for line in lines:
        op, name = line[:1], line[1:]
        if not _valid_id(name):
            continue
        if op == b"+":
            ids.add(name)
        elif op == b"-":
            ids.discard(name)
    return rest


def runtime_of(argv: list[bytes], ids: set[bytes]) -> bytes | None:
    """The container ``argv`` runs when it is a runtime's ``run`` command of one of
    ``ids`` (``<runtime> [global options] run [options] ID``), else ``None``."""
    if len(argv) >= 2 and argv[-1] in ids and b"run" in argv[:-1]:
        return argv[-1]
    return None


def _processes() -> dict[int, tuple[int, list[bytes]]]:
    """pid -> (parent pid, argv) of every process visible in /proc."""
    out: dict[int, tuple[int, list[bytes]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        ppid = _ppid(stat)
        if ppid is not None:
            out[int(entry)] = (ppid, cmdline.rstrip(b"\0").split(b"\0") if cmdline else [])
    return out


def _ppid(stat: bytes) -> int | None:
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def _kill(pid: int, ppid: int) -> None:
    """SIGKILL ``pid`` if it is (still) a child of ``ppid``: through a pidfd opened
    before the check, so that a reused pid is never signalled."""
    import signal  # only when there is something to kill

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd (Linux < 5.3): the check, then the pid
        pidfd = -1
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if _ppid(f.read()) != ppid:
                return
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def reap(ids: set[bytes], *, grace: float = GRACE, tick: float = TICK) -> int:
    """Kill the containers of ``ids``: every child of their runtime processes, each
    ``tick`` until no runtime of theirs is left (seen twice, so that a runtime whose
    fork had not yet exec'd is found too); after ``grace`` the runtimes as well.
    Returns the number of processes signalled."""
    deadline = time.monotonic() + grace
    signalled = 0
    scans = 0
    while True:
        procs = _processes()
        scans += 1
        runtimes = {pid for pid, (_, argv) in procs.items() if runtime_of(argv, ids)}
        for pid, (ppid, _) in procs.items():
            if ppid in runtimes:
                _kill(pid, ppid)
                signalled += 1
        if not runtimes and scans >= 2:
            return signalled
        if time.monotonic() >= deadline:
            for pid in runtimes:
                _kill(pid, procs[pid][0])
                signalled += 1
            return signalled
        time.sleep(tick)


def _read_available(fd: int) -> tuple[bytes, bool]:
    """What can be read from non-blocking ``fd`` now, and whether it reached its end."""
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks), False
        except OSError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


def _open_parent(parent: int) -> int | None:
    """A pidfd of ``parent`` while it is alive and our parent; -1 if it is gone; ``None``
    without pidfds (then :func:`watch` looks at our parent pid every second). Checked
    after opening: had it died first, we would have another parent by now."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        return -1
    except OSError:
        return None if os.getppid() == parent else -1
    if os.getppid() != parent:
        os.close(pidfd)
        return -1
    return pidfd


def watch(parent: int, stdin: int = 0) -> set[bytes]:
    """Follow the lines on ``stdin`` until ``parent`` ends (or closes its end); the ids
    still announced then."""
    ids: set[bytes] = set()
    buffer = b""
    os.set_blocking(stdin, False)
    pidfd = _open_parent(parent)
    if pidfd is None or pidfd >= 0:
        poller = select.poll()
        poller.register(stdin, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        ended = False
        while not ended:
            events = poller.poll(None if pidfd is not None else 1000)
            if pidfd is None and os.getppid() != parent:
                ended = True
            for fd, _ in events:
                if fd == pidfd:
                    ended = True
                    continue
                data, eof = _read_available(stdin)
                buffer = parse_lines(buffer + data, ids)
                ended = ended or eof
        if pidfd is not None:
            os.close(pidfd)
    # the parent is gone: all it wrote is in the socket (a forked copy of it that still
    # holds the socket open must not keep us waiting for its end)
    data, _ = _read_available(stdin)
    parse_lines(buffer + data + b"\n", ids)
    return ids


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: _reaper.py PARENT-PID\n")
        return 2
    ids = watch(int(argv[1]))
    if ids:
        reap(ids)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
