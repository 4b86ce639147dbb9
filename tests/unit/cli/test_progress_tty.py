"""The tty renderer, drawn on rich's recording console (no terminal needed)."""

from __future__ import annotations

import io

from rich.console import Console

from dockyard.cli.progress import TtyRenderer
from dockyard.core import BuildWarning, VertexLog, VertexProgress, VertexStatus

from .progress_events import T0, load_events


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def recording_console(height: int = 40) -> Console:
    return Console(
        record=True,
        width=80,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
    )


def draw(renderer: TtyRenderer, now: float, *, height: int = 40, final: bool = False) -> str:
    console = recording_console(height)
    console.print(renderer.frame(now, final=final))
    return console.export_text()


def make(height: int = 40, clock: Clock | None = None) -> tuple[TtyRenderer, Console]:
    console = recording_console(height)
    renderer = TtyRenderer(
        io.StringIO(), console=console, clock=clock or Clock(), refresh_interval=None
    )
    return renderer, console


def test_live_view_of_a_build_in_progress() -> None:
    events = load_events("multistage")
    renderer, _ = make()
    for event in events[:38]:  # up to the failing step's first line of output
        renderer.emit(event)
    assert draw(renderer, T0 + 1.2).splitlines() == [
        "[+] Building 1.2s (8/12)",
        " => [internal] load build definition from Dockerfile                        0.0s",
        " => => transferring dockerfile: 245B                                        0.0s",
        " => [internal] load metadata for docker.io/library/alpine:3.19              0.5s",
        " => [internal] load .dockerignore                                           0.0s",
        " => => transferring context: 2B                                             0.0s",
        " => CACHED [base 1/2] FROM docker.io/library/alpine:3.19@sha256:c5b1261d6d  0.0s",
        " => [internal] load build context                                           0.1s",
        " => => transferring context: 2.34kB / 2.34kB                                0.1s",
        " => => transferring context (files): 3 / 3                                  0.1s",
        " => CACHED [base 2/2] RUN apk add --no-cache make                           0.0s",
        " => CACHED [build 1/3] WORKDIR /src                                         0.0s",
        " => [build 2/3] COPY . .                                                    0.1s",
        " => [build 3/3] RUN make $TARGET                                            0.5s",
        " => => # cc -o app main.c",
        " => [stage-2 2/3] RUN ./selftest.sh                                         0.4s",
        " => => # selftest: 1/3 ok",
        " => => # selftest: 2/3 ok",
    ]
    renderer.close()


def test_final_view_collapses_logs_then_reports_the_failure_and_warnings() -> None:
    clock = Clock()
    renderer, console = make(clock=clock)
    for event in load_events("multistage"):
        renderer.emit(event)
    clock.now = T0 + 1.5
    renderer.close()
    text = console.export_text()
    final = text[text.rindex("[+] Building") :]
    lines = final.splitlines()
    assert lines[0] == "[+] Building 1.5s (10/12)"
    assert (
        " => ERROR [build 3/3] RUN make $TARGET                                      0.6s" in lines
    )
    assert (
        " => CANCELED [stage-2 2/3] RUN ./selftest.sh                                0.6s" in lines
    )
    assert not [line for line in lines if line.startswith(" => => #")]
    report = final[final.index("------") :].splitlines()
    assert report[:6] == [
        "------",
        " > [build 3/3] RUN make $TARGET:",
        "0.230 cc -o app main.c",
        "0.500 main.c:3: error: expected ';' before '}' token",
        "0.510 make: *** [Makefile:2: app] Error 1",
        "------",
    ]
    assert " 3 warnings found (use --debug to expand):" in report
    assert " - UndefinedVar: Usage of undefined variable '$TARGET' (line 9)" in report


def test_finished_build_says_finished_and_timers_stop() -> None:
    clock = Clock()
    renderer, console = make(clock=clock)
    renderer.emit(
        VertexStatus(digest="a", name="[1/2] FROM base", started=T0, completed=T0, cached=True)
    )
    renderer.emit(VertexStatus(digest="b", name="[2/2] RUN make", started=T0 + 0.1))
    assert draw(renderer, T0 + 2.0).splitlines()[2].endswith(" 1.9s")
    renderer.emit(
        VertexStatus(digest="b", name="[2/2] RUN make", started=T0 + 0.1, completed=T0 + 0.4)
    )
    clock.now = T0 + 5
    renderer.close()
    text = console.export_text()
    assert text[text.rindex("[+] Building") :].splitlines() == [
        "[+] Building 5.0s (2/2) FINISHED",
        " => CACHED [1/2] FROM base                                                  0.0s",
        " => [2/2] RUN make                                                          0.3s",
    ]


