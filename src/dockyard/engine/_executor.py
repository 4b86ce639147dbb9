"""The engine's executor, made when a build first runs a process: a rebuild whose steps
are all cached loads no runner (subprocess plumbing, OCI specs, user lookup) and does
not look for the OCI runtime."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.executor import ExecMount, OciExecutor, OutputSink, ProcessSpec
    from dockyard.executor.types import Stdio
    from dockyard.snapshot.types import Mount

__all__ = ["LazyExecutor"]


class LazyExecutor:
    """:class:`~dockyard.executor.Executor` over an
    :class:`~dockyard.executor.OciExecutor` on ``root_dir`` made on the first
    :meth:`run` (a missing runtime is reported then)."""

    def __init__(self, root_dir: Path, *, runtime: str, binary: str | None) -> None:
        self._root_dir = root_dir
        self._runtime = runtime
        self._binary = binary
        self._made: OciExecutor | None = None

    @property
    def executor(self) -> OciExecutor:
        if self._made is None:
            from dockyard.executor import OciExecutor

            self._made = OciExecutor(self._root_dir, runtime=self._runtime, binary=self._binary)
        return self._made

    def stale(self) -> bool:
        """Whether an earlier process may have left something behind (a bundle, or the
        runtime's state of a container): :meth:`reap_stale` has work to do. Two
        directory reads."""
        return self._made is not None or any(
            _entries(d)
            for d in (self._root_dir / "bundles", self._root_dir / "runtime" / self._runtime)
        )

    def reap_stale(self) -> None:
        """:meth:`OciExecutor.reap_stale` when :meth:`stale`. Blocking."""
        if self.stale():
            self.executor.reap_stale()

    async def run(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        output: OutputSink | None = None,
    ) -> int:
        return await self.executor.run(root=root, mounts=mounts, process=process, output=output)

    async def run_interactive(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        stdio: Stdio,
    ) -> int:
        """:class:`~dockyard.executor.types.InteractiveExecutor` (``--invoke``)."""
        return await self.executor.run_interactive(
            root=root, mounts=mounts, process=process, stdio=stdio
        )


def _entries(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return any(True for _ in it)
    except FileNotFoundError:
        return False
