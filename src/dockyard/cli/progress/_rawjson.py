"""``--progress=rawjson``: one JSON object per event per line, in the shape of BuildKit's
``client.SolveStatus`` as buildx prints it (Go's encoding: field order, omitted empty
fields, RFC 3339 UTC times, base64 bytes, ``<``/``>``/``&`` escaped)::

    {"vertexes":[{"digest":"sha256:…","inputs":["sha256:…"],"name":"[2/3] RUN make","started":"2024-05-01T10:00:00.5Z"}]}
    {"statuses":[{"id":"transfer:context","vertex":"sha256:…","name":"transferring context","current":2340,"timestamp":"…","started":"…"}]}
    {"logs":[{"vertex":"sha256:…","stream":1,"data":"aGVsbG8K","timestamp":"…"}]}
    {"warnings":[{"vertex":"sha256:…","level":1,"short":"…","detail":["…"],"url":"…","sourceInfo":{"filename":"Dockerfile","data":"…"},"range":[{"start":{"line":3},"end":{"line":3}}]}]}
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from dockyard.core import BuildWarning, Event, VertexLog, VertexProgress, VertexStatus

from ._base import BufferedRenderer

__all__ = ["RawJsonRenderer", "event_json", "format_time"]

#: BuildKit's level of a build warning (lint checks and deprecations).
WARNING_LEVEL = 1

_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def format_time(seconds: float) -> str:
    """Epoch seconds as Go's RFC 3339 (nanosecond form, trailing zeros dropped), in UTC,
    to the microsecond: ``2024-05-01T10:00:00.5Z``."""
    micros = round(seconds * 1_000_000)
    whole, frac = divmod(micros, 1_000_000)
    stamp = datetime.datetime.fromtimestamp(whole, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        stamp += "." + f"{frac:06d}".rstrip("0")
    return stamp + "Z"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _vertex(event: VertexStatus) -> dict[str, Any]:
    out: dict[str, Any] = {"digest": event.digest}
    if event.inputs:
        out["inputs"] = list(event.inputs)
    if event.name:
        out["name"] = event.name
    if event.started is not None:
        out["started"] = format_time(event.started)
    if event.completed is not None:
        out["completed"] = format_time(event.completed)
    if event.cached:
        out["cached"] = True
    if event.error:
        out["error"] = event.error
    if event.progress_group:
        out["progressGroup"] = {"id": event.progress_group}
    return out


def _status(event: VertexProgress) -> dict[str, Any]:
    out: dict[str, Any] = {"id": event.id, "vertex": event.digest}
    if event.name:
        out["name"] = event.name
    if event.total:
        out["total"] = event.total
    out["current"] = event.current
    out["timestamp"] = format_time(event.timestamp)
    if event.started is not None:
        out["started"] = format_time(event.started)
    if event.completed is not None:
        out["completed"] = format_time(event.completed)
    return out


def _log(event: VertexLog) -> dict[str, Any]:
    out: dict[str, Any] = {"vertex": event.digest}
    if event.stream:
        out["stream"] = event.stream
    out["data"] = _b64(event.data)
    out["timestamp"] = format_time(event.timestamp)
    return out


def _warning(event: BuildWarning) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if event.digest:
        out["vertex"] = event.digest
    out["level"] = WARNING_LEVEL
    if event.short:
        out["short"] = _b64(event.short.encode())
    if event.detail:
        out["detail"] = [_b64(line.encode()) for line in event.detail]
    if event.url:
        out["url"] = event.url
    if event.locations:
        loc = event.locations[0]
        info: dict[str, Any] = {"filename": loc.filename}
        if loc.data:
            info["data"] = _b64(loc.data)
        out["sourceInfo"] = info
        ranges = []
        for rng in loc.ranges:
            start = {"line": rng.start} | (
                {"character": rng.start_column} if rng.start_column else {}
            )
            end = {"line": rng.end} | ({"character": rng.end_column} if rng.end_column else {})
            ranges.append({"start": start, "end": end})
        if ranges:
            out["range"] = ranges
    return out


def event_json(event: Event) -> str:
    """One event as a one-line ``SolveStatus`` JSON object (without the newline)."""
    if isinstance(event, VertexStatus):
        status: dict[str, Any] = {"vertexes": [_vertex(event)]}
    elif isinstance(event, VertexProgress):
        status = {"statuses": [_status(event)]}
    elif isinstance(event, VertexLog):
        status = {"logs": [_log(event)]}
    else:
        status = {"warnings": [_warning(event)]}
    text = json.dumps(status, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES)


class RawJsonRenderer(BufferedRenderer):
    """``--progress=rawjson``: :func:`event_json` lines, nothing else (no summary)."""

    def _handle(self, event: Event) -> None:
        self._write(event_json(event) + "\n")
