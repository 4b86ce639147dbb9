"""The console-socket and pty plumbing of interactive processes, with a fake runtime
that sends a pty's master end over the socket as crun does (``SCM_RIGHTS``)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import struct
import termios
import threading
import tty
from pathlib import Path
from typing import Any

import pytest

from dockyard.executor._console import (
    ConsoleSocket,
    PtyBridge,
    copy_window_size,
    raw_terminal,
    receive_fd,
)


def _send_fd(path: Path, fd: int) -> None:
    """What the runtime does with the pty it made for the container."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        socket.send_fds(conn, [b"console"], [fd])


def _size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _read(fd: int, want: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    deadline = loop.time() + 10.0
    while want not in data and loop.time() < deadline:
        try:
            data += os.read(fd, 4096)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    return data


async def test_the_runtime_sends_the_pty_and_the_bridge_copies_both_ways() -> None:
    master, slave = os.openpty()  # the container's pty: the shell has the slave
    user_in_r, user_in_w = os.pipe()  # the user's keyboard
    user_out_r, user_out_w = os.pipe()  # the user's screen
    os.set_blocking(user_out_r, False)
    os.set_blocking(slave, False)
    tty.setraw(slave)  # (no echo, no line editing: bytes as they are)
    console = ConsoleSocket()
    gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    try:
        assert len(str(console.path)) < 108
        sender = threading.Thread(target=_send_fd, args=(console.path, master))
        sender.start()
        received = await console.receive(gone)
        sender.join()
        os.close(master)  # the runtime's copy
        assert received is not None
        bridge = PtyBridge(received, stdin=user_in_r, stdout=user_out_w)
        bridge.start()
        try:
            os.write(slave, b"prompt$ ")
            assert b"prompt$ " in await _read(user_out_r, b"prompt$ ")
            os.write(user_in_w, b"ls\n")
            assert b"ls\n" in await _read(slave, b"ls\n")
            os.close(slave)  # the shell exits: the pty hangs up
            slave = -1
            await asyncio.wait_for(bridge.hangup, 10)
        finally:
            bridge.close()
            bridge.close()  # idempotent
    finally:
        console.close()
        for fd in (slave, user_in_r, user_in_w, user_out_r, user_out_w):
            if fd >= 0:
                os.close(fd)
    assert not console.path.parent.exists()  # the socket's directory is gone


async def test_the_runtime_exiting_first_ends_the_wait() -> None:
    console = ConsoleSocket()
    try:
        gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, gone.set_result, 1)
        assert await console.receive(gone) is None
    finally:
        console.close()


