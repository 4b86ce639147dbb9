"""Incremental file sync through each transport (in-process, gRPC over a unix socket and
over loopback TCP): only what changed travels, and the destination ends up equal to the
source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core import CollectingReporter, NotFoundError, UsageError, VertexProgress
from dockyard.session import Session, SessionHandle, SyncRequest, SyncResult

from .harness import Harness
from .trees import dir_mtimes, snapshot, write


def make_context(root: Path) -> None:
    write(root, "Dockerfile", "FROM busybox\nCOPY . /app\n")
    write(root, "app/main.py", "print('hello')\n")
    write(root, "app/util.py", "X = 1\n", mode=0o640)
    write(root, "app/data/table.csv", "a,b\n1,2\n")
    write(root, "run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    os.symlink("app/main.py", root / "entry")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("missing/target", root / "dangling")
    os.link(root / "app/main.py", root / "app/main-hardlink.py")
    (root / "empty-dir").mkdir()


async def sync(
    handle: SessionHandle, dest: Path, name: str = "context", **kw: tuple[str, ...]
) -> SyncResult:
    return await handle.filesync.sync(SyncRequest(name=name, **kw), dest)


async def test_first_sync_copies_everything_then_nothing(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    async with harness.open(Session(directories={"context": src})) as handle:
        first = await sync(handle, dest)
        assert snapshot(dest) == snapshot(src)
        assert first.files_transferred == 5  # the hard link travels once
        assert first.bytes_transferred == sum(
            p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink()
        ) - len("print('hello')\n")
        assert "app/main-hardlink.py" in first.changed
        assert "entry" in first.changed
        assert first.deleted == ()

        second = await sync(handle, dest)
        assert second.files_transferred == 0
        assert second.bytes_transferred == 0
        assert second.unchanged
        assert second.entries == first.entries
        assert snapshot(dest) == snapshot(src)


async def test_one_changed_file_transfers_that_file_only(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    for i in range(200):
        write(src, f"many/f{i:03}.txt", f"file {i}\n" * 50)
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        write(src, "many/f117.txt", "changed content\n")
        result = await sync(handle, dest)
        assert result.files_transferred == 1
        assert result.bytes_transferred == len("changed content\n")
        assert result.changed == ("many/f117.txt",)
        assert result.deleted == ()
        assert snapshot(dest) == snapshot(src)


async def test_deletions_and_type_changes(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        (src / "run.sh").unlink()
        for p in sorted((src / "app/data").iterdir()):
            p.unlink()
        (src / "app/data").rmdir()
        (src / "entry").unlink()
        (src / "entry").mkdir()  # a symlink becomes a directory
        write(src, "entry/inside", "x")
        (src / "empty-dir").rmdir()
        write(src, "empty-dir", "now a file")  # a directory becomes a file
        result = await sync(handle, dest)
        assert set(result.deleted) == {"run.sh", "app/data", "app/data/table.csv"}
        assert {"entry", "entry/inside", "empty-dir"} <= set(result.changed)
        assert result.files_transferred == 2
        assert snapshot(dest) == snapshot(src)


async def test_mode_change_travels_without_content(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        (src / "app/util.py").chmod(0o600)
        (src / "app").chmod(0o700)
        result = await sync(handle, dest)
        assert result.files_transferred == 0
        assert set(result.changed) == {"app/util.py", "app"}
        assert (dest / "app/util.py").stat().st_mode & 0o777 == 0o600
        assert (dest / "app").stat().st_mode & 0o777 == 0o700
        assert snapshot(dest) == snapshot(src)


async def test_symlinks_are_copied_as_links(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        assert os.readlink(dest / "abs-link") == "/etc/passwd"
        assert os.readlink(dest / "dangling") == "missing/target"
        (src / "entry").unlink()
        os.symlink("run.sh", src / "entry")
        result = await sync(handle, dest)
        assert result.changed == ("entry",)
        assert result.files_transferred == 0
        assert os.readlink(dest / "entry") == "run.sh"


async def test_hard_links_are_kept_and_relinked(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        main, link = dest / "app/main.py", dest / "app/main-hardlink.py"
        assert main.stat().st_ino == link.stat().st_ino
        assert main.stat().st_nlink == 2
        # replace the file (new inode): both names must follow, one transfer
        (src / "app/main.py").unlink()
        write(src, "app/main.py", "print('new')\n")
        (src / "app/main-hardlink.py").unlink()
        os.link(src / "app/main.py", src / "app/main-hardlink.py")
        result = await sync(handle, dest)
        assert result.files_transferred == 1
        assert main.stat().st_ino == link.stat().st_ino
        assert link.read_text() == "print('new')\n"
        # break the link: two independent files again
        (src / "app/main-hardlink.py").unlink()
        write(src, "app/main-hardlink.py", "print('other')\n")
        await sync(handle, dest)
        assert main.stat().st_ino != link.stat().st_ino
        assert snapshot(dest) == snapshot(src)


async def test_big_file_travels_in_chunks(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    data = os.urandom(5 * 1024 * 1024 + 123)
    write(src, "big.bin", data)
    write(src, "small", "s")
    reporter = CollectingReporter()
    async with harness.open(Session(directories={"context": src})) as handle:
        result = await handle.filesync.sync(
            SyncRequest(name="context"), dest, reporter=reporter, progress_digest="sha256:v"
        )
    assert (dest / "big.bin").read_bytes() == data
    assert result.bytes_transferred == len(data) + 1
    progress = [e for e in reporter.events if isinstance(e, VertexProgress)]
    assert progress
    assert all(e.digest == "sha256:v" for e in progress)
    final = [e for e in progress if e.completed is not None]
    assert {(e.id, e.current, e.total) for e in final} == {
        ("transfer:context", len(data) + 1, len(data) + 1),
        ("transfer:context:files", 2, 2),
    }


async def test_patterns_select_what_travels(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "Dockerfile", "FROM x")
    write(src, "app/a.py", "a")
    write(src, "app/b.log", "b")
    write(src, "app/keep.log", "k")
    write(src, "node_modules/lib/x.js", "x")
    write(src, "docs/deep/readme.md", "r")
    write(src, "docs/deep/tmp.tmp", "t")
    async with harness.open(Session(directories={"context": src})) as handle:
        result = await sync(
            handle,
            dest,
            exclude_patterns=("node_modules", "**/*.log", "!app/keep.log", "**/*.tmp"),
        )
        assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
            "Dockerfile",
            "app",
            "app/a.py",
            "app/keep.log",
            "docs",
            "docs/deep",
            "docs/deep/readme.md",
        ]
        assert result.files_transferred == 4
        # narrowing the selection deletes what is no longer selected
        result = await sync(handle, dest, include_patterns=("app/*.py",))
        assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
            "app",
            "app/a.py",
        ]
        assert result.files_transferred == 0


async def test_follow_paths_bring_symlink_targets(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "build/Dockerfile.real", "FROM scratch")
    write(src, "other", "not wanted")
    os.symlink("build/Dockerfile.real", src / "Dockerfile")
    async with harness.open(Session(directories={"dockerfile": src})) as handle:
        await sync(
            handle,
            dest,
            name="dockerfile",
            include_patterns=("Dockerfile",),
            follow_paths=("Dockerfile",),
        )
    assert os.readlink(dest / "Dockerfile") == "build/Dockerfile.real"
    assert (dest / "Dockerfile").read_text() == "FROM scratch"
    assert not (dest / "other").exists()


async def test_unknown_directory_is_not_found(harness: Harness, tmp_path: Path) -> None:
    async with harness.open(Session(directories={"context": tmp_path})) as handle:
        with pytest.raises(NotFoundError, match=r"'ctx'.*context"):
            await sync(handle, tmp_path / "dest", name="ctx")


async def test_missing_client_directory_is_reported(harness: Harness, tmp_path: Path) -> None:
    async with harness.open(Session(directories={"context": tmp_path / "gone"})) as handle:
        with pytest.raises(NotFoundError, match="does not exist"):
            await sync(handle, tmp_path / "dest")
        # the session survives a failed call
        (tmp_path / "gone").mkdir()
        write(tmp_path / "gone", "f", "x")
        assert (await sync(handle, tmp_path / "dest")).files_transferred == 1


def test_bad_patterns_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="exclude pattern"):
        SyncRequest(name="context", exclude_patterns=("[",))
    with pytest.raises(UsageError):
        SyncRequest(name="")


async def test_directory_mtimes_are_restored(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    os.utime(src / "app", ns=(1_000_000_000, 1_000_000_000))
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        assert dir_mtimes(dest) == dir_mtimes(src)
        write(src, "app/new.txt", "n")
        await sync(handle, dest)
        assert dir_mtimes(dest) == dir_mtimes(src)


async def test_concurrent_syncs_of_one_session(harness: Harness, tmp_path: Path) -> None:
    import asyncio

    src = tmp_path / "src"
    make_context(src)
    async with harness.open(Session(directories={"context": src, "other": src / "app"})) as h:
        results = await asyncio.gather(
            sync(h, tmp_path / "d1"),
            sync(h, tmp_path / "d2", name="other"),
            sync(h, tmp_path / "d3"),
        )
    assert [r.files_transferred for r in results] == [5, 3, 5]
    assert snapshot(tmp_path / "d2") == snapshot(src / "app")


async def test_syncs_into_one_destination_take_turns(harness: Harness, tmp_path: Path) -> None:
    import asyncio

    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    for i in range(100):
        write(src, f"many/{i}", str(i))
    async with harness.open(Session(directories={"context": src})) as handle:
        results = await asyncio.gather(*(sync(handle, dest) for _ in range(3)))
    assert sorted(r.files_transferred for r in results) == [0, 0, 105]
    assert snapshot(dest) == snapshot(src)


async def test_without_comparing_everything_travels(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_context(src)
    async with harness.open(Session(directories={"context": src})) as handle:
        await sync(handle, dest)
        # same size and mtime, different content: only a full transfer notices
        stat = (src / "app/util.py").stat()
        write(src, "app/util.py", "X = 2\n")
        os.utime(src / "app/util.py", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert (await sync(handle, dest)).files_transferred == 0
        result = await handle.filesync.sync(SyncRequest(name="context"), dest, compare=False)
        assert result.files_transferred == 5
        assert (dest / "app/util.py").read_text() == "X = 2\n"


async def test_names_that_are_not_utf8(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    write(src, os.fsdecode(b"caf\xe9 \n\x01"), "latin-1 name")
    os.symlink(b"caf\xe9 \n\x01", os.fsencode(src) + b"/l\xff")
    async with harness.open(Session(directories={"context": src})) as handle:
        result = await sync(handle, dest)
    assert result.files_transferred == 1
    assert sorted(os.listdir(os.fsencode(dest))) == [b"caf\xe9 \n\x01", b"l\xff"]
    assert os.readlink(os.fsencode(dest) + b"/l\xff") == b"caf\xe9 \n\x01"


async def test_a_cancelled_sync_leaves_no_partial_files(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from dockyard.session import _receive

    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "big", os.urandom(8 << 20))
    writing = asyncio.Event()
    loop = asyncio.get_running_loop()
    original = _receive.Receiver.write

    def slow_write(self: _receive.Receiver, pieces: object) -> int:
        loop.call_soon_threadsafe(writing.set)
        import time

        time.sleep(0.05)
        return original(self, pieces)  # type: ignore[arg-type]

    monkeypatch.setattr(_receive.Receiver, "write", slow_write)
    async with harness.open(Session(directories={"context": src})) as handle:
        task = asyncio.create_task(sync(handle, dest))
        await writing.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # nothing half-written: the file is either complete or absent
        assert [p.name for p in dest.iterdir()] in ([], ["big"])
        if (dest / "big").exists():
            assert (dest / "big").read_bytes() == (src / "big").read_bytes()
        monkeypatch.setattr(_receive.Receiver, "write", original)
        await sync(handle, dest)  # the session is still usable
        assert snapshot(dest) == snapshot(src)
