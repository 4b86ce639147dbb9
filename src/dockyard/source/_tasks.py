"""Awaiting work that must not be abandoned halfway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["complete"]

T = TypeVar("T")


async def complete(
    start: Callable[[], Awaitable[T]], on_cancel: Callable[[], None] | None = None
) -> T:
    """Await ``start()`` to its end even if the caller is cancelled meanwhile, then
    re-raise the cancellation.

    For work in a thread (which cannot be interrupted: removing the file or snapshot it
    writes to before it stops would corrupt something) and for commits that must finish
    once begun. ``on_cancel`` is called once when the cancellation arrives, to ask the
    work to stop early (set a flag a thread polls).
    """
    task = asyncio.ensure_future(start())
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            if not cancelled and on_cancel is not None:
                on_cancel()
            cancelled = True
        except BaseException:
            if cancelled:
                raise asyncio.CancelledError from None
            raise
    if cancelled:
        raise asyncio.CancelledError
    return result
