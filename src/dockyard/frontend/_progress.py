"""Progress of a frontend's own work (``[internal] load build definition from
Dockerfile``), shown like a vertex of the build."""

from __future__ import annotations

import contextlib
import contextvars
import secrets
from collections.abc import AsyncIterator, Iterator

from dockyard.core import Platform, Reporter, VertexStatus, now, sha256_digest

__all__ = ["internal_step", "metadata_step_name", "platform_step_names"]

_PLATFORM_NAMES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dockyard_frontend_platform_names", default=False
)


@contextlib.contextmanager
def platform_step_names() -> Iterator[None]:
    """Inside (this task and the tasks it starts): a multi-platform build, whose base
    image lookups :func:`metadata_step_name` names with their platform."""
    token = _PLATFORM_NAMES.set(True)
    try:
        yield
    finally:
        _PLATFORM_NAMES.reset(token)


def metadata_step_name(ref: str, platform: Platform) -> str:
    """The step of looking up base image ``ref`` for ``platform``: ``[internal] load
    metadata for REF``, or in a multi-platform build (:func:`platform_step_names`)
    ``[linux/arm64 internal] load metadata for REF``, as BuildKit's Dockerfile frontend
    names it."""
    prefix = f"{platform} internal" if _PLATFORM_NAMES.get() else "internal"
    return f"[{prefix}] load metadata for {ref}"


@contextlib.asynccontextmanager
async def internal_step(reporter: Reporter, name: str) -> AsyncIterator[str]:
    """Report the body as a step named ``name``: started, then completed or failed
    (``error="cancelled"`` when cancelled). Yields the step's digest (random: such a
    step is never cached), for logs and progress of the step."""
    digest = str(sha256_digest(f"frontend-step\0{name}\0{secrets.token_hex(8)}".encode()))
    started = now()
    reporter.emit(VertexStatus(digest=digest, name=name, started=started))
    try:
        yield digest
    except BaseException as exc:
        error = "cancelled" if not isinstance(exc, Exception) else str(exc) or type(exc).__name__
        reporter.emit(
            VertexStatus(digest=digest, name=name, started=started, completed=now(), error=error)
        )
        raise
    reporter.emit(VertexStatus(digest=digest, name=name, started=started, completed=now()))
