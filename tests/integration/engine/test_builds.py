"""Whole builds through the engine and ``dockyard solve``: a Python build file exported to
a directory and a tarball, rebuilt from the cache, partly rebuilt after a context
change; a Definition encoded by hand from BuildKit's wire rules; Dockerfiles through the
dockerfile frontend."""

from __future__ import annotations

import asyncio
import hashlib
import tarfile
import textwrap
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cli.main import main
from dockyard.core import CollectingReporter, FrontendError, NotFoundError, VertexStatus
from dockyard.engine import BuildRequest, Engine
from dockyard.exporter import parse_output
from dockyard.frontend import DockerfileOptions, PythonOptions
from dockyard.session import Session

from .conftest import BUSYBOX, graph_statuses, open_engine, read_tree, store_busybox

BUILD_FILE = """\
from dockyard import llb


def build(ctx):
    made = llb.image("busybox").run(
        "mkdir -p /out/sub && echo hello > /out/hello.txt && echo $((6 * 7)) > /out/sub/n "
        "&& ln -s hello.txt /out/link",
        name="write files",
    )
    return llb.scratch().file(
        llb.copy(made.root, "/out/", "/", dir_contents_only=True), name="keep /out"
    )
"""

EXPECTED = {
    "hello.txt": b"hello\n",
    "sub": "dir",
    "sub/n": b"42\n",
    "link": ("link", "hello.txt"),
}


