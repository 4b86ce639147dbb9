"""``--invoke``'s hook in the exec op: a failed process's debug shell runs on the very
root and mounts the process had, before they are released, and the build still fails
with the process's error (fakes: directories for refs, Python for processes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import DockyardError, ExecError, SessionError
from dockyard.executor.types import BindMount, ExecMount, ProcessSpec, Stdio
from dockyard.llbsolver import DebugShell, JobOptions, LlbSolver, Worker
from dockyard.snapshot.types import Mount
from dockyard.solver import InMemoryCacheKeyStorage, Solver

from .fakes import Call, DirRefs, DirSource, FakeExecutor
from .trees import make_tree

BUSYBOX = "docker.io/library/busybox:latest"


@dataclass
class Shell:
    root: Path
    files: list[str]
    mounts: list[ExecMount]
    process: ProcessSpec
    stdio: Stdio
    cache_files: list[str] = field(default_factory=list)


def _names(path: Path) -> list[str]:
    return sorted(os.listdir(path))


class InteractiveFake(FakeExecutor):
    """:class:`FakeExecutor` that also records interactive runs (and what their root
    and cache mount held then)."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(self._behave)
        self.status = status
        self.shells: list[Shell] = []
        self.interactive_error: DockyardError | None = None

    async def _behave(self, call: Call, output: object) -> int:
        (call.root / "partial").write_text("written before failing")
        cache = call.mount_dirs.get("/cache")
        if cache is not None:
            (cache / "c").write_text("cached")
        return self.status

    async def run_interactive(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        stdio: Stdio,
    ) -> int:
        if self.interactive_error is not None:
            raise self.interactive_error
        path = Path(root[0].source)
        shell = Shell(
            root=path,
            files=_names(path),
            mounts=list(mounts),
            process=process,
            stdio=stdio,
        )
        for m in mounts:
            if isinstance(m, BindMount) and m.dest == "/cache":
                shell.cache_files = _names(Path(m.source[0].source))
        self.shells.append(shell)
        return 3  # the shell's own status changes nothing


@pytest.fixture
def refs(tmp_path: Path) -> DirRefs:
    return DirRefs(tmp_path / "store")


def _bridge(refs: DirRefs, executor: FakeExecutor) -> LlbSolver:
    source = DirSource(refs, {BUSYBOX: lambda p: make_tree(p, {"etc/": None, "bin/": None})})
    worker = Worker(refs=refs, executor=executor, sources={"docker-image": source})
    return LlbSolver(worker, Solver(result_storage=refs, key_storage=InMemoryCacheKeyStorage()))


@pytest.fixture
async def leak_check(refs: DirRefs) -> AsyncIterator[None]:
    yield
    refs.assert_no_leaks()


def _failing_step() -> llb.State:
    return (
        llb.image("busybox")
        .run(
            "make",
            env={"GREETING": "hi"},
            cwd="/src",
            user="1000",
            mounts=[llb.CacheMount("/cache", "c1")],
        )
        .root
    )


async def test_a_failed_exec_runs_the_shell_on_its_mounts(refs: DirRefs, leak_check: None) -> None:
    executor = InteractiveFake(status=7)
    lines: list[str] = []
    shell = DebugShell(args=("/bin/sh", "-l"), stdio=Stdio(terminal=False), announce=lines.append)
    bridge = _bridge(refs, executor)
    with pytest.raises(ExecError, match="exit code: 7") as caught:
        await bridge.solve(_failing_step().marshal(), options=JobOptions(debug_shell=shell))
    assert caught.value.exit_status == 7  # the step's failure, not the shell's status
    (failed,) = executor.calls
    (seen,) = executor.shells
    assert seen.root == failed.root  # the same root, as the failed command left it
    assert "partial" in seen.files
    assert [m.dest for m in seen.mounts] == [m.dest for m in failed.mounts]
    assert seen.cache_files == ["c"]  # the cache mount, still held
    assert seen.process.args == ("/bin/sh", "-l")
    assert seen.process.env == failed.process.env
    assert (seen.process.cwd, seen.process.user) == ("/src", "1000")
    assert seen.stdio == Stdio(terminal=False)
    assert shell.ran
    assert len(lines) == 1
    assert "exit code: 7" in lines[0]
    assert "/bin/sh -l" in lines[0]