def _connect_and_send_nothing(path: Path) -> None:
    """What crun does when the process cannot start."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        conn.sendall(b"console")


async def test_a_runtime_that_sends_no_terminal_gives_none() -> None:
    console = ConsoleSocket()
    try:
        gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        sender = threading.Thread(target=_connect_and_send_nothing, args=(console.path,))
        sender.start()
        assert await console.receive(gone) is None
        sender.join()
    finally:
        console.close()


def test_a_connection_without_a_descriptor_is_an_error() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"no fd here")
        with pytest.raises(OSError, match="no terminal"):
            receive_fd(right)


def test_extra_descriptors_are_closed() -> None:
    left, right = socket.socketpair()
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    try:
        with left, right:
            socket.send_fds(left, [b"x"], [a_r, b_r])
            before = set(os.listdir("/proc/self/fd"))
            got = receive_fd(right)
            after = set(os.listdir("/proc/self/fd"))
        # (each listing holds one descriptor of its own while it runs)
        assert len(after) - len(before) == 1  # the second one was closed
        assert str(got) in after
        assert not os.get_inheritable(got)
        os.close(got)
    finally:
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)


def test_window_size_is_copied() -> None:
    user_master, user_slave = os.openpty()
    box_master, box_slave = os.openpty()
    try:
        _set_size(user_slave, 33, 111)
        copy_window_size(user_slave, box_master)
        assert _size(box_slave) == (33, 111)
        copy_window_size(os.open(os.devnull, os.O_RDONLY), box_master)  # no tty: no change
        assert _size(box_slave) == (33, 111)
    finally:
        for fd in (user_master, user_slave, box_master, box_slave):
            os.close(fd)


async def test_the_bridge_follows_window_changes() -> None:
    user_master, user_slave = os.openpty()
    box_master, box_slave = os.openpty()
    out_r, out_w = os.pipe()
    _set_size(user_slave, 20, 70)
    received = os.dup(box_master)
    bridge = PtyBridge(received, stdin=user_slave, stdout=out_w)
    try:
        bridge.start()
        assert _size(box_slave) == (20, 70)  # the size at the start
        _set_size(user_slave, 50, 160)
        os.kill(os.getpid(), signal.SIGWINCH)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if _size(box_slave) == (50, 160):
                break
        assert _size(box_slave) == (50, 160)
    finally:
        bridge.close()
        for fd in (user_master, user_slave, box_master, box_slave, out_r, out_w):
            os.close(fd)


def test_raw_mode_is_restored_on_an_error() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        during: list[list[Any]] = []

        def killed() -> None:
            with raw_terminal(slave):
                during.append(termios.tcgetattr(slave))
                raise RuntimeError("the shell was killed")

        with pytest.raises(RuntimeError):
            killed()
        assert during[0] != before
        assert not during[0][3] & termios.ECHO
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_raw_mode_of_no_terminal_is_nothing(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with raw_terminal(r):
            pass
    finally:
        os.close(r)
        os.close(w)


async def test_a_full_stdout_holds_the_pty_back_without_blocking_the_loop() -> None:
    """A non-blocking stdout that takes nothing more (a daemon's pipe to a slow client)
    pauses the copy; the loop runs on; everything arrives in order once read."""
    master, slave = os.openpty()
    tty.setraw(slave)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.set_blocking(out_w, False)
    os.set_blocking(out_r, False)
    data = bytes(range(256)) * 4096  # 1 MiB: many times a pipe's and a pty's buffers
    bridge = PtyBridge(os.dup(master), stdin=in_r, stdout=out_w)
    writer = threading.Thread(target=lambda: _write_all_blocking(slave, data))
    try:
        bridge.start()
        writer.start()
        ticks = 0
        got = b""
        while len(got) < len(data):
            await asyncio.sleep(0.001)  # the loop is never blocked by the bridge
            ticks += 1
            if ticks % 20 == 0:  # a slow reader
                got += _drain_nonblocking(out_r)
            assert ticks < 200_000
        writer.join()
        assert got == data
    finally:
        bridge.close()
        for fd in (master, slave, in_r, in_w, out_r, out_w):
            os.close(fd)


def _write_all_blocking(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:65536]) :]


def _drain_nonblocking(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


class Feed:
    """A window size from elsewhere (a client's, over a daemon's session)."""

    def __init__(self, size: tuple[int, int] | None) -> None:
        self.current = size
        self.watchers: list[Any] = []

    def size(self) -> tuple[int, int] | None:
        return self.current

    def watch(self, changed: Any) -> Any:
        self.watchers.append(changed)
        return lambda: self.watchers.remove(changed)

    def update(self, size: tuple[int, int]) -> None:
        self.current = size
        for changed in list(self.watchers):
            changed()


async def test_a_window_feed_sizes_the_pty_instead_of_sigwinch() -> None:
    box_master, box_slave = os.openpty()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    feed = Feed((24, 80))
    handler = signal.getsignal(signal.SIGWINCH)
    bridge = PtyBridge(os.dup(box_master), stdin=in_r, stdout=out_w, window=feed)
    try:
        bridge.start()
        assert _size(box_slave) == (24, 80)
        assert signal.getsignal(signal.SIGWINCH) == handler  # no handler of its own
        feed.update((52, 170))
        assert _size(box_slave) == (52, 170)
        bridge.close()
        assert feed.watchers == []
    finally:
        bridge.close()
        for fd in (box_master, box_slave, in_r, in_w, out_r, out_w):
            os.close(fd)


async def test_drain_waits_for_a_full_stdout() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.set_blocking(out_w, False)
    os.set_blocking(out_r, False)
    os.set_blocking(slave, False)
    data = b"z" * 3000  # what the shell wrote just before it exited
    bridge = PtyBridge(os.dup(master), stdin=in_r, stdout=out_w)
    try:
        bridge.start()
        filler = b"f" * 65536  # the stdout pipe is full
        while True:
            try:
                os.write(out_w, filler)
            except BlockingIOError:
                break
        os.write(slave, data)
        await asyncio.sleep(0.05)
        os.close(slave)  # the process exits
        slave = -1
        draining = asyncio.ensure_future(bridge.drain())
        got = b""
        while not draining.done() or got.count(b"z") < len(data):
            await asyncio.sleep(0.01)
            got += _drain_nonblocking(out_r)
            assert len(got) < 100 << 20
        await draining
        assert got.replace(b"f", b"") == data
    finally:
        bridge.close()
        for fd in (master, slave, in_r, in_w, out_r, out_w):
            if fd >= 0:
                os.close(fd)
