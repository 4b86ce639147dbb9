"""Progress of a frontend's own work (``[internal] load build definition from
Dockerfile``), shown like a vertex of the build."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

from dockyard.core import Reporter, VertexStatus, now, sha256_digest

__all__ = ["internal_step"]


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
