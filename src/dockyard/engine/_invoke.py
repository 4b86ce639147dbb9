"""``dockyard build --invoke`` after a successful build: the shell in the result.

The result's tree gets a writable layer of its own (a new mutable ref on top of it),
released after the shell ends: what the shell changes is discarded, the result and the
cache stay as they are. The process is the image's: its config's environment, working
directory and user (``/`` and root when unset), the worker's default network.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard import oci
    from dockyard.llbsolver import DebugShell, Worker
    from dockyard.solver import ResultRef

__all__ = ["shell_on_result"]


async def shell_on_result(
    shell: DebugShell,
    worker: Worker,
    ref: ResultRef | None,
    image_config: oci.ImageConfig | None,
) -> None:
    """Run ``shell`` on the result ``ref`` (an empty tree for an empty result)."""
    from dockyard.executor import ProcessSpec
    from dockyard.llbsolver import ImmutableRef

    parent = ref.value if ref is not None else None
    if parent is not None and not isinstance(parent, ImmutableRef):
        return
    config = image_config.config if image_config is not None else None
    process = ProcessSpec(
        args=shell.args,
        env=config.env if config is not None else (),
        cwd=(config.working_dir if config is not None else "") or "/",
        user=config.user if config is not None else "",
        network=worker.default_network,
    )
    mutable = await worker.refs.new_mutable(parent, description="--invoke shell")
    try:
        root = await mutable.mounts()
        await shell.run(
            worker.executor, root=root, mounts=(), process=process, title="build finished"
        )
    finally:
        with contextlib.suppress(Exception):
            await mutable.release()
