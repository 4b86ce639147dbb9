"""Fixtures for every test."""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# The AWS SDK's chain (the s3 cache's credentials) ends at the EC2 instance metadata
# service, 169.254.169.254: never asked by a test (tests that cover it give a loopback
# endpoint). Set for the whole session, daemons and CLIs the tests start included.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

# A run started as a background job of a non-interactive shell (`scripts/test &`, nohup,
# some CI runners) inherits SIGINT ignored, and so would every CLI and daemon the tests
# start: the tests that interrupt a build with SIGINT (Ctrl-C) then saw it run to its end.
# The session takes Python's own SIGINT handler back; a child's exec resets it to the
# default action.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _own_cache_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's cache directory (``dockyard build`` remembers daemon builds there) is
    the test session's, never the home directory of whoever runs the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home(tmp_path_factory)))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_runtime_dir(tmp_path_factory)))


@pytest.fixture(autouse=True, scope="session")
def _stop_warm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``dockyard`` commands run by tests start warm servers (cli._warm) in the session's
    runtime directory; they end with the session."""
    yield
    from dockyard.cli._warm import stop_servers

    stop_servers(_runtime_dir(tmp_path_factory) / "dockyard")


def _runtime_dir(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-run"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _cache_home(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "xdg-cache"
    path.mkdir(exist_ok=True)
    return path


class _NeverRetrieved(logging.Handler):
    """asyncio's reports of a task or future that failed and was freed with nobody having
    retrieved its exception (the loop's default exception handler logs them to the
    ``asyncio`` logger when the object is freed). Each is a bug: a task that was neither
    awaited nor cancelled and waited for."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "exception was never retrieved" in record.getMessage():
            self.reports.append(self.format(record))


@pytest.fixture(autouse=True, scope="session")
def _never_retrieved() -> Iterator[_NeverRetrieved]:
    """Collects the reports for the whole session. A task in a reference cycle is freed
    only by a garbage collection, which may come in a later test or, left to pytest, after
    its summary where nothing fails (how ``job-1 was cancelled`` once showed up): the
    session collects once more before it ends, so every report fails the run."""
    handler = _NeverRetrieved()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield handler
        gc.collect()
        if handler.reports:
            pytest.fail(_never_retrieved_message(handler.reports, "after the last test"))
    finally:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _no_exception_never_retrieved(_never_retrieved: _NeverRetrieved) -> Iterator[None]:
    """Fails the test during which asyncio reported an exception nobody retrieved."""
    seen = len(_never_retrieved.reports)
    yield
    if len(_never_retrieved.reports) > seen:
        new = _never_retrieved.reports[seen:]
        del _never_retrieved.reports[seen:]  # reported once, here
        pytest.fail(_never_retrieved_message(new, "while this test ran"))


def _never_retrieved_message(reports: list[str], when: str) -> str:
    return (
        f"asyncio reported {len(reports)} exception(s) never retrieved {when} (a task "
        "freed by a garbage collection may be an earlier test's: the report names its "
        "coroutine; PYTHONASYNCIODEBUG=1 shows where it was created):\n" + "\n".join(reports)
    )
