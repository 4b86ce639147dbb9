"""A git server that drops connections (issue 8's bad input): the git source retries
remote commands that fail transiently, then gives a clear error saying how often it
tried; refusals (a repository that is not there) fail at once. The server is ``git
daemon`` behind a loopback proxy that closes the first connections it accepts."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cache import CacheManager
from dockyard.core import DockyardError
from dockyard.source import GitSource, GitSpec
from dockyard.testing.gitserver import GitDaemon, TestRepo

from .test_git_source import cache, read

__all__ = ["cache"]  # the fixture


class DroppingProxy:
    """Accepts on a free loopback port; closes the first ``drop`` connections at once
    (as a server that resets them), forwards the others to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], drop: int) -> None:
        self.upstream = upstream
        self.drop = drop
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drop:
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                conn.close()  # a reset, not a clean end
                continue
            threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.upstream) as up:

            def pump(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pump, args=(up, conn), daemon=True)
            back.start()
            pump(conn, up)
            back.join()

    def close(self) -> None:
        # shutdown first: close() alone leaves a thread blocked in accept() holding the
        # socket listening, and a later proxy given the same port then had its
        # connections taken by this one (forwarded to a git daemon long gone)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[GitDaemon]:
    repo = TestRepo(tmp_path / "repos" / "proj")
    repo.commit({"README": "one\n"}, "one")
    with GitDaemon(tmp_path / "repos") as daemon:
        yield daemon


@contextlib.contextmanager
def proxy(daemon: GitDaemon, drop: int) -> Iterator[DroppingProxy]:
    port = int(daemon.url("proj").split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    running = DroppingProxy(("127.0.0.1", port), drop)
    try:
        yield running
    finally:
        running.close()


async def test_dropped_connections_are_retried(cache: CacheManager, served: GitDaemon) -> None:
    source = GitSource(cache=cache, retry_delay=0.01)
    with proxy(served, drop=2) as flaky:
        url = f"git://127.0.0.1:{flaky.port}/proj"
        _, ref = await source.fetch(GitSpec.parse_url(url + "#main"))
        assert (await read(ref))["README"] == (b"one\n", 0o644)
        assert flaky.accepted == 4  # ls-remote: two dropped, the third answered; one fetch


async def test_a_server_that_keeps_dropping_gives_a_clear_error(
    cache: CacheManager, served: GitDaemon
) -> None:
    source = GitSource(cache=cache, retry_delay=0.01)
    with proxy(served, drop=1000) as dead:
        url = f"git://127.0.0.1:{dead.port}/proj"
        with pytest.raises(DockyardError) as info:
            await source.fetch(GitSpec.parse_url(url + "#main"))
        assert dead.accepted == 3
    message = str(info.value)
    assert message.startswith(f"git ls-remote of {url} failed after 3 attempts: ")
    assert "Traceback" not in message


async def test_refusals_are_not_retried(cache: CacheManager, served: GitDaemon) -> None:
    source = GitSource(cache=cache, retry_delay=0.01)
    with proxy(served, drop=0) as plain:
        url = f"git://127.0.0.1:{plain.port}/no-such-repo"
        with pytest.raises(DockyardError) as info:
            await source.fetch(GitSpec.parse_url(url + "#main"))
        assert plain.accepted == 1
    assert "after" not in str(info.value)
    assert "no-such-repo" in str(info.value)
