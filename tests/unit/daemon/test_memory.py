"""The daemon's allocator settings: effective on glibc, harmless elsewhere."""

from __future__ import annotations

import platform

import pytest

from dockyard.daemon._memory import release_memory, tune_allocator

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the settings are glibc's (a no-op elsewhere)"
)


@glibc
def test_tune_and_release_on_glibc() -> None:
    assert tune_allocator()
    assert tune_allocator()  # idempotent
    big = [bytearray(1 << 20) for _ in range(64)]  # mapped: freed to the system at once
    del big
    release_memory()  # returns whether anything was trimmed: either is fine here