def test_python_build_file_exports_and_rebuilds_from_the_cache(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "build.py"
    build.write_text(BUILD_FILE)
    out, tar = tmp_path / "out", tmp_path / "out.tar"
    args = ["solve", "--state-dir", str(state), str(build)]
    outputs = ["-o", f"type=local,dest={out}", "-o", f"type=tar,dest={tar}"]
    assert main([*args, *outputs]) == 0
    assert read_tree(out) == EXPECTED
    with tarfile.open(tar) as archive:
        assert sorted(archive.getnames()) == ["hello.txt", "link", "sub", "sub/n"]
    first = capsys.readouterr().err
    assert "write files\n" in first
    assert "hello" not in first.replace("hello.txt", "")  # the step printed nothing

    again = tmp_path / "again"
    assert main([*args, "-o", f"type=local,dest={again}"]) == 0
    assert read_tree(again) == EXPECTED
    steps = _plain_steps(capsys.readouterr().err)
    graph = {
        name: result
        for name, result in steps.items()
        if not name.startswith(("[internal]", "copying"))
    }
    assert graph == {
        "docker-image://docker.io/library/busybox:latest": "CACHED",
        "write files": "CACHED",
        "keep /out": "CACHED",
    }


def _plain_steps(text: str) -> dict[str, str]:
    """Each step's name → its last outcome (``CACHED``, ``DONE``, ``ERROR``) in plain
    progress output."""
    names: dict[str, str] = {}
    outcome: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            continue
        number, _, rest = line.partition(" ")
        if number not in names:
            names[number] = rest
        elif rest in ("CACHED",) or rest.startswith(("DONE", "ERROR")):
            outcome[number] = rest.split()[0].rstrip(":")
    return {names[n]: outcome.get(n, "") for n in names}


async def test_changing_one_context_file_reruns_only_what_reads_it(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a1")
    (ctx / "b.txt").write_text("b1")
    build = tmp_path / "build.py"
    build.write_text(
        textwrap.dedent(
            """\
            from dockyard import llb

            def build():
                base, src = llb.image("busybox"), llb.local("src")
                a = base.copy(src, "/a.txt", "/in/a.txt", create_dest_path=True).run(
                    "mkdir /out && cat /in/a.txt > /out/a", name="read a")
                b = base.copy(src, "/b.txt", "/in/b.txt", create_dest_path=True).run(
                    "mkdir /out && cat /in/b.txt > /out/b", name="read b")
                return llb.scratch().file(
                    llb.copy(a.root, "/out/a", "/a").copy(b.root, "/out/b", "/b"),
                    name="collect")
            """
        )
    )

    async def run(dest: Path) -> dict[str, VertexStatus]:
        reporter = CollectingReporter()
        session = Session(directories={"src": ctx})
        async with engine.sessions.attach(session):
            await engine.solve(
                BuildRequest(
                    frontend="python",
                    frontend_options=PythonOptions(path=build),
                    exports=(parse_output(f"type=local,dest={dest}"),),
                    session_id=session.id,
                    reporter=reporter,
                )
            )
        statuses = {s.name: s for s in reporter.statuses()}
        return {n: s for n, s in statuses.items() if not n.startswith(("[internal]", "copying"))}

    first = await run(tmp_path / "one")
    assert read_tree(tmp_path / "one") == {"a": b"a1", "b": b"b1"}
    assert not any(s.cached for s in first.values())

    (ctx / "b.txt").write_text("b2")
    second = await run(tmp_path / "two")
    assert read_tree(tmp_path / "two") == {"a": b"a1", "b": b"b2"}
    ran = {name for name, status in second.items() if not status.cached}
    assert ran == {"local://src", "copy /b.txt /in/b.txt", "read b", "collect"}, second


# -- a Definition encoded by hand ---------------------------------------------------------


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def _num(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _ld(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hand_encoded_definition() -> bytes:
    """``image(busybox) → run(write files) → copy /out/ into scratch``, written out as
    BuildKit's ``pb.Definition`` field by field (no protobuf encoder)."""
    source = _ld(3, _ld(1, "docker-image://" + BUSYBOX))  # Op.source.identifier
    exec_op = _ld(1, _ld(1, _sha(source))) + _ld(  # Op.inputs[0], Op.exec
        2,
        _ld(
            1,  # ExecOp.meta
            _ld(1, "/bin/sh")
            + _ld(1, "-c")
            + _ld(
                1,
                "mkdir -p /out/sub && echo hello > /out/hello.txt && echo $((6 * 7)) "
                "> /out/sub/n && ln -s hello.txt /out/link",
            )
            + _ld(2, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            + _ld(3, "/"),
        )
        + _ld(2, _num(1, 0) + _ld(3, "/") + _num(4, 0)),  # Mount: input 0 at / → output 0
    )
    copy = _ld(
        4,  # FileAction.copy
        _ld(1, "/out/")
        + _ld(2, "/")
        + _num(4, -1)  # mode: keep
        + _num(6, 1)  # dirCopyContents
        + _num(8, 1)  # createDestPath
        + _num(11, -1),  # timestamp: keep
    )
    action = _num(1, -1) + _num(2, 0) + _num(3, 0) + copy  # onto scratch, from input 0
    file_op = _ld(1, _ld(1, _sha(exec_op))) + _ld(4, _ld(2, action))
    terminal = _ld(1, _ld(1, _sha(file_op)))
    return b"".join(_ld(1, op) for op in (source, exec_op, file_op, terminal))


def test_hand_encoded_definition_solves_to_the_same_tree(
    busybox_rootfs: Path, tmp_path: Path, state: Path
) -> None:
    definition = tmp_path / "def.pb"
    definition.write_bytes(hand_encoded_definition())
    loaded = llb.Definition.load(definition.read_bytes())
    assert [op.kind for op in loaded] == ["source", "exec", "file", ""]
    # solved on a state dir of its own: nothing is shared with the build file's result
    other = tmp_path / "other-state"
    asyncio.run(store_busybox(other, busybox_rootfs))
    out = tmp_path / "out"
    assert main(["solve", "--state-dir", str(other), "--progress", "quiet", str(definition),
                 "-o", f"type=local,dest={out}"]) == 0  # fmt: skip
    assert read_tree(out) == EXPECTED

    build = tmp_path / "build.py"
    build.write_text(BUILD_FILE)
    via_api = tmp_path / "via-api"
    assert main(["solve", "--state-dir", str(state), "--progress", "quiet", str(build),
                 "-o", f"type=local,dest={via_api}"]) == 0  # fmt: skip
    assert read_tree(via_api) == read_tree(out)


def test_solve_reads_a_definition_from_stdin(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    data = llb.scratch().file(llb.mkfile("/f", 0o640, "from stdin")).marshal().to_bytes()
    stdin = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr(sys, "stdin", stdin)
    out = tmp_path / "out"
    assert main(["solve", "--state-dir", str(state), "-o", f"type=local,dest={out}", "-"]) == 0
    assert (out / "f").read_text() == "from stdin"
    assert (out / "f").stat().st_mode & 0o777 == 0o640


def test_solve_errors_name_the_step_and_exit_1(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "build.py"
    build.write_text(
        "from dockyard import llb\n\n"
        "def build():\n"
        "    return llb.image('busybox').run('echo about to fail; exit 9', name='doomed').root\n"
    )
    assert main(["solve", "--state-dir", str(state), str(build)]) == 1
    err = capsys.readouterr().err
    assert " > doomed:" in err
    assert "about to fail" in err.split(" > doomed:")[1]
    assert 'ERROR: process "/bin/sh -c echo about to fail; exit 9" did not complete' in err
    assert "exit code: 9" in err
    # quiet: no progress, the error still shows the step's last lines
    assert main(["solve", "--state-dir", str(state), "--progress", "quiet", str(build)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "------",
        " > doomed:",
        "about to fail",
        "------",
        'ERROR: process "/bin/sh -c echo about to fail; exit 9" did not complete '
        "successfully: exit code: 9",
    ]
    # a usage error exits 2
    assert main(["solve", "--state-dir", str(state), "--frobnicate", str(build)]) == 2
    assert main(["solve", "--state-dir", str(state), "-o", "type=nope", str(build)]) == 2


# -- Dockerfiles ---------------------------------------------------------------------------


async def dockerfile_build(
    engine: Engine,
    context: Path,
    *,
    options: DockerfileOptions | None = None,
    outputs: tuple[str, ...] = (),
) -> tuple[CollectingReporter, object]:
    reporter = CollectingReporter()
    session = Session(directories={"context": context, "dockerfile": context})
    async with engine.sessions.attach(session):
        response = await engine.solve(
            BuildRequest(
                frontend="dockerfile.v0",
                frontend_options=options or DockerfileOptions(),
                exports=tuple(parse_output(o) for o in outputs),
                session_id=session.id,
                reporter=reporter,
            )
        )
    return reporter, response


MULTI_STAGE = """\
FROM busybox AS build
WORKDIR /src
COPY app.txt notes/ ./
RUN cat app.txt > built.txt && echo compiled >> built.txt && ls > listing.txt

FROM busybox AS test
RUN echo "this stage is not needed" && exit 1

FROM scratch
ENV MODE=release
COPY --from=build /src/built.txt /src/listing.txt /app/
CMD ["/app/run"]
"""


async def test_multi_stage_dockerfile_end_to_end(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "notes").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(MULTI_STAGE)
    (ctx / "app.txt").write_text("app v1\n")
    (ctx / "notes" / "n.md").write_text("note")
    (ctx / "notes" / "skip.log").write_text("ignored")
    (ctx / ".dockerignore").write_text("**/*.log\n")
    out = tmp_path / "out"
    reporter, response = await dockerfile_build(engine, ctx, outputs=(f"type=local,dest={out}",))
    assert read_tree(out) == {
        "app": "dir",
        "app/built.txt": b"app v1\ncompiled\n",
        "app/listing.txt": b"app.txt\nbuilt.txt\nlisting.txt\nn.md\n",  # no skip.log
    }
    config = response.image_config  # type: ignore[attr-defined]
    assert "MODE=release" in config.config.env
    assert config.config.cmd == ("/app/run",)
    names = [s.name for s in reporter.statuses()]
    assert "[internal] load build definition from Dockerfile" in names
    assert not any("not needed" in n for n in names)  # the unused stage never ran

    # rebuilt unchanged: every step of the graph comes from the cache
    again, _ = await dockerfile_build(engine, ctx, outputs=(f"type=local,dest={tmp_path / 'o2'}",))
    steps = {s.digest: s for s in again.statuses() if s.name.startswith("[")}
    built = {s.name: s.cached for s in steps.values() if not s.name.startswith("[internal]")}
    assert built
    assert all(built.values()), built


async def test_dockerfile_image_export_is_a_base_for_the_next_build(
    engine: Engine, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    first.mkdir()
    (first / "Dockerfile").write_text(
        "FROM busybox\nRUN echo layer > /made-by-first\nENV FROM_FIRST=yes\n"
    )
    _, response = await dockerfile_build(
        engine, first, outputs=("type=image,name=example.test/first:v1",)
    )
    assert response.exporter_response["image.name"] == "example.test/first:v1"  # type: ignore[attr-defined]

    second = tmp_path / "second"
    second.mkdir()
    (second / "Dockerfile").write_text(
        "FROM example.test/first:v1\nRUN cat /made-by-first > /seen && echo $FROM_FIRST >> /seen\n"
        "FROM scratch\nCOPY --from=0 /seen /seen\n"
    )
    out = tmp_path / "out"
    await dockerfile_build(engine, second, outputs=(f"type=local,dest={out}",))
    assert (out / "seen").read_text() == "layer\nyes\n"


async def test_dockerfile_errors_point_at_the_line(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\nCOPY missing.txt /\n")
    with pytest.raises(Exception) as info:
        await dockerfile_build(engine, ctx)
    assert str(info.value).startswith("Dockerfile:3")
    assert "missing.txt" in str(info.value)

    (ctx / "Dockerfile").write_text("FROM busybox\nRUNN true\n")
    with pytest.raises(FrontendError, match=r"^Dockerfile:2"):
        await dockerfile_build(engine, ctx)


async def test_dockerfile_check_mode_builds_nothing(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox as base\nRUN exit 1\nCMD run\n")
    reporter, response = await dockerfile_build(engine, ctx, options=DockerfileOptions(check=True))
    assert response.built is False  # type: ignore[attr-defined]
    assert {w.rule for w in response.warnings} == {"FromAsCasing", "JSONArgsRecommended"}  # type: ignore[attr-defined]
    assert not any(s.name.startswith("[1/2]") or "RUN" in s.name for s in reporter.statuses())


@pytest.mark.parametrize("keep", [True])
async def test_du_and_prune_on_the_engine(state: Path, tmp_path: Path, keep: bool) -> None:
    async with open_engine(state) as engine:
        await engine.solve(
            BuildRequest(definition=llb.image("busybox").run("echo x > /x").root.marshal())
        )
        records = await engine.du()
        assert records
        assert all(not r.in_use for r in records)
        removed = await engine.prune(all=keep)
        assert {r.id for r in removed.records} == {r.id for r in records}
        assert await engine.du() == []
        # the image itself is kept: its blobs are roots, and it still builds
        reporter = CollectingReporter()
        await engine.solve(
            BuildRequest(
                definition=llb.image("busybox").run("true").root.marshal(), reporter=reporter
            )
        )
        assert graph_statuses(reporter, llb.image("busybox").run("true").root.marshal())


async def test_dockerfile_named_contexts_and_target(engine: Engine, tmp_path: Path) -> None:
    ctx, extra = tmp_path / "ctx", tmp_path / "extra"
    ctx.mkdir()
    extra.mkdir()
    (extra / "data.txt").write_text("from the named context\n")
    (extra / "junk.tmp").write_text("ignored by extra's own .dockerignore")
    (extra / ".dockerignore").write_text("*.tmp\n")
    (ctx / "Dockerfile").write_text(
        "FROM base AS one\n"
        "COPY --from=extra / /extra/\n"
        "RUN ls /extra > /listing && cat /extra/data.txt >> /listing\n"
        "FROM scratch AS two\n"
        "COPY --from=one /listing /\n"
        "FROM two AS never\n"
        "RUN false\n"
    )
    out = tmp_path / "out"
    reporter = CollectingReporter()
    session = Session(directories={"context": ctx, "dockerfile": ctx, "extra-dir": extra})
    options = DockerfileOptions(
        target="two",
        named_contexts={"base": "docker-image://busybox", "extra": "local:extra-dir"},
    )
    async with engine.sessions.attach(session):
        await engine.solve(
            BuildRequest(
                frontend="dockerfile.v0",
                frontend_options=options,
                exports=(parse_output(f"type=local,dest={out}"),),
                session_id=session.id,
                reporter=reporter,
            )
        )
    assert (out / "listing").read_text() == "data.txt\nfrom the named context\n"
    names = {s.name for s in reporter.statuses()}
    assert "[context extra] load from client" in names


async def test_dockerfile_in_a_subdirectory_and_through_a_symlink(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "build").mkdir(parents=True)
    (ctx / "build" / "real.Dockerfile").write_text("FROM scratch\nCOPY a.txt /\n")
    (ctx / "build" / "Dockerfile").symlink_to("real.Dockerfile")
    (ctx / "build" / "Dockerfile.dockerignore").write_text("*.txt\n!a.txt\n")
    (ctx / "a.txt").write_text("a")
    out = tmp_path / "out"
    await dockerfile_build(
        engine,
        ctx,
        options=DockerfileOptions(filename="build/Dockerfile"),
        outputs=(f"type=local,dest={out}",),
    )
    assert read_tree(out) == {"a.txt": b"a"}

    with pytest.raises(NotFoundError, match="failed to read dockerfile: build/Nope"):
        await dockerfile_build(engine, ctx, options=DockerfileOptions(filename="build/Nope"))
    (ctx / "escape").symlink_to("/etc/hostname")
    with pytest.raises(NotFoundError, match="failed to read dockerfile: escape"):
        await dockerfile_build(engine, ctx, options=DockerfileOptions(filename="escape"))
