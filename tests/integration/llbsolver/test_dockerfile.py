"""Dockerfiles converted by ``dockyard.dockerfile`` and solved by the llbsolver ops: the
two halves agree on COPY/ADD/RUN semantics."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.cache import ImmutableRef
from dockyard.core import ExecError, NotFoundError
from dockyard.dockerfile import ConvertOptions, convert, parse_dockerfile

from .conftest import Engine


async def _definition(text: str) -> llb.Definition:
    result = await convert(parse_dockerfile(text), ConvertOptions(context_name="context"))
    return result.definition()


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "context"
    (ctx / "src/pkg").mkdir(parents=True)
    (ctx / "src/app.py").write_text("print('app')\n")
    (ctx / "src/pkg/mod.py").write_text("x = 1\n")
    (ctx / "src/pkg/notes.md").write_text("notes\n")
    (ctx / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.symlink("/etc/passwd", ctx / "passwd-link")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("vendor/lib.txt")
        payload = b"vendored\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (ctx / "vendor.tar.gz").write_bytes(gzip.compress(data.getvalue()))
    return ctx


async def test_copy_add_run(engine: Engine, tmp_path: Path) -> None:
    engine.locals.dirs["context"] = _context(tmp_path)
    definition = await _definition(
        """\
FROM busybox
WORKDIR /app
COPY src/ ./
COPY --chown=app:staff --chmod=u+x,go-w run.sh /usr/local/bin/
COPY --parents src/pkg/*.py /tree/
COPY . /whole/
ADD vendor.tar.gz /opt/
RUN test -x /usr/local/bin/run.sh && /usr/local/bin/run.sh > /app/ran && cat /opt/vendor/lib.txt >> /app/ran
"""
    )
    ref, _ = await engine.solve(definition)
    value = ref.value
    assert isinstance(value, ImmutableRef)
    async with value.mount() as root:
        assert (root / "app/app.py").read_text() == "print('app')\n"
        assert (root / "app/pkg/mod.py").read_text() == "x = 1\n"
        st = os.lstat(root / "usr/local/bin/run.sh")
        assert (st.st_uid, st.st_gid) == (1000, 50)
        assert st.st_mode & 0o777 == 0o744
        assert sorted(
            p.relative_to(root / "tree").as_posix() for p in (root / "tree").rglob("*")
        ) == [
            "src",
            "src/pkg",
            "src/pkg/mod.py",
        ]
        assert os.readlink(root / "whole/passwd-link") == "/etc/passwd"  # a link, not followed
        assert (root / "opt/vendor/lib.txt").read_text() == "vendored\n"
        assert (root / "app/ran").read_text() == "run\nvendored\n"
    await ref.release()


async def test_missing_copy_source_names_the_dockerfile_line(
    engine: Engine, tmp_path: Path
) -> None:
    engine.locals.dirs["context"] = _context(tmp_path)
    definition = await _definition("FROM busybox\nCOPY nope.txt /\n")
    with pytest.raises(NotFoundError) as info:
        await engine.solve(definition)
    assert str(info.value).startswith("Dockerfile:2: ")


async def test_a_context_link_out_is_not_followed(engine: Engine, tmp_path: Path) -> None:
    engine.locals.dirs["context"] = _context(tmp_path)
    definition = await _definition("FROM busybox\nCOPY passwd-link /links/\n")
    with pytest.raises(NotFoundError, match="symlinks resolved inside it"):
        await engine.solve(definition)


async def test_failing_run_names_the_dockerfile_line(engine: Engine, tmp_path: Path) -> None:
    engine.locals.dirs["context"] = _context(tmp_path)
    definition = await _definition("FROM busybox\n\nRUN echo about to fail && false\n")
    with pytest.raises(ExecError) as info:
        await engine.solve(definition)
    message = str(info.value)
    assert message.startswith("Dockerfile:3: ")
    assert "exit code: 1" in message
    assert info.value.log_tail == ("about to fail",)


async def test_run_mounts_user_and_workdir(engine: Engine, tmp_path: Path) -> None:
    engine.locals.dirs["context"] = _context(tmp_path)
    text = """\
FROM busybox
RUN --mount=type=cache,target=/cache,id=pkgs echo once >> /cache/log
RUN --mount=type=cache,target=/cache,id=pkgs --mount=type=bind,source=src,target=/mnt/src \\
    --mount=type=tmpfs,target=/scratch \\
    cat /cache/log > /seen && cat /mnt/src/app.py >> /seen && touch /scratch/gone
USER app
WORKDIR /home/app/work
RUN id -un > whoami && pwd >> whoami
"""
    ref, _ = await engine.solve(await _definition(text))
    value = ref.value
    assert isinstance(value, ImmutableRef)
    async with value.mount() as root:
        assert (root / "seen").read_text() == "once\nprint('app')\n"
        assert (root / "home/app/work/whoami").read_text() == "app\n/home/app/work\n"
        assert not (root / "scratch/gone").exists()
        assert not (root / "cache/log").exists()
        assert not (root / "mnt/src/app.py").exists()
    await ref.release()
