"""Ownership travels with the file sync when the receiver runs as root."""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.session import Session, SyncRequest
from tests.unit.session.harness import Harness
from tests.unit.session.trees import snapshot, write


async def test_owner_changes_travel_without_content(harness: Harness, tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write(src, "app/a.txt", "a")
    write(src, "app/b.txt", "b")
    os.symlink("a.txt", src / "app/link")
    os.chown(src / "app/a.txt", 1234, 5678)
    async with harness.open(Session(directories={"context": src})) as handle:
        first = await handle.filesync.sync(SyncRequest(name="context"), dest)
        assert first.files_transferred == 2
        assert snapshot(dest, owners=True) == snapshot(src, owners=True)
        assert (dest / "app/a.txt").stat().st_uid == 1234
        os.chown(src / "app/b.txt", 42, 43)
        os.lchown(src / "app/link", 7, 8)
        os.chown(src / "app", 100, 100)
        second = await handle.filesync.sync(SyncRequest(name="context"), dest)
        assert second.files_transferred == 0
        assert set(second.changed) == {"app", "app/b.txt", "app/link"}
        assert snapshot(dest, owners=True) == snapshot(src, owners=True)
        # setuid bits survive a chown (it is applied before the mode)
        os.chown(src / "app/a.txt", 0, 0)
        os.chmod(src / "app/a.txt", 0o4755)
        await handle.filesync.sync(SyncRequest(name="context"), dest)
        assert (dest / "app/a.txt").stat().st_mode & 0o7777 == 0o4755
        assert snapshot(dest, owners=True) == snapshot(src, owners=True)
