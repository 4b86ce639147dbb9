"""``code_fingerprint``: what the memo keys and the warm server check Dockyard's code by."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dockyard
from dockyard.cli import _memo


def walked(package: str) -> tuple[str, ...]:
    """The fingerprint as a sorted top-down ``os.walk`` makes it."""
    parts = [dockyard.__version__]
    for directory, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".pyi", ".json")):
                st = os.stat(os.path.join(directory, name))
                parts.append(f"{directory[len(package) :]}/{name}:{st.st_size}:{st.st_mtime_ns}")
    return tuple(parts)


def test_it_lists_every_module_as_a_sorted_walk_does() -> None:
    package = os.path.dirname(os.path.abspath(dockyard.__file__))
    assert _memo.code_fingerprint() == walked(package)


def test_a_changed_module_changes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("a = 1\n")
    (package / "sub" / "data.json").write_text("{}")
    (package / "sub" / "__pycache__" / "a.cpython-311.py").write_text("")
    (package / "notes.txt").write_text("not code")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.py").write_text("")
    (package / "linked").symlink_to(tmp_path / "elsewhere")  # not entered
    monkeypatch.setattr(dockyard, "__file__", str(package / "__init__.py"))
    before = _memo.code_fingerprint()
    assert before == walked(str(package))
    assert [p.split(":")[0] for p in before[1:]] == ["/__init__.py", "/sub/a.py", "/sub/data.json"]
    (package / "sub" / "a.py").write_text("a = 22\n")
    assert _memo.code_fingerprint() != before
