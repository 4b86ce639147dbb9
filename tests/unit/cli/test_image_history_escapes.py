"""``dockyard image history`` prints what a pulled image's config says: its table never
passes a terminal control sequence (an image from a registry is untrusted input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.oci import History

from .test_image_tag_history import run, store, with_history

HOSTILE = "RUN x\x1b]0;pwned\x07 \x1b[2J\r\u202egnp.exe\x9b31m"


def test_history_table_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    image = with_history((History(created_by=HOSTILE, comment="c\x1b[31m"),), 1)
    store(state, "evil:1", image)
    out = run(state, capsys, "history", "--no-trunc", "evil:1")
    assert not any(c in out for c in "\x1b\x07\r\u202e\x9b"), repr(out)
    assert "RUN x\\x1b]0;pwned\\x07" in out
