"""The engine commands' shared pieces: sizes, durations, plain progress, error text."""

from __future__ import annotations

import pytest

from dockyard.cli._common import format_error, parse_duration, parse_size
from dockyard.core import (
    ExecError,
    FrontendError,
    NotFoundError,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexRef,
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
        "compiling",
        "make: *** [all] Error 1",
        "------",
        "Dockerfile:2",
        "--------------------",
        "   1 |     FROM busybox",
        "   2 | >>> RUN make \\",
        "   3 | >>>   all",
        "--------------------",
        'ERROR: Dockerfile:2-3: process "/bin/sh -c make all" did not complete successfully: '
        "exit code: 2",
    ]

    # when the progress showed the step's log, the error does not repeat it
    assert format_error(err, step_log=False).splitlines()[0] == "Dockerfile:2"


def test_error_text_of_other_errors() -> None:
    assert format_error(NotFoundError("no such thing")) == "ERROR: no such thing"
    located = FrontendError(
        "unknown instruction: FORM",
        locations=(SourceLocation(filename="Dockerfile", ranges=(SourceRange(1, 1),)),),
    )
    assert format_error(located) == "ERROR: Dockerfile:1: unknown instruction: FORM"
    in_step = NotFoundError('"/x" not found', vertex=VertexRef(digest="d", name="copy /x /y"))
    assert format_error(in_step) == 'ERROR: copy /x /y: "/x" not found'
