"""Tiny directory trees for file-action tests, written and read as dicts.

Keys are slash-separated relative paths: ``"d/"`` is a directory, a ``str`` value a
file with that content, ``{"link": target}`` a symbolic link.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Tree", "make_tree", "read_tree"]

Tree = Mapping[str, Any]


def make_tree(root: Path, tree: Tree) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, value in sorted(tree.items()):
        path = root / key.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if key.endswith("/"):
            path.mkdir(exist_ok=True)
        elif isinstance(value, dict):
            os.symlink(value["link"], path)
        else:
            path.write_text(str(value))
    return root


def read_tree(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = {"link": os.readlink(path)}
            elif stat.S_ISDIR(st.st_mode):
                out[rel + "/"] = None
            else:
                out[rel] = path.read_text()
    return out
