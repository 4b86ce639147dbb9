"""The engine commands' shared pieces: sizes, durations, plain progress, error text."""

from __future__ import annotations

import io

import pytest

from dockyard.cli._common import PlainProgress, format_error, parse_duration, parse_size
from dockyard.core import (
    BuildWarning,
    ExecError,
    FrontendError,
    NotFoundError,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexLog,
    VertexRef,
    VertexStatus,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("512MB", 512 << 20), ("10GB", 10 << 30), ("1.5g", 3 << 29), ("2 KiB", 2048)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size("--keep-storage", text) == size


@pytest.mark.parametrize("text", ["", "ten", "5XB", "-1MB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError, match="--keep-storage: invalid size"):
        parse_size("--keep-storage", text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400.0), ("1h30m", 5400.0), ("90s", 90.0), ("500ms", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration("--keep-duration", text) == seconds


@pytest.mark.parametrize("text", ["", "24", "1d", "h", "5m junk"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration("--keep-duration", text)


def test_plain_progress() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.emit(VertexStatus(digest="a", name="seen only"))
    progress.emit(VertexStatus(digest="b", name="[1/2] RUN make", started=10.0))
    progress.emit(VertexLog(digest="b", stream=1, data=b"line one\npart", timestamp=10.5))
    progress.emit(VertexStatus(digest="c", name="cached step", cached=True))
    progress.emit(VertexLog(digest="b", stream=1, data=b"ial\n", timestamp=11.0))
    progress.emit(VertexLog(digest="b", stream=2, data=b"no newline", timestamp=11.0))
    progress.emit(VertexStatus(digest="b", name="[1/2] RUN make", started=10.0, completed=12.25))
    progress.emit(
        VertexStatus(digest="d", name="failing", started=13.0, completed=13.5, error="boom")
    )
    progress.emit(BuildWarning(short="a warning", rule="SomeRule"))
    progress.emit(
        BuildWarning(
            short="located",
            locations=(SourceLocation(filename="Dockerfile", ranges=(SourceRange(3, 3),)),),
        )
    )
    progress.summary()
    text = out.getvalue()
    assert "seen only" not in text
    assert text.splitlines() == [
        "#1 [1/2] RUN make",
        "#1 0.500 line one",
        "",
        "#2 cached step",
        "#2 CACHED",
        "",
        "#1 1.000 partial",
        text.splitlines()[7],  # the flushed stderr rest, timed when flushed
        "#1 DONE 2.2s",
        "",
        "#3 failing",
        "#3 ERROR: boom",
        "",
        "2 warnings found:",
        " - SomeRule: a warning",
        " - located (Dockerfile:3)",
    ]
    assert text.splitlines()[7].endswith(" no newline")


def test_error_text_of_a_failed_exec_in_a_dockerfile() -> None:
    source = b"FROM busybox\nRUN make \\\n  all\n"
    err = ExecError(
        'process "/bin/sh -c make all" did not complete successfully: exit code: 2',
        args=("/bin/sh", "-c", "make all"),
        exit_status=2,
        log_tail=("compiling", "make: *** [all] Error 1"),
        vertex=VertexRef(digest="sha256:x", name="[2/2] RUN make all"),
        locations=(
            SourceLocation(filename="Dockerfile", ranges=(SourceRange(2, 3),), data=source),
        ),
    )
    assert format_error(err).splitlines() == [
        "------",
        " > [2/2] RUN make all:",
        "   compiling",
        "   make: *** [all] Error 1",
        "------",
        "Dockerfile:2-3",
        "--------------------",
        "   2 | >>> RUN make \\",
        "   3 | >>>   all",
        "--------------------",
        'ERROR: Dockerfile:2-3: process "/bin/sh -c make all" did not complete successfully: '
        "exit code: 2",
    ]


def test_error_text_of_other_errors() -> None:
    assert format_error(NotFoundError("no such thing")) == "ERROR: no such thing"
    located = FrontendError(
        "unknown instruction: FORM",
        locations=(SourceLocation(filename="Dockerfile", ranges=(SourceRange(1, 1),)),),
    )
    assert format_error(located) == "ERROR: Dockerfile:1: unknown instruction: FORM"
    in_step = NotFoundError('"/x" not found', vertex=VertexRef(digest="d", name="copy /x /y"))
    assert format_error(in_step) == 'ERROR: copy /x /y: "/x" not found'
