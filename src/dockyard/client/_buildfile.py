"""Python build files built on a daemon: the file runs here, in the client's process
(as a BuildKit Go LLB program runs on its client), and only the Definition it makes
travels to the daemon.

A daemon runs as root and serves many clients: it never runs a client's Python (it
refuses the ``python`` frontend). The python frontend itself runs here, unchanged,
over :class:`ClientFrontendContext`: the build platform is the daemon's worker's (what
its ``ListWorkers`` names first — the platform the embedded engine would give the
file), progress goes to the build's reporter. What a frontend could ask of an engine
beyond that — base-image metadata, files of the client's directories — is not offered
here: a :class:`~dockyard.core.UsageError` names it (the python frontend asks for
neither).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from dockyard.core import Platform, Reporter, UsageError

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.dockerfile import ImageMetaResolver, ResolvedImage

    from ._job import Job

__all__ = ["ClientFrontendContext", "evaluate_on_client"]


class _NoImages:
    """Base-image lookups, which a frontend run on a daemon's client cannot make."""

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        raise UsageError(
            f"cannot look up the metadata of image {ref!r}: a build file evaluated on the "
            "client of a daemon has no image resolver (build it embedded, with --state-dir)"
        )


class ClientFrontendContext:
    """A :class:`dockyard.frontend.FrontendContext` in the client's process, for a
    frontend whose Definition goes to a daemon: no session of its own (local sources
    stay unnamed, read from the build's session), ``reporter`` and ``build_platform``
    as given; base-image lookups and reading the client's files raise a
    :class:`~dockyard.core.UsageError` naming what was asked."""

    def __init__(self, *, reporter: Reporter, build_platform: Platform) -> None:
        self._reporter = reporter
        self._platform = build_platform
        self._images = _NoImages()

    @property
    def session_id(self) -> str | None:
        return None

    @property
    def reporter(self) -> Reporter:
        return self._reporter

    @property
    def build_platform(self) -> Platform:
        return self._platform

    @property
    def images(self) -> ImageMetaResolver:
        return self._images

    async def read_client_files(self, directory: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        raise UsageError(
            f"cannot read {', '.join(paths) or 'files'} of the client directory "
            f"{directory!r}: a build file evaluated on the client of a daemon has no "
            "session to read from"
        )


async def evaluate_on_client(
    job: Job, reporter: Reporter, build_platform: Callable[[], Awaitable[Platform]]
) -> Job:
    """``job`` (the ``python`` frontend's) with its build file run in this process: the
    same job carrying the Definition the file made. ``build_platform`` gives the
    platform of the engine that will build it; asked only when the options name no
    target platform. The file's errors are raised as the embedded engine raises them
    (a :class:`~dockyard.core.FrontendError` at ``file:line``)."""
    from dockyard.frontend import PythonFrontend, PythonOptions

    options = job.frontend_options
    if not isinstance(options, PythonOptions):
        raise UsageError(f"the python frontend takes PythonOptions, not {type(options).__name__}")
    platform = options.platform or await build_platform()
    ctx = ClientFrontendContext(reporter=reporter, build_platform=platform)
    result = await PythonFrontend().solve(ctx, options)
    if result.definition is None:  # pragma: no cover - the python frontend always makes one
        raise UsageError(f"the build file {options.path} made no Definition")
    return dataclasses.replace(
        job, definition=result.definition, frontend=None, frontend_options=None
    )
