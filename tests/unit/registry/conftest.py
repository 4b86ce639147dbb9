"""Fixtures shared by the registry client's tests on real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .blobserver import BlobServer


@pytest.fixture
def server() -> Iterator[BlobServer]:
    """A loopback registry serving blobs (see :class:`BlobServer`), stopped after."""
    running = BlobServer().start()
    try:
        yield running
    finally:
        running.stop()
