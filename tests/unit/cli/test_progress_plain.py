"""The plain renderer's rules, one at a time, and the renderer factory."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest

from dockyard.cli.progress import (
    PlainRenderer,
    QuietRenderer,
    RawJsonRenderer,
    Renderer,
    completion_text,
    format_bytes,
    format_log_offset,
    make_renderer,
    progress_text,
    source_snippet,
    warning_line,
)
from dockyard.core import (
    BuildWarning,
    Event,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexLog,
    VertexProgress,
    VertexStatus,
)

T = 1_700_000_000.0


def started(digest: str, name: str, at: float = 0.0) -> VertexStatus:
    return VertexStatus(digest=digest, name=name, started=T + at)


def done(digest: str, name: str, at: float, end: float, **kw: object) -> VertexStatus:
    return VertexStatus(digest=digest, name=name, started=T + at, completed=T + end, **kw)  # type: ignore[arg-type]


def log(digest: str, at: float, text: str | bytes) -> VertexLog:
    data = text.encode() if isinstance(text, str) else text
    return VertexLog(digest=digest, stream=1, data=data, timestamp=T + at)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def render(events: list[Event], *, clock: Clock | None = None) -> str:
    stream = io.StringIO()
    renderer = PlainRenderer(stream, flush_interval=None, clock=clock or Clock())
    for event in events:
        renderer.emit(event)
    renderer.close()
    return stream.getvalue()


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (2, "2B"),
        (999, "999B"),
        (1000, "1.00kB"),
        (2340, "2.34kB"),
        (1_234_567, "1.23MB"),
        (5_000_000_000, "5.00GB"),
    ],
)
def test_format_bytes_like_buildkit(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.000"),
        (0.1234, "0.123"),
        (9.9994, "9.999"),
        (12.345, "12.35"),
        (246.41, "246.4"),
        (-1, "0.000"),
    ],
)
def test_log_offsets_lose_precision_as_steps_get_longer(seconds: float, text: str) -> None:
    assert format_log_offset(seconds) == text


def test_completion_lines() -> None:
    assert completion_text(done("a", "x", 0.0, 0.31)) == "DONE 0.3s"
    assert completion_text(done("a", "x", 0.0, 0.0, cached=True)) == "CACHED"
    assert completion_text(done("a", "x", 0.0, 1.0, error="boom")) == "ERROR: boom"
    assert completion_text(done("a", "x", 0.0, 1.0, error="cancelled")) == "CANCELED"


def test_progress_lines() -> None:
    def context(
        current: int,
        *,
        timestamp: float,
        total: int = 0,
        started: float | None = None,
        completed: float | None = None,
    ) -> VertexProgress:
        return VertexProgress(
            digest="a",
            id="transfer:context",
            name="transferring context",
            current=current,
            total=total,
            timestamp=timestamp,
            started=started,
            completed=completed,
        )

    assert progress_text(context(0, timestamp=T)) == "transferring context"
    assert (
        progress_text(context(2340, timestamp=T + 0.1, started=T, completed=T + 0.1))
        == "transferring context: 2.34kB 0.1s done"
    )
    assert (
        progress_text(context(1000, total=4000, timestamp=T + 0.005, started=T))
        == "transferring context: 1.00kB / 4.00kB"
    )
    files = VertexProgress(
        digest="a",
        id="transfer:context:files",
        name="transferring context (files)",
        current=3,
        total=12,
        timestamp=T,
    )
    assert progress_text(files) == "transferring context (files): 3 / 12"


def test_a_vertex_numbered_by_first_sight_even_if_it_starts_later() -> None:
    text = render(
        [
            VertexStatus(digest="b", name="second seen"),
            started("a", "first started"),
            done("a", "first started", 0.0, 0.5),
            started("b", "second seen", 0.6),
            done("b", "second seen", 0.6, 0.7),
        ]
    )
    assert text == ("#2 first started\n#2 DONE 0.5s\n\n#1 second seen\n#1 DONE 0.1s\n")


def test_a_seen_vertex_that_never_starts_prints_nothing() -> None:
    assert render([VertexStatus(digest="a", name="exporting to image")]) == ""


def test_repeated_states_print_once() -> None:
    text = render(
        [
            started("a", "step"),
            started("a", "step"),
            done("a", "step", 0, 1),
            done("a", "step", 0, 1),
        ]
    )
    assert text == "#1 step\n#1 DONE 1.0s\n"


def test_output_of_a_second_running_step_is_held_until_the_first_completes() -> None:
    text = render(
        [
            started("a", "A"),
            started("b", "B", 0.1),
            log("a", 0.2, "a1\n"),
            log("b", 0.3, "b1\n"),
            log("a", 0.4, "a2\n"),
            done("a", "A", 0.0, 0.5),
            log("b", 0.6, "b2\n"),
            done("b", "B", 0.1, 0.7),
        ]
    )
    assert text == (
        "#1 A\n#1 0.200 a1\n#1 0.400 a2\n#1 DONE 0.5s\n"
        "\n#2 B\n#2 0.200 b1\n#2 0.500 b2\n#2 DONE 0.6s\n"
    )


def test_held_output_is_shown_after_max_delay() -> None:
    clock = Clock()
    stream = io.StringIO()
    renderer = PlainRenderer(stream, flush_interval=None, clock=clock, max_delay=10)
    renderer.emit(started("a", "A"))
    renderer.emit(started("b", "B"))
    renderer.emit(log("b", 1, "b1\n"))
    clock.now = 10.5
    renderer.emit(log("a", 2, "a1\n"))
    renderer.close()
    assert stream.getvalue() == "#1 A\n#1 2.000 a1\n#1 ...\n\n#2 B\n#2 1.000 b1\n"


def test_a_completion_interrupts_the_shown_step() -> None:
    text = render(
        [
            started("a", "A"),
            log("a", 0.1, "a1\n"),
            done("c", "C", 0.2, 0.2, cached=True),
            log("a", 0.3, "a2\n"),
        ]
    )
    assert text == "#1 A\n#1 0.100 a1\n#1 ...\n\n#2 C\n#2 CACHED\n\n#1 A\n#1 0.300 a2\n"


def test_an_unfinished_line_continues_or_is_ended_before_other_output() -> None:
    text = render(
        [
            started("a", "A"),
            log("a", 0.1, "progress: 1"),
            log("a", 0.2, "0%\nnext\n"),
            log("a", 0.3, "partial"),
            done("c", "C", 0.4, 0.4, cached=True),
            log("a", 0.5, " rest\n"),
        ]
    )
    assert text == (
        "#1 A\n#1 0.100 progress: 10%\n#1 0.200 next\n#1 0.300 partial\n#1 ...\n"
        "\n#2 C\n#2 CACHED\n\n#1 A\n#1 0.500  rest\n"
    )


def test_utf8_split_across_chunks_is_decoded_whole() -> None:
    data = "héllo\n".encode()
    text = render([started("a", "A"), log("a", 0.1, data[:2]), log("a", 0.2, data[2:])])
    assert "#1 0.100 héllo\n" in text


def test_progress_throttled_unless_it_moves_5_percent_or_5_seconds() -> None:
    def p(current: int, at: float, **kw: object) -> VertexProgress:
        return VertexProgress(
            digest="a",
            id="pull",
            name="pulling",
            current=current,
            total=1000,
            timestamp=T + at,
            started=T,
            **kw,  # type: ignore[arg-type]
        )

    text = render(
        [
            started("a", "A"),
            p(0, 0.0),
            p(10, 0.1),
            p(60, 0.2),
            p(70, 6.0),
            p(1000, 6.5, completed=T + 6.5),
        ]
    )
    assert text == (
        "#1 A\n#1 pulling: 0B / 1.00kB\n#1 pulling: 60B / 1.00kB 0.2s\n"
        "#1 pulling: 70B / 1.00kB 6.0s\n#1 pulling: 1.00kB / 1.00kB 6.5s done\n"
    )


def test_failed_steps_log_is_printed_in_full_at_the_end_but_not_successful_ones() -> None:
    lines = [log("a", 0.001 * i, f"line {i}\n") for i in range(2000)]
    text = render(
        [
            started("a", "A"),
            *lines,
            done("a", "A", 0, 3, error="exit code: 1"),
            started("b", "B"),
            log("b", 0.1, "fine\n"),
            done("b", "B", 0, 1),
        ]
    )
    summary = text[text.index("------\n") :]
    assert summary.count("\n") == 2003
    assert "0.000 line 0\n" in summary
    assert "1.999 line 1999\n" in summary
    assert "fine" not in summary


def test_cancelled_steps_have_no_failure_report() -> None:
    text = render(
        [started("a", "A"), log("a", 0.1, "x\n"), done("a", "A", 0, 1, error="cancelled")]
    )
    assert text == "#1 A\n#1 0.100 x\n#1 CANCELED\n"


def test_warnings_summary_counts_and_dedupes() -> None:
    loc = SourceLocation(filename="build.Dockerfile", ranges=(SourceRange(3, 3),))
    warning = BuildWarning(short="Rule: message", rule="Rule", locations=(loc,))
    text = render([warning, warning, BuildWarning(short="other")])
    assert text == (
        "\n 2 warnings found (use --debug to expand):\n"
        " - Rule: message (build.Dockerfile:3)\n - other\n"
    )
    assert render([BuildWarning(short="only")]).startswith("\n 1 warning found")


def test_warning_line_adds_the_rule_and_location_once() -> None:
    loc = SourceLocation(filename="Dockerfile", ranges=(SourceRange(9, 9),))
    assert (
        warning_line(BuildWarning(short="msg (line 9)", rule="R", locations=(loc,)))
        == "R: msg (line 9)"
    )
    assert (
        warning_line(BuildWarning(short="R: msg", rule="R", locations=(loc,)))
        == "R: msg (Dockerfile:9)"
    )


def test_source_snippet_marks_the_range_with_context() -> None:
    data = b"FROM a\nRUN x \\\n  y\nCOPY . .\n\n\nCMD z\n"
    loc = SourceLocation(filename="Dockerfile", ranges=(SourceRange(2, 3),), data=data)
    assert source_snippet(loc) == [
        "Dockerfile:2",
        "--------------------",
        "   1 |     FROM a",
        "   2 | >>> RUN x \\",
        "   3 | >>>   y",
        "   4 |     COPY . .",
        "--------------------",
    ]
    assert source_snippet(SourceLocation(filename="Dockerfile", ranges=(SourceRange(2, 2),))) == [
        "Dockerfile:2"
    ]


class BrokenStream(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError("closed")


def test_emit_and_close_never_raise_on_a_broken_stream() -> None:
    renderer = PlainRenderer(BrokenStream(), flush_interval=None)
    renderer.emit(started("a", "A"))
    renderer.emit(log("a", 1, "x" * 100_000 + "\n"))  # over the flush threshold
    renderer.close()
    renderer.emit(log("a", 2, "after close\n"))


def test_events_after_close_are_ignored_and_close_is_idempotent() -> None:
    stream = io.StringIO()
    renderer = PlainRenderer(stream, flush_interval=None)
    renderer.emit(started("a", "A"))
    renderer.close()
    renderer.close()
    renderer.emit(started("b", "B"))
    assert stream.getvalue() == "#1 A\n"


class SignallingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, s: str) -> int:
        n = super().write(s)
        self.written.set()
        return n


def test_the_timer_writes_output_without_waiting_for_close() -> None:
    stream = SignallingStream()
    renderer = PlainRenderer(stream, flush_interval=0.01)
    try:
        renderer.emit(started("a", "A"))
        assert stream.written.wait(10)
        assert stream.getvalue() == "#1 A\n"
    finally:
        renderer.close()


def test_emit_from_many_threads_loses_nothing() -> None:
    stream = io.StringIO()
    renderer = PlainRenderer(stream, flush_interval=0.001)
    renderer.emit(started("a", "A"))

    def work(n: int) -> None:
        for i in range(200):
            renderer.emit(log("a", 1, f"t{n}-{i}\n"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    renderer.close()
    assert stream.getvalue().count("\n") == 801


def test_rawjson_escapes_like_go_and_encodes_bytes_in_base64() -> None:
    stream = io.StringIO()
    renderer = RawJsonRenderer(stream, flush_interval=None)
    renderer.emit(done("sha256:a", "RUN a > b && c", 0, 1.5, cached=True))
    renderer.emit(log("sha256:a", 0.25, b"\xffhi\n"))
    renderer.close()
    assert stream.getvalue().splitlines() == [
        '{"vertexes":[{"digest":"sha256:a","name":"RUN a \\u003e b \\u0026\\u0026 c",'
        '"started":"2023-11-14T22:13:20Z","completed":"2023-11-14T22:13:21.5Z","cached":true}]}',
        '{"logs":[{"vertex":"sha256:a","stream":1,"data":"/2hpCg==","timestamp":"2023-11-14T22:13:20.25Z"}]}',
    ]


def test_make_renderer_modes() -> None:
    stream = io.StringIO()
    assert isinstance(make_renderer("plain", stream), PlainRenderer)
    assert isinstance(make_renderer("auto", stream), PlainRenderer)  # not a terminal
    assert isinstance(make_renderer("tty", stream), PlainRenderer)  # falls back
    assert isinstance(make_renderer("rawjson", stream), RawJsonRenderer)
    assert isinstance(make_renderer("quiet", stream), QuietRenderer)
    assert isinstance(make_renderer(" Plain ", stream), PlainRenderer)
    dumb = make_renderer("auto", stream, is_tty=True, environ={"TERM": "dumb"})
    assert isinstance(dumb, PlainRenderer)
    for renderer in (dumb, make_renderer("quiet", stream)):
        assert isinstance(renderer, Renderer)
        renderer.close()


def test_make_renderer_picks_tty_on_a_terminal() -> None:
    from dockyard.cli.progress import TtyRenderer

    renderer = make_renderer("auto", io.StringIO(), is_tty=True, environ={"TERM": "xterm"})
    try:
        assert isinstance(renderer, TtyRenderer)
    finally:
        renderer.close()


def test_make_renderer_rejects_unknown_modes() -> None:
    with pytest.raises(
        UsageError,
        match=r"invalid progress mode 'fancy' \(expected auto, tty, plain, rawjson or quiet\)",
    ):
        make_renderer("fancy", io.StringIO())


def test_importing_the_renderers_does_not_import_rich() -> None:
    code = (
        "import sys, io; from dockyard.cli.progress import make_renderer; "
        "make_renderer('plain', io.StringIO()).close(); "
        "assert 'rich' not in sys.modules, 'rich imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
