"""Path arithmetic of the Dockerfile converter, with BuildKit's rules for Linux: unlike
LLB paths, absolute paths written in a Dockerfile are kept as written (a ``WORKDIR
/app/`` stays ``/app/`` in the image config), relative ones are joined and cleaned."""

from __future__ import annotations

import posixpath

__all__ = ["clean", "normalize_path"]


def clean(path: str) -> str:
    """Go's ``path.Clean`` (``//x`` becomes ``/x``; ``""`` becomes ``.``)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def normalize_path(parent: str, path: str, *, keep_slash: bool = False) -> str:
    """BuildKit's ``system.NormalizePath``: an absolute ``path`` is kept as written, a
    relative one is joined to ``parent`` (and cleaned); with ``keep_slash`` a trailing
    ``/`` or ``/.`` survives (a copy destination "into this directory")."""
    original = path
    if not parent:
        parent = "/"
    if not parent.startswith("/"):
        parent = clean("/" + parent)
    if not path:
        path = parent
    if not path.startswith("/"):
        path = clean(posixpath.join(parent, path))
    if keep_slash:
        if original.endswith("/") and not path.endswith("/"):
            path += "/"
        elif original.endswith("/."):
            if path != "/":
                path += "/"
            path += "."
    return path
