"""Keeping the daemon's memory flat across builds (glibc's allocator).

Exports and pulls allocate large buffers by the hundred: 512 KiB compression blocks,
1 MiB read and upload chunks, 4 MiB read-ahead, zstd's job buffers, in several threads.
glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB at first) with its own
mapping, and each time it frees such a mapping it raises the threshold to that size (up
to 32 MiB): after the first export the same buffers come from the heap arenas of the
threads that asked for them, and stay there when freed. :func:`release_memory` hands
that free memory back (``malloc_trim``): the daemon calls it, in a thread, whenever its
last running build ends.

The threshold is left to glibc. Fixing it at 128 KiB (what the daemon did until the
fourth performance pass) kept the idle RSS at ~66 MiB instead of 80–126 MiB after 20+
exports, but turned every large buffer into a fresh mapping, faulted in page by page
and unmapped again: a cold pull of a 100 MB image took 1.1–1.3 s instead of 0.6–0.8 s
in the daemon (0.4 s of page faults and unmaps), an export 0.1–0.4 s longer. With the
release after builds the idle RSS stays under the 150 MB target.

It does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_memory"]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim"):
        return None  # not glibc
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def release_memory() -> bool:
    """Give the system back the heap memory no allocation uses (blocking, a few ms:
    call it from a thread); whether any was released."""
    libc = _libc()
    return libc is not None and libc.malloc_trim(0) == 1
