"""Running a build's exporters on its result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dockyard.core import UsageError

if TYPE_CHECKING:
    from dockyard import oci
    from dockyard.core import Reporter
    from dockyard.session import SessionHandle
    from dockyard.solver import ResultRef

    from ._engine import Engine

__all__ = ["export_all"]


async def export_all(
    engine: Engine,
    exports: Sequence[object],
    *,
    ref: ResultRef | None,
    image_config: oci.ImageConfig | None,
    session: SessionHandle | None,
    reporter: Reporter,
) -> dict[str, str]:
    """Run each export in order; the merged exporter response."""
    for export in exports:
        raise UsageError(f"no exporter for {export!r} in this engine")
    return {}
