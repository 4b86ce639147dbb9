"""Path helpers of the file actions: cleaning LLB paths and resolving them in a root."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from dockyard.core import PathEscapeError
from dockyard.core.fspath import clean_rel, resolve_in_root

__all__ = ["base_name", "clean_path", "rel_to_root", "root_path", "split_dir"]


def clean_path(path: str, *, what: str) -> str:
    """An LLB path made absolute and clean, keeping a trailing ``/`` or ``/.`` (which
    mean "a directory" and "the contents of"), as BuildKit's ``cleanPath``.

    Unlike BuildKit, which clamps ``..`` at the root silently, a path whose ``..``
    climbs above its root is rejected: :class:`PathEscapeError` naming ``what``.
    """
    try:
        rel = clean_rel(path)
    except PathEscapeError:
        raise PathEscapeError(f"{what} {path!r} points outside its root") from None
    cleaned = "/" if rel == "." else "/" + rel
    if path.endswith("/."):
        return cleaned + ("." if cleaned == "/" else "/.")
    if path.endswith("/") and cleaned != "/":
        return cleaned + "/"
    return cleaned


def split_dir(path: str) -> tuple[str, str]:
    """Go's ``filepath.Split``: everything up to the last ``/``, and the rest."""
    i = path.rfind("/")
    return path[: i + 1], path[i + 1 :]


def base_name(path: str) -> str:
    """Go's ``filepath.Base``: ``"."`` for ``/dir/.``, the last element otherwise."""
    if path.endswith("/."):
        return "."
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def root_path(root: Path, path: str, *, follow_links: bool) -> Path:
    """The host path of ``path`` inside ``root``: parents resolved inside the root, the
    last component too when ``follow_links`` (fsutil's ``rootPath``)."""
    cleaned = posixpath.normpath("/" + path)
    if cleaned in ("/", "//"):
        return root
    return resolve_in_root(root, cleaned, follow_final=follow_links)


def rel_to_root(root: Path, path: Path) -> str:
    """``path`` (inside ``root``) relative to it, ``"."`` for the root itself."""
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith("../"):
        raise PathEscapeError(f"{path} is outside {root}")  # a bug: resolution is contained
    return rel
