"""Recorded progress events for the renderer tests: ``tests/data/progress/*.events.jsonl``,
one event per line (``status``, ``log``, ``progress`` or ``warning``) with times as
seconds after :data:`T0`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockyard.core import (
    BuildWarning,
    Event,
    SourceLocation,
    SourceRange,
    VertexLog,
    VertexProgress,
    VertexStatus,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "progress"
#: 2024-05-01T10:00:00Z: the recorded builds start here.
T0 = 1_714_557_600.0


def _time(value: Any) -> float | None:
    return None if value is None else T0 + float(value)


def _event(record: dict[str, Any]) -> Event:
    ((kind, body),) = record.items()
    if kind == "status":
        return VertexStatus(
            digest=body["digest"],
            name=body["name"],
            inputs=tuple(body.get("inputs", ())),
            started=_time(body.get("started")),
            completed=_time(body.get("completed")),
            cached=body.get("cached", False),
            error=body.get("error"),
            progress_group=body.get("progress_group"),
        )
    if kind == "log":
        return VertexLog(
            digest=body["digest"],
            stream=body["stream"],
            data=body["text"].encode(),
            timestamp=T0 + body["t"],
        )
    if kind == "progress":
        return VertexProgress(
            digest=body["digest"],
            id=body["id"],
            name=body["name"],
            current=body["current"],
            total=body.get("total", 0),
            timestamp=T0 + body["t"],
            started=_time(body.get("started")),
            completed=_time(body.get("completed")),
        )
    if kind == "warning":
        return BuildWarning(
            short=body["short"],
            detail=tuple(body.get("detail", ())),
            url=body.get("url", ""),
            rule=body.get("rule", ""),
            digest=body.get("digest"),
            locations=tuple(
                SourceLocation(
                    filename=loc["filename"],
                    ranges=tuple(SourceRange(*r) for r in loc["ranges"]),
                    data=loc["data"].encode() if "data" in loc else None,
                )
                for loc in body.get("locations", ())
            ),
        )
    raise ValueError(f"unknown event kind {kind!r}")


def load_events(name: str) -> list[Event]:
    """The events of ``tests/data/progress/<name>.events.jsonl``."""
    lines = (DATA / f"{name}.events.jsonl").read_text().splitlines()
    return [_event(json.loads(line)) for line in lines if line.strip()]
