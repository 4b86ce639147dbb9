"""Golden renderings of a recorded build (``tests/data/progress/multistage.events.jsonl``:
a multi-stage Dockerfile build with cached steps, a context transfer, logs of two steps
running at once, a failing step with a split log line, a cancelled step and warnings).

After an intended change, regenerate with
``DOCKYARD_UPDATE_GOLDEN=1 pytest tests/unit/cli/test_progress_golden.py`` and review the
diff.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from dockyard.cli.progress import PlainRenderer, RawJsonRenderer
from dockyard.core import Event

from .progress_events import DATA, load_events


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("DOCKYARD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing {path}; run with DOCKYARD_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def render_plain(events: list[Event], *, expand_warnings: bool = False) -> str:
    stream = io.StringIO()
    renderer = PlainRenderer(
        stream, flush_interval=None, clock=lambda: 0.0, expand_warnings=expand_warnings
    )
    for event in events:
        renderer.emit(event)
    renderer.close()
    return stream.getvalue()


def render_rawjson(events: list[Event]) -> str:
    stream = io.StringIO()
    renderer = RawJsonRenderer(stream, flush_interval=None)
    for event in events:
        renderer.emit(event)
    renderer.close()
    return stream.getvalue()


@pytest.mark.parametrize("name", ["multistage"])
def test_plain_golden(name: str) -> None:
    check_golden(DATA / f"{name}.plain.txt", render_plain(load_events(name)))


@pytest.mark.parametrize("name", ["multistage"])
def test_plain_expanded_warnings_golden(name: str) -> None:
    text = render_plain(load_events(name), expand_warnings=True)
    check_golden(DATA / f"{name}.plain-expanded.txt", text)


@pytest.mark.parametrize("name", ["multistage"])
def test_rawjson_golden(name: str) -> None:
    check_golden(DATA / f"{name}.rawjson.jsonl", render_rawjson(load_events(name)))


def test_rawjson_is_one_solve_status_per_event() -> None:
    events = load_events("multistage")
    lines = render_rawjson(events).splitlines()
    assert len(lines) == len(events)
    for line in lines:
        status = json.loads(line)
        assert len(status) == 1
        ((key, items),) = status.items()
        assert key in {"vertexes", "statuses", "logs", "warnings"}
        assert len(items) == 1


def test_plain_shows_the_failed_steps_full_log_and_every_warning() -> None:
    text = render_plain(load_events("multistage"))
    block = text[text.index("------\n") :]
    assert block.startswith("------\n > [build 3/3] RUN make $TARGET:\n0.230 cc -o app main.c\n")
    assert "0.500 main.c:3: error: expected ';' before '}' token\n" in block
    assert " 3 warnings found (use --debug to expand):\n" in block
    assert " - UndefinedVar: Usage of undefined variable '$TARGET' (line 9)\n" in block
