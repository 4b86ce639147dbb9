"""The ``python`` frontend: a Python build file whose ``build()`` returns a State (see
:mod:`dockyard.frontend._python` for the file's contract and trust model).

The build file runs in the process of the frontend's caller, read from its file system:
the embedded engine's (``dockyard solve build.py``), where client and engine share a
process, or — for a build on a daemon — the client's, which runs this frontend itself
over a client-side context and sends the daemon only the Definition
(:mod:`dockyard.client`; a daemon refuses this frontend: it never runs a client's
Python). ``local`` sources the file makes without a session id read from the build's
client session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from dockyard.core import Platform, UsageError

from ._names import PYTHON_FRONTEND
from ._progress import internal_step
from ._python import load_build_file
from .types import FrontendContext, FrontendResult

__all__ = ["PythonFrontend", "PythonOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonOptions:
    """The build file to run, its build arguments and the target platform (``None``:
    the build platform)."""

    path: Path
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "build_args", MappingProxyType(dict(self.build_args)))

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, str]) -> PythonOptions:
        """``filename`` (required), ``build-arg:NAME``, ``platform``."""
        filename = attrs.get("filename")
        if not filename:
            raise UsageError("the python frontend needs a filename (the build file)")
        platform: Platform | None = None
        if attrs.get("platform"):
            from ._platforms import parse_platforms

            try:
                platforms = parse_platforms(attrs["platform"])
            except ValueError as exc:
                raise UsageError(f"platform {attrs['platform']!r}: {exc}") from exc
            if len(platforms) > 1:
                raise UsageError(
                    f"platform {attrs['platform']!r}: the python frontend builds for one "
                    "platform (multi-platform builds are a Dockerfile feature)"
                )
            platform = next(iter(platforms), None)
        args = {
            key.removeprefix("build-arg:"): value
            for key, value in attrs.items()
            if key.startswith("build-arg:")
        }
        return cls(path=Path(filename), build_args=args, platform=platform)


class PythonFrontend:
    """:class:`~dockyard.frontend.types.Frontend` for Python build files (``python``)."""

    def parse_options(self, attrs: Mapping[str, str]) -> PythonOptions:
        return PythonOptions.from_attrs(attrs)

    async def solve(self, ctx: FrontendContext, options: object) -> FrontendResult:
        if not isinstance(options, PythonOptions):
            raise UsageError(
                f"the {PYTHON_FRONTEND} frontend takes PythonOptions, not {type(options).__name__}"
            )
        platform = options.platform or ctx.build_platform
        async with internal_step(ctx.reporter, f"[internal] load build file {options.path.name}"):
            state = await asyncio.to_thread(
                load_build_file, options.path, build_args=options.build_args, platform=platform
            )
            definition = await asyncio.to_thread(state.marshal, platform=platform)
        return FrontendResult(definition=definition)
