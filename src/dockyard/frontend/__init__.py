"""Layer 6: frontends turn build descriptions into LLB.

- :func:`load_build_file` — the Python frontend: a build file whose ``build()`` returns an
  :class:`dockyard.llb.State` (see :mod:`dockyard.frontend._python`).
"""

from ._python import BuildContext, load_build_file

__all__ = ["BuildContext", "load_build_file"]
