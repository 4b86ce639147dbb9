"""An overlay upperdir's layer tar against the layers below it: directories overlayfs
only copied up are left out unless something below them changed (BuildKit's overlay
differ), and what hides a lower directory — a whiteout, an opaque directory above it
— makes the upper one new."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.snapshot._diff import write_upper_diff

ROOT = os.geteuid() == 0


def names(upper: Path, lowers: list[Path] | None) -> list[str]:
    out = io.BytesIO()
    below = None if lowers is None else [str(p) for p in lowers]
    write_upper_diff(str(upper), out, None, below)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        return tar.getnames()


def mkdirs(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel).chmod(0o755)


def test_copied_up_directories_are_parents_only(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    mkdirs(lower, "same/deep", "kept", "moded")
    mkdirs(upper, "same/deep", "kept", "moded", "new")
    (upper / "moded").chmod(0o700)
    (upper / "kept" / "f").write_text("f")
    os.utime(upper / "same", (5, 5))  # a copied-up directory's time changes
    assert names(upper, [lower]) == ["kept", "kept/f", "moded", "new"]
    # without the layers below, every entry of the upperdir is a change
    assert names(upper, None) == [
        "kept",
        "kept/f",
        "moded",
        "new",
        "same",
        "same/deep",
    ]
    assert names(upper, []) == names(upper, None)  # a bottom layer: all new


def test_a_lower_symlink_is_never_followed(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    os.symlink("/", lower / "escape")
    mkdirs(upper, "escape/etc")  # overlayfs would not make this; the lookup must not
    assert names(upper, [lower]) == ["escape", "escape/etc"]


@pytest.mark.skipif(not ROOT, reason="whiteouts and trusted xattrs need root")
def test_what_hides_a_lower_directory_makes_the_upper_one_new(tmp_path: Path) -> None:
    top, bottom, upper = tmp_path / "top", tmp_path / "bottom", tmp_path / "upper"
    mkdirs(bottom, "gone", "sealed/sub", "plain/sub")
    mkdirs(top, "sealed", "plain")
    os.mknod(top / "gone", stat.S_IFCHR | 0o600, 0)  # whited out in the top layer
    os.setxattr(top / "sealed", "trusted.overlay.opaque", b"y")
    mkdirs(upper, "gone", "sealed/sub", "plain/sub", "opq/sub")
    mkdirs(bottom, "opq/sub")
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    assert names(upper, [top, bottom]) == [
        "gone",  # whited out in the top layer
        "opq",
        "opq/.wh..wh..opq",
        "opq/sub",  # under an opaque directory: all new
        "sealed",  # the parent of a change
        "sealed/sub",  # the top layer's opaque directory hides the bottom one's
    ]
