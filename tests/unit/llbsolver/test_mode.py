from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dockyard.llbsolver._mode import FileMode

DATA = Path(__file__).parents[2] / "data" / "llbsolver" / "modes.txt"


def _rows() -> list[tuple[str, str, int, int]]:
    rows = []
    for line in DATA.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, kind, before, after = (field.strip() for field in line.split("|"))
        rows.append((text, kind, int(before, 8), int(after, 8)))
    return rows


@pytest.mark.parametrize(("text", "kind", "before", "after"), _rows())
def test_mode_table(text: str, kind: str, before: int, after: int) -> None:
    file_type = stat.S_IFDIR if kind == "d" else stat.S_IFREG
    assert FileMode.parse(text).apply(file_type | before) == after


@pytest.mark.parametrize("text", ["", "u+", "z+x", "u+q", "8", "77777", "u+x,", "u+x g-w", "u:x"])
def test_invalid_modes(text: str) -> None:
    if text == "u+":  # "u+" is valid chmod (adds nothing)
        assert FileMode.parse(text).apply(stat.S_IFREG | 0o644) == 0o644
        return
    with pytest.raises(ValueError, match="invalid mode"):
        FileMode.parse(text)


def test_exact_bits() -> None:
    mode = FileMode.bits(0o100755)
    assert mode.exact == 0o755
    assert mode.apply(stat.S_IFDIR | 0o700) == 0o755
    assert str(mode) == "0755"
