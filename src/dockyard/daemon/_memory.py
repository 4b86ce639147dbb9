"""Keeping the daemon's memory flat across builds (glibc's allocator).

Exports and pulls allocate large buffers by the hundred: 512 KiB compression blocks,
1 MiB read and upload chunks, zstd's job buffers, in several threads. glibc serves an
allocation above ``M_MMAP_THRESHOLD`` (128 KiB) with its own mapping and unmaps it when
it is freed, but each time it frees such a mapping it raises the threshold to that size
(up to 32 MiB): after the first export, the same buffers come from the heap arenas of
the threads that asked for them and stay there, fragmented, when freed. Measured with a
100 MB layer exported five times in gzip and five in zstd: the daemon's RSS idle rose
48 → 111 MiB and kept growing; with the threshold fixed, it stayed at ~66 MiB.

- :func:`tune_allocator` fixes the threshold at its default (setting it at all turns
  the adjustment off), once, when the daemon starts.
- :func:`release_memory` hands free heap memory back to the system (``malloc_trim``):
  the daemon calls it, in a thread, whenever its last running build ends.

Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["MMAP_THRESHOLD", "release_memory", "tune_allocator"]

MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold (see the module docstring); whether it was set."""
    libc = _libc()
    return libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def release_memory() -> bool:
    """Give the system back the heap memory no allocation uses (blocking, a few ms:
    call it from a thread); whether any was released."""
    libc = _libc()
    return libc is not None and libc.malloc_trim(0) == 1
