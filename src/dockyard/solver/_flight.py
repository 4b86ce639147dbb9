"""Memoised computations shared by waiters, cancelled when nobody waits any more.

This is the solver's whole cancellation model: a computation (a vertex's key, a vertex's
outputs) runs in its own task while at least one waiter — a job's ``solve`` or a
dependant's computation — waits for it. When the last waiter leaves before it is done
(cancelled, or failing fast because a sibling input failed), the task is cancelled, which
in turn makes it leave the computations *it* waits for. Work that someone else still
waits for keeps running. A successful outcome is memoised; a failure is not: it is what
every waiter gets — also one joining while another still waits — and is forgotten when
the last of them has left (the next waiter starts again).

A computation may also start work *ahead* of needing it (a :class:`Watch`): it is then
a waiter of that work until it ends, and a failure there fails it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from dockyard.core import CancelledError

__all__ = ["Factory", "Memo", "Watch", "wait_all"]

T = TypeVar("T")

Factory = Callable[[], Coroutine[Any, Any, T]]


class Memo(Generic[T]):
    """One memoised computation (see the module docstring)."""

    __slots__ = ("_task", "_value", "_waiters", "done")

    def __init__(self) -> None:
        self._task: asyncio.Task[T] | None = None
        self._waiters = 0
        self._value: Any = None
        self.done = False

    @property
    def value(self) -> T:
        """The memoised outcome; only valid when :attr:`done`."""
        return self._value  # type: ignore[no-any-return]

    @property
    def task(self) -> asyncio.Task[T] | None:
        """The running computation, if any."""
        return self._task

    def start(self, factory: Factory[T]) -> asyncio.Task[T]:
        """The running task, started from ``factory`` if there is none. Does not wait."""
        task = self._task
        if task is None or (self._waiters <= 0 and task.done()):
            # (a failure nobody waits for any more is forgotten: start again)
            task = asyncio.create_task(self._run(factory))
            self._task = task
            task.add_done_callback(self._finished)
        return task

    async def _run(self, factory: Factory[T]) -> T:
        value = await factory()
        # memoised in the task's last step, not in a done callback: a waiter may resume
        # (an already-done task is awaited without yielding) before callbacks run
        self._value = value
        self.done = True
        return value

    def _finished(self, task: asyncio.Task[T]) -> None:
        # (task.exception() also marks a failure as retrieved: its waiters got it.) A
        # failure stays while its waiters are still leaving: one that joins now gets it
        # too instead of running the step again; the last to leave forgets it.
        forget = task.cancelled() or task.exception() is None or self._waiters <= 0
        if forget and self._task is task:
            self._task = None

    def enter(self, task: asyncio.Task[T]) -> None:
        self._waiters += 1

    def leave(self, task: asyncio.Task[T]) -> None:
        """A waiter is gone; cancel the computation if it was the last one."""
        self._waiters -= 1
        if self._waiters <= 0:
            self._waiters = 0
            if not task.done():
                task.cancel()
            if self._task is task:
                self._task = None  # done: a failure is forgotten; running: cancelled

    def cancel(self) -> asyncio.Task[T] | None:
        """Cancel the computation regardless of waiters; return its task to await."""
        task = self._task
        self._task = None
        if task is not None:
            task.cancel()
        return task

    async def get(self, factory: Factory[T]) -> T:
        """The memoised value, computing it (or joining the computation) if needed."""
        if self.done:
            return self._value  # type: ignore[no-any-return]
        task = self.start(factory)
        self._waiters += 1
        try:
            return await asyncio.shield(task)
        finally:
            self.leave(task)


async def wait_all(items: Sequence[tuple[Memo[T], Factory[T]]]) -> list[T]:
    """Wait for every memo, computing concurrently what is not done; fail fast.

    On the first failure the other computations are left (and cancelled if nobody else
    waits for them) and the failure is raised. A computation cancelled under us (its
    vertex dropped by every job) raises :class:`dockyard.core.CancelledError`.
    """
    pending: list[tuple[Memo[T], asyncio.Task[T]]] = []
    for memo, factory in items:
        if not memo.done:
            task = memo.start(factory)
            memo.enter(task)
            pending.append((memo, task))
    if not pending:
        return [memo.value for memo, _ in items]
    try:
        if len(pending) == 1:
            await asyncio.shield(pending[0][1])
        else:
            done, _ = await asyncio.wait(
                [task for _, task in pending], return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            for task in done:
                if task.cancelled():
                    raise CancelledError("a computation this step needs was cancelled")
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling() == 0:
            # the computation was cancelled, not us: it was dropped by every job
            raise CancelledError("a computation this step needs was cancelled") from None
        raise
    finally:
        for memo, task in pending:
            memo.leave(task)
    return [memo.value for memo, _ in items]


def _raise_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        raise CancelledError("a computation this step needs was cancelled")
    exc = task.exception()
    if exc is not None:
        raise exc


class Watch:
    """The computations one computation waits for or started ahead of needing them.

    :meth:`add` starts (or joins) a memo's computation and makes the owner one of its
    waiters until :meth:`close`; :meth:`next` waits until some of them have finished and
    returns their tasks, so that the owner can act on each as it arrives (``wait_all``
    waits for all at once). Like ``wait_all`` it fails fast: the first failure among
    *any* of them — including work started ahead of need — is raised. ``close`` (in a
    ``finally``) leaves them all, which cancels what nobody else waits for.
    """

    __slots__ = ("_arrived", "_entered", "_wake")

    def __init__(self) -> None:
        self._entered: list[tuple[Memo[Any], asyncio.Task[Any]]] = []
        self._arrived: list[asyncio.Task[Any]] = []
        self._wake: asyncio.Future[None] | None = None

    def add(self, memo: Memo[T], factory: Factory[T]) -> asyncio.Task[T] | None:
        """Start or join ``memo``'s computation and watch it; None if it is done."""
        if memo.done:
            return None
        task = memo.start(factory)
        memo.enter(task)
        self._entered.append((memo, task))
        if task.done():  # a failure its other waiters are still leaving
            self._arrived.append(task)
        else:
            task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._arrived.append(task)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def next(self) -> list[asyncio.Task[Any]]:
        """The watched tasks that finished since the last call (waiting for one if none
        did); raises the first failure among them."""
        if not self._arrived:
            wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._wake = wake
            try:
                await wake
            finally:
                self._wake = None
        arrived, self._arrived = self._arrived, []
        for task in arrived:
            _raise_failure(task)
        return arrived

    def check(self) -> None:
        """Raise the failure of a watched task that has finished, if any (no waiting)."""
        for task in self._arrived:
            _raise_failure(task)

    def close(self) -> None:
        """Leave every watched computation (idempotent)."""
        entered, self._entered = self._entered, []
        for memo, task in entered:
            task.remove_done_callback(self._finished)
            memo.leave(task)
