"""The garbage collector of the console scripts' processes.

Starting ``dockyard`` (and ``dockyardd``) is mostly imports: hundreds of modules whose
functions, classes and constants live as long as the process. With the collector's
default thresholds (700, 10, 10) that start-up triggers a hundred young collections and
full ones that walk every object made so far, finding almost nothing to free: ~10% of a
cached build's CPU time. The console scripts raise the thresholds first thing
(:func:`startup`): young collections still run (every 50,000 allocations, not 700), full
ones practically only in a long build. ``dockyardd`` ends its start-up with
:func:`started`: one full collection, then what is left is frozen (later full
collections skip it) and the default thresholds come back for the long-running loop.

Only the console scripts call these: ``main(argv)`` run in another program (tests)
leaves its collector alone.
"""

from __future__ import annotations

import gc

__all__ = ["started", "startup"]

# young collections every 50,000 allocations; a full one after 100 middle ones
STARTUP_THRESHOLDS = (50_000, 20, 100)

_saved: tuple[int, int, int] | None = None


def startup() -> None:
    """Raise the collector's thresholds for the start-up of this process."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
    gc.set_threshold(*STARTUP_THRESHOLDS)


def started() -> None:
    """Start-up is over (a long-running process): collect, freeze what is left and
    restore the thresholds :func:`startup` raised. Nothing happens if it did not."""
    global _saved
    if _saved is None:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_saved)
    _saved = None
