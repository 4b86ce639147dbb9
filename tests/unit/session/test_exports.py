"""Outputs written to the client's chosen destinations (``local`` and ``tar`` outputs
when the engine runs elsewhere)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.core import DockyardError, NotFoundError, UsageError
from dockyard.session import DirectoryTarget, FileTarget, Session

from .harness import Harness, eventually
from .trees import snapshot, write


async def test_directory_export_merges_into_the_target(harness: Harness, tmp_path: Path) -> None:
    result_tree, out = tmp_path / "result", tmp_path / "out"
    write(result_tree, "bin/app", "binary", mode=0o755)
    write(result_tree, "etc/conf", "x=1")
    os.symlink("bin/app", result_tree / "app")
    write(out, "unrelated.txt", "mine")
    session = Session(exports={"out": DirectoryTarget(path=out)})
    async with harness.open(session) as handle:
        first = await handle.exports.send_directory("out", result_tree)
        assert (first.entries, first.files_transferred) == (5, 2)
        assert first.bytes_transferred == len("binary") + len("x=1")
        again = await handle.exports.send_directory("out", result_tree)
        assert again.files_transferred == 0
    assert (out / "unrelated.txt").read_text() == "mine"
    exported = snapshot(out)
    del exported["unrelated.txt"]
    assert exported == snapshot(result_tree)


async def test_stream_export_to_a_file(harness: Harness, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "image.tar"
    payload = os.urandom(3 * 1024 * 1024 + 7)
    async with harness.open(Session(exports={"tar": FileTarget(path=dest)})) as handle:
        async with handle.exports.open_stream("tar") as stream:
            for start in range(0, len(payload), 700_000):
                await stream.write(payload[start : start + 700_000])
            assert not dest.exists()  # only complete files appear
        assert dest.read_bytes() == payload

        # a failed export leaves nothing behind
        async def failing_export() -> None:
            async with handle.exports.open_stream("tar") as stream:
                await stream.write(b"partial")
                raise RuntimeError("exporter failed")

        with pytest.raises(RuntimeError, match="exporter failed"):
            await failing_export()
        # the client removes its partial file when it learns the export failed
        await eventually(lambda: sorted(p.name for p in dest.parent.iterdir()) == ["image.tar"])
    assert dest.read_bytes() == payload


async def test_stream_export_to_a_fifo_or_device_path_writes_it_in_place(
    harness: Harness, tmp_path: Path
) -> None:
    """``dest=/dev/null`` or a named pipe: written where it is, never replaced by a
    file (a temp file renamed over /dev/null once replaced the machine's /dev/null)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the writer's open does not wait
    try:
        async with (
            harness.open(Session(exports={"tar": FileTarget(path=fifo)})) as handle,
            handle.exports.open_stream("tar") as stream,
        ):
            await stream.write(b"through ")
            await stream.write(b"the pipe")
        try:
            received = os.read(reader, 1000)
        except BlockingIOError:
            received = b""
    finally:
        os.close(reader)
    assert received == b"through the pipe"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(os.listdir(tmp_path)) == ["pipe"]  # no temp file left


async def test_stream_export_to_a_descriptor(harness: Harness) -> None:
    read_fd, write_fd = os.pipe()
    try:
        session = Session(exports={"stdout": FileTarget(fd=write_fd)})
        async with (
            harness.open(session) as handle,
            handle.exports.open_stream("stdout") as stream,
        ):
            await stream.write(b"hello ")
            await stream.write(b"pipe")
        assert os.read(read_fd, 100) == b"hello pipe"
    finally:
        os.close(read_fd)
        os.close(write_fd)


async def test_target_kinds_must_match(harness: Harness, tmp_path: Path) -> None:
    session = Session(
        exports={
            "dir": DirectoryTarget(path=tmp_path / "d"),
            "file": FileTarget(path=tmp_path / "f"),
        }
    )
    async with harness.open(session) as handle:
        with pytest.raises(NotFoundError, match=r"'dir' (of the client )?is not a file"):
            async with handle.exports.open_stream("dir"):
                pass
        with pytest.raises(NotFoundError, match="not a directory"):
            await handle.exports.send_directory("file", tmp_path)
        assert handle.exports.has("dir")


def test_file_target_needs_one_destination() -> None:
    with pytest.raises(UsageError):
        FileTarget()
    with pytest.raises(UsageError):
        FileTarget(path=Path("x"), fd=1)


async def test_directory_export_into_sub_directories(harness: Harness, tmp_path: Path) -> None:
    """BuildKit's platform split: each tree goes under its own name in one target."""
    amd, arm, out = tmp_path / "amd", tmp_path / "arm", tmp_path / "out"
    write(amd, "bin/app", "amd", mode=0o755)
    os.link(amd / "bin" / "app", amd / "app-link")
    os.symlink("bin/app", amd / "app")
    write(arm, "bin/app", "arm-binary", mode=0o755)
    write(out, "unrelated.txt", "mine")
    session = Session(exports={"out": DirectoryTarget(path=out)})
    async with harness.open(session) as handle:
        first = await handle.exports.send_directory("out", amd, prefix="linux_amd64")
        assert first.files_transferred == 1  # the hard link is made, not sent
        await handle.exports.send_directory("out", arm, prefix="linux_arm64")
        again = await handle.exports.send_directory("out", amd, prefix="linux_amd64")
        assert again.files_transferred == 0
        for bad in ("a/b", "..", "."):
            with pytest.raises(DockyardError, match="invalid export sub-directory"):
                await handle.exports.send_directory("out", amd, prefix=bad)
    assert sorted(p.name for p in out.iterdir()) == ["linux_amd64", "linux_arm64", "unrelated.txt"]
    assert snapshot(out / "linux_amd64") == snapshot(amd)
    assert snapshot(out / "linux_arm64") == snapshot(arm)
    assert (out / "linux_amd64" / "app-link").stat().st_ino == (
        out / "linux_amd64" / "bin" / "app"
    ).stat().st_ino
    assert os.readlink(out / "linux_amd64" / "app") == "bin/app"