def test_running_step_shows_its_last_log_lines_without_control_characters() -> None:
    renderer, _ = make()
    renderer.emit(VertexStatus(digest="a", name="RUN build", started=T0))
    for i in range(10):
        renderer.emit(VertexLog(digest="a", stream=1, data=f"line {i}\n".encode(), timestamp=T0))
    renderer.emit(
        VertexLog(digest="a", stream=2, data=b"\x1b[31mred\x1b[0m 10%\r 50%", timestamp=T0)
    )
    lines = draw(renderer, T0 + 1).splitlines()
    assert lines[2:] == [
        " => => # line 5",
        " => => # line 6",
        " => => # line 7",
        " => => # line 8",
        " => => # line 9",
        " => => #  50%",
    ]
    renderer.close()


def test_warnings_of_a_step_are_listed_under_it() -> None:
    renderer, _ = make()
    renderer.emit(VertexStatus(digest="a", name="RUN x", started=T0, completed=T0 + 1))
    renderer.emit(BuildWarning(short="something\nodd", digest="a"))
    assert draw(renderer, T0 + 1).splitlines()[2].startswith(" => WARN: something odd")
    renderer.close()


def test_multi_line_names_take_one_line() -> None:
    renderer, _ = make()
    renderer.emit(VertexStatus(digest="a", name="[2/2] RUN <<EOF\necho hi\nEOF", started=T0))
    lines = draw(renderer, T0 + 1).splitlines()
    assert lines[1].startswith(" => [2/2] RUN <<EOF echo hi EOF   ")
    assert len(lines) == 2
    renderer.close()


def test_a_short_terminal_keeps_running_steps_and_drops_finished_ones() -> None:
    renderer, _ = make(height=8)
    renderer.emit(VertexStatus(digest="r", name="running", started=T0))
    renderer.emit(VertexLog(digest="r", stream=1, data=b"output\n", timestamp=T0))
    for i in range(10):
        renderer.emit(
            VertexStatus(digest=f"d{i}", name=f"done {i}", started=T0, completed=T0 + 0.1)
        )
    lines = draw(renderer, T0 + 1, height=8).splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "[+] Building 1.0s (10/11)",
        " => running",
        " => done 5",
        " => done 6",
        " => done 7",
        " => done 8",
        " => done 9",
    ]
    renderer.close()


def test_log_tails_show_only_where_there_is_room() -> None:
    renderer, _ = make(height=12)
    for i in range(3):
        renderer.emit(
            VertexStatus(digest=f"d{i}", name=f"done {i}", started=T0, completed=T0 + 0.1)
        )
    for name in ("a", "b"):
        renderer.emit(VertexStatus(digest=name, name=f"run {name}", started=T0))
        for i in range(6):
            renderer.emit(
                VertexLog(digest=name, stream=1, data=f"{name}{i}\n".encode(), timestamp=T0)
            )
    lines = draw(renderer, T0 + 1, height=12).splitlines()
    # 10 lines for steps: 5 steps, and one tail of 5 (the latest step's) fits
    assert [line.split("  ")[0] for line in lines][4:] == [
        " => run a",
        " => run b",
        " => => # b1",
        " => => # b2",
        " => => # b3",
        " => => # b4",
        " => => # b5",
    ]
    renderer.close()


def test_progress_of_a_step_is_listed_under_it() -> None:
    renderer, _ = make()
    renderer.emit(VertexStatus(digest="a", name="FROM alpine", started=T0))
    renderer.emit(
        VertexProgress(
            digest="a",
            id="sha256:abc",
            name="sha256:abc",
            current=1_500_000,
            total=3_000_000,
            timestamp=T0 + 0.5,
            started=T0,
        )
    )
    lines = draw(renderer, T0 + 1).splitlines()
    assert (
        lines[2]
        == " => => sha256:abc: 1.50MB / 3.00MB                                          1.0s"
    )
    renderer.close()


def test_events_after_close_are_ignored() -> None:
    renderer, console = make()
    renderer.close()
    renderer.emit(VertexStatus(digest="a", name="late", started=T0))
    renderer.close()
    assert "late" not in console.export_text()
