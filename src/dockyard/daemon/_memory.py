"""Keeping the daemon's memory flat across builds (glibc's allocator).

Exports and pulls allocate large buffers by the hundred: 512 KiB compression blocks,
1 MiB read and upload chunks, 4 MiB read-ahead, zstd's job buffers, in several threads.
glibc serves an allocation above ``M_MMAP_THRESHOLD`` with its own mapping, unmapped when
it is freed; by default the threshold starts at 128 KiB and rises to the size of each
such mapping freed (up to 32 MiB), so after the first export the same buffers come from
the heap arenas of the threads that asked for them and stay there, fragmented, when
freed: the idle RSS climbed 63 → 135 MiB over the bench's scenarios and kept climbing
(48 → 111 MiB over ten exports before the release below existed).

- :func:`tune_allocator` fixes the threshold at :data:`MMAP_THRESHOLD`, 16 MiB (setting
  it at all turns the adjustment off), once, when the daemon starts: the buffers above
  come from the arenas and are reused from build to build, bigger ones are mapped. The
  idle RSS then stays at ~69 MiB. (Until the fourth performance pass it was fixed at
  128 KiB: every large buffer a fresh mapping, faulted in page by page and unmapped
  again — a cold pull of a 100 MB image took 1.1–1.3 s in the daemon instead of
  ~0.7–0.8 s, an export 0.1–0.3 s longer.)
- :func:`release_memory` hands free heap memory back to the system (``malloc_trim``):
  the daemon calls it, in a thread, whenever its last running build ends.

Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["MMAP_THRESHOLD", "release_memory", "tune_allocator"]

MMAP_THRESHOLD = 16 << 20
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
