"""A Python build file built on a daemon is evaluated in the client's process
(``client._buildfile``): the job becomes one of the Definition the file made, for the
daemon's worker platform unless the options name one; the file's errors are the
embedded engine's; what a frontend cannot ask of a client-side context says so. And
the wire details ``dockyard solve`` needs: an empty Definition travels as one the
daemon accepts, the daemon's build platform is asked once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dockyard import llb
from dockyard.client import Client
from dockyard.client._buildfile import ClientFrontendContext, evaluate_on_client
from dockyard.client._job import Job
from dockyard.client._remote import RemoteBackend
from dockyard.core import CollectingReporter, FrontendError, Platform, UsageError
from dockyard.frontend import PYTHON_FRONTEND, FrontendContext, PythonOptions

ARM64 = Platform.parse("linux/arm64")
S390X = Platform.parse("linux/s390x")

BUILD_FILE = """\
import os
from pathlib import Path

from dockyard import llb

Path(os.environ["DY_UNIT_PID_FILE"]).write_text(str(os.getpid()))


def build(ctx):
    return llb.image("busybox").run("echo " + ctx.build_args["WORD"], name="say").root
"""


def python_job(options: PythonOptions) -> Job:
    return Job(name="solve", frontend=PYTHON_FRONTEND, frontend_options=options)


def platforms_of(definition: llb.Definition) -> set[str]:
    out = set()
    for node in definition:
        if node.kind:
            p = node.op.platform
            out.add(f"{p.OS}/{p.Architecture}")
    return out


async def test_the_build_file_runs_here_for_the_daemons_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = tmp_path / "build.py"
    build.write_text(BUILD_FILE)
    monkeypatch.setenv("DY_UNIT_PID_FILE", str(tmp_path / "pid"))
    asked: list[int] = []

    async def daemon_platform() -> Platform:
        asked.append(1)
        return S390X

    reporter = CollectingReporter()
    job = python_job(PythonOptions(path=build, build_args={"WORD": "hi"}))
    evaluated = await evaluate_on_client(job, reporter, daemon_platform)
    assert int((tmp_path / "pid").read_text()) == os.getpid()
    assert evaluated.frontend is None
    assert evaluated.frontend_options is None
    assert evaluated.definition is not None
    assert [n.name for n in evaluated.definition if n.kind == "exec"] == ["say"]
    assert platforms_of(evaluated.definition) == {"linux/s390x"}
    assert asked == [1]
    assert evaluated.name == job.name
    steps = reporter.statuses()
    assert steps[0].name == "[internal] load build file build.py"
    assert steps[-1].completed is not None
    assert steps[-1].error is None

    # a target platform in the options asks the daemon nothing
    job = python_job(PythonOptions(path=build, build_args={"WORD": "hi"}, platform=ARM64))
    evaluated = await evaluate_on_client(job, CollectingReporter(), daemon_platform)
    assert evaluated.definition is not None
    assert platforms_of(evaluated.definition) == {"linux/arm64"}
    assert asked == [1]


async def test_the_build_files_errors_are_the_embedded_engines(tmp_path: Path) -> None:
    build = tmp_path / "b.py"
    build.write_text("from dockyard import llb\n\ndef build():\n    raise ValueError('boom')\n")

    async def daemon_platform() -> Platform:
        return S390X

    reporter = CollectingReporter()
    with pytest.raises(FrontendError) as caught:
        await evaluate_on_client(python_job(PythonOptions(path=build)), reporter, daemon_platform)
    assert caught.value.message == "ValueError in build(): boom"
    assert str(caught.value.locations[0]) == f"{build}:4"
    assert reporter.statuses()[-1].error == f"{build}:4: ValueError in build(): boom"
    with pytest.raises(UsageError, match="takes PythonOptions"):
        await evaluate_on_client(
            Job(name="x", frontend=PYTHON_FRONTEND, frontend_options="b.py"),
            reporter,
            daemon_platform,
        )


async def test_a_client_side_context_says_what_it_cannot_do() -> None:
    reporter = CollectingReporter()
    ctx = ClientFrontendContext(reporter=reporter, build_platform=ARM64)
    assert isinstance(ctx, FrontendContext)
    assert ctx.session_id is None
    assert ctx.reporter is reporter
    assert ctx.build_platform == ARM64
    with pytest.raises(UsageError, match=r"metadata of image 'docker\.io/library/busybox:latest'"):
        await ctx.images.resolve(
            "docker.io/library/busybox:latest", platform=ARM64, resolve_mode=llb.ResolveMode.DEFAULT
        )
    with pytest.raises(UsageError, match="cannot read Dockerfile of the client directory 'ctx'"):
        await ctx.read_client_files("ctx", ["Dockerfile"])


class _Backend:
    """A Backend double keeping the jobs it is given."""

    mode = "daemon"
    address = "unix:///nowhere"

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def run(self, job: Job, reporter: Any) -> Any:
        from dockyard.client._backend import Outcome

        self.jobs.append(job)
        return Outcome()


async def test_client_solve_takes_a_definition_or_a_build_file(tmp_path: Path) -> None:
    backend = _Backend()
    client = Client(backend)  # type: ignore[arg-type]
    definition = llb.scratch().file(llb.mkfile("/f", 0o644, "x")).marshal()
    await client.solve(definition, directories={"src": "rel"}, entitlements=frozenset({"a"}))
    options = PythonOptions(path=tmp_path / "b.py", build_args={"A": "1"})
    await client.solve(options, name="b.py")
    first, second = backend.jobs
    assert first.definition is definition
    assert first.frontend is None
    assert first.directories == {"src": Path.cwd() / "rel"}
    assert first.entitlements == {"a"}
    assert second.definition is None
    assert second.frontend == PYTHON_FRONTEND
    assert second.frontend_options is options
    assert second.name == "b.py"


def test_an_empty_definition_travels_as_one_the_daemon_takes() -> None:
    from dockyard.daemon._request import build_request
    from dockyard.frontend import Frontends

    backend = RemoteBackend("unix:///nowhere")
    job = Job(name="solve", definition=llb.Definition.load(b""))
    request = backend._request(job, "ref", "session", ())
    assert request.definition  # not zero bytes: that is no Definition at all
    assert list(llb.Definition.load(request.definition)) == []
    built = build_request(request, frontends=Frontends({}), reporter=CollectingReporter())
    assert built.definition is not None
    assert list(built.definition) == []
    # a Definition with ops travels as its own bytes
    definition = llb.scratch().file(llb.mkfile("/f", 0o644, "x")).marshal()
    full = backend._request(Job(name="s", definition=definition), "ref", "session", ())
    assert full.definition == definition.to_bytes()


async def test_the_daemons_build_platform_is_its_first_workers_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dockyard.api._gen import control_pb2 as pb
    from dockyard.api._gen import ops_pb2

    calls: list[str] = []
    response = pb.ListWorkersResponse(
        record=[
            pb.WorkerRecord(
                id="w",
                platforms=[
                    ops_pb2.Platform(OS="linux", Architecture="arm", Variant="v7"),
                    ops_pb2.Platform(OS="linux", Architecture="amd64"),
                ],
            )
        ]
    )

    def unary(name: str, request_type: Any, response_type: Any) -> Any:
        async def call(request: Any) -> Any:
            calls.append(name)
            return response

        return call

    backend = RemoteBackend("unix:///nowhere")
    monkeypatch.setattr(backend, "_unary", unary)
    assert await backend.build_platform() == Platform.parse("linux/arm/v7")
    assert await backend.build_platform() == Platform.parse("linux/arm/v7")
    assert calls == ["ListWorkers"]

    empty = RemoteBackend("unix:///nowhere")
    monkeypatch.setattr(empty, "_unary", lambda *a: lambda r: _answer(pb.ListWorkersResponse()))
    with pytest.raises(Exception, match="names no worker platform"):
        await empty.build_platform()


async def _answer(value: Any) -> Any:
    return value
