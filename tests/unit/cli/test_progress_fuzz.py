"""Any sequence of events — repeated, out of order, for unknown vertices, with broken
UTF-8 — renders without a swallowed error, and plain output is well formed."""

from __future__ import annotations

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from dockyard.cli.progress import PlainRenderer, RawJsonRenderer, TtyRenderer
from dockyard.core import (
    BuildWarning,
    Event,
    SourceLocation,
    SourceRange,
    VertexLog,
    VertexProgress,
    VertexStatus,
)

T = 1_700_000_000.0
digests = st.sampled_from(["sha256:a", "sha256:b", "sha256:c", "sha256:unknown"])
times = st.one_of(st.none(), st.floats(min_value=T, max_value=T + 500))

statuses = st.builds(
    VertexStatus,
    digest=digests,
    name=st.sampled_from(["[1/3] RUN a", "[2/3] COPY b", "", "x" * 200]),
    started=times,
    completed=times,
    cached=st.booleans(),
    error=st.one_of(st.none(), st.sampled_from(["boom", "cancelled", "context canceled"])),
    progress_group=st.one_of(st.none(), st.just("g")),
)
logs = st.builds(
    VertexLog,
    digest=digests,
    stream=st.sampled_from([1, 2]),
    data=st.binary(max_size=40)
    | st.sampled_from([b"line\n", b"\xc3", b"\xa9\n", b"\r50%", b"\x1b[31m"]),
    timestamp=st.floats(min_value=T, max_value=T + 500),
)
progress = st.builds(
    VertexProgress,
    digest=digests,
    id=st.sampled_from(["p", "q:files"]),
    name=st.sampled_from(["pulling", "transferring context:", ""]),
    current=st.integers(min_value=0, max_value=10**10),
    total=st.integers(min_value=0, max_value=10**10),
    timestamp=st.floats(min_value=T, max_value=T + 500),
    started=times,
    completed=times,
)
warnings = st.builds(
    BuildWarning,
    short=st.text(max_size=30),
    rule=st.sampled_from(["", "Rule"]),
    digest=st.one_of(st.none(), digests),
    locations=st.lists(
        st.builds(
            SourceLocation,
            filename=st.just("Dockerfile"),
            ranges=st.lists(
                st.builds(SourceRange, st.integers(0, 30), st.integers(0, 30)), max_size=2
            ).map(tuple),
            data=st.one_of(st.none(), st.just(b"FROM a\nRUN b\n")),
        ),
        max_size=2,
    ).map(tuple),
)
events = st.lists(st.one_of(statuses, logs, progress, warnings), max_size=40)


@settings(max_examples=150, deadline=None)
@given(events, st.floats(min_value=0, max_value=30))
def test_plain(sequence: list[Event], delay: float) -> None:
    stream = io.StringIO()
    clock = iter([0.0, delay] * 1000)
    renderer = PlainRenderer(stream, flush_interval=None, clock=lambda: next(clock, 60.0))
    for event in sequence:
        renderer.emit(event)
    renderer.close()
    assert renderer.errors == []
    text = stream.getvalue()
    assert not text or text.endswith("\n")
    progress_part = text.split("------\n", 1)[0]
    for line in progress_part.split("\n"):
        assert line == "" or re.match(r"#\d+ ", line) or line.startswith((" ", "- ")), line


@settings(max_examples=100, deadline=None)
@given(events)
def test_rawjson(sequence: list[Event]) -> None:
    stream = io.StringIO()
    renderer = RawJsonRenderer(stream, flush_interval=None)
    for event in sequence:
        renderer.emit(event)
    renderer.close()
    assert renderer.errors == []
    assert len(stream.getvalue().splitlines()) == len(sequence)


@settings(max_examples=100, deadline=None)
@given(events, st.integers(min_value=3, max_value=50))
def test_tty(sequence: list[Event], height: int) -> None:
    console = Console(record=True, width=60, height=height, file=io.StringIO(), force_terminal=True)
    renderer = TtyRenderer(
        io.StringIO(), console=console, clock=lambda: T + 100, refresh_interval=None
    )
    for event in sequence:
        renderer.emit(event)
        renderer.refresh()
    renderer.close()
    assert renderer.errors == []
