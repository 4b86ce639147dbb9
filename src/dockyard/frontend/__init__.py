"""Layer 6: frontends turn build descriptions into LLB.

- :class:`Frontend` (seam in :mod:`dockyard.frontend.types`): ``parse_options(attrs)``
  and ``async solve(ctx, options) -> FrontendResult`` (a Definition, the image config to
  export, warnings), given a :class:`FrontendContext` the engine binds to one build;
- :class:`Frontends` — the registry by name the engine fills (:class:`LazyFrontend`
  defers making a frontend until a build uses it);
- :class:`DockerfileFrontend` (``dockerfile.v0``, :class:`DockerfileOptions`) — a
  Dockerfile read from the client's session, converted by :mod:`dockyard.dockerfile`;
- :class:`PythonFrontend` (``python``, :class:`PythonOptions`) over
  :func:`load_build_file` — a Python build file whose ``build()`` returns an
  :class:`dockyard.llb.State` (see :mod:`dockyard.frontend._python`).

The frontends load on first use: a build that never reads a Dockerfile does not import
the Dockerfile converter, and :class:`DockerfileOptions` (what a client sends) loads
neither the converter nor LLB.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from ._names import DOCKERFILE_FRONTEND, PYTHON_FRONTEND
from ._platforms import format_platforms, parse_platforms
from ._progress import internal_step, metadata_step_name, platform_step_names
from ._registry import Frontends, LazyFrontend
from .types import Frontend, FrontendContext, FrontendResult, PlatformResult, SbomScan

if TYPE_CHECKING:
    from ._dockerfile import DockerfileFrontend, DockerfileOptions
    from ._pyfile import PythonFrontend, PythonOptions
    from ._python import BuildContext, load_build_file

_LAZY = {
    "DockerfileFrontend": "._dockerfile",
    "DockerfileOptions": "._dockerfile",
    "PythonFrontend": "._pyfile",
    "PythonOptions": "._pyfile",
    "BuildContext": "._python",
    "load_build_file": "._python",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "DOCKERFILE_FRONTEND",
    "PYTHON_FRONTEND",
    "BuildContext",
    "DockerfileFrontend",
    "DockerfileOptions",
    "Frontend",
    "FrontendContext",
    "FrontendResult",
    "Frontends",
    "LazyFrontend",
    "PlatformResult",
    "PythonFrontend",
    "PythonOptions",
    "SbomScan",
    "format_platforms",
    "internal_step",
    "load_build_file",
    "metadata_step_name",
    "parse_platforms",
    "platform_step_names",
]