async def test_no_shell_without_the_job_value_or_on_success(
    refs: DirRefs, leak_check: None
) -> None:
    executor = InteractiveFake(status=1)
    with pytest.raises(ExecError):
        await _bridge(refs, executor).solve(_failing_step().marshal())
    assert executor.shells == []

    ok = InteractiveFake(status=0)
    shell = DebugShell(args=("/bin/sh",), stdio=Stdio(terminal=False))
    ref = await _bridge(refs, ok).solve(
        _failing_step().marshal(), options=JobOptions(debug_shell=shell)
    )
    assert ref is not None
    await ref.release()
    assert ok.shells == []  # a step that succeeded opens nothing (the engine does, after)
    assert not shell.ran


async def test_on_error_off_runs_no_shell(refs: DirRefs, leak_check: None) -> None:
    executor = InteractiveFake(status=1)
    shell = DebugShell(args=("/bin/sh",), stdio=Stdio(terminal=False), on_error=False)
    with pytest.raises(ExecError):
        await _bridge(refs, executor).solve(
            _failing_step().marshal(), options=JobOptions(debug_shell=shell)
        )
    assert executor.shells == []


async def test_a_shell_that_cannot_start_keeps_the_steps_error(
    refs: DirRefs, leak_check: None
) -> None:
    executor = InteractiveFake(status=4)
    executor.interactive_error = ExecError("crun could not run ['/bin/bash']: not found")
    lines: list[str] = []
    shell = DebugShell(args=("/bin/bash",), stdio=Stdio(terminal=False), announce=lines.append)
    with pytest.raises(ExecError, match="exit code: 4"):
        await _bridge(refs, executor).solve(
            _failing_step().marshal(), options=JobOptions(debug_shell=shell)
        )
    assert len(lines) == 2
    assert "/bin/bash" in lines[1]
    assert lines[1].startswith("--invoke: ")


async def test_one_shell_per_build_and_executors_without_one() -> None:
    lines: list[str] = []
    shell = DebugShell(args=("sh",), stdio=Stdio(terminal=False), announce=lines.append)
    plain = FakeExecutor()
    process = ProcessSpec(args=("x",))
    assert await shell.run(plain, root=(), mounts=(), process=process, title="t") is None
    assert "cannot run an interactive process" in lines[0]
    assert (
        await shell.run(InteractiveFake(), root=(), mounts=(), process=process, title="t") is None
    )
    assert len(lines) == 1  # the second failure gets no shell


def test_a_shell_needs_a_command() -> None:
    with pytest.raises(DockyardError, match="needs a command"):
        DebugShell(args=(), stdio=Stdio())


class RecordingConsole:
    """A console elsewhere (as a daemon's client's terminal): what it was asked to
    show, the streams it hands out, how the shell said it went."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.lines: list[str] = []
        self.finished: list[tuple[int | None, str]] = []
        self.stdio = Stdio(stdin=11, stdout=12, stderr=13, terminal=False)

    @contextlib.asynccontextmanager
    async def attach(self, line: str) -> AsyncIterator[RecordingConsole]:
        if self.broken:
            raise SessionError("session s ended: the client disconnected")
        self.lines.append(line)
        yield self

    def finish(self, status: int | None, notice: str = "") -> None:
        self.finished.append((status, notice))


async def test_a_console_elsewhere_gets_the_streams_and_the_outcome(
    refs: DirRefs, leak_check: None
) -> None:
    executor = InteractiveFake(status=7)
    console = RecordingConsole()
    shell = DebugShell(args=("/bin/sh",), console=console)
    with pytest.raises(ExecError, match="exit code: 7"):
        await _bridge(refs, executor).solve(
            _failing_step().marshal(), options=JobOptions(debug_shell=shell)
        )
    (seen,) = executor.shells
    assert seen.stdio == console.stdio  # the console's streams, not this process's
    assert len(console.lines) == 1
    assert "running /bin/sh (exit it to continue)" in console.lines[0]
    assert console.finished == [(3, "")]  # the shell's status goes to the console


async def test_a_console_that_cannot_attach_keeps_the_steps_error(
    refs: DirRefs, leak_check: None
) -> None:
    executor = InteractiveFake(status=6)
    shell = DebugShell(args=("/bin/sh",), console=RecordingConsole(broken=True))
    with pytest.raises(ExecError, match="exit code: 6"):
        await _bridge(refs, executor).solve(
            _failing_step().marshal(), options=JobOptions(debug_shell=shell)
        )
    assert executor.shells == []
    assert shell.ran
