from __future__ import annotations

import dataclasses
import os

import pytest

from dockyard.api._gen import session_pb2 as pb
from dockyard.session._grpc_common import stat_from_pb, stat_to_pb, stats_from_pb
from dockyard.session._values import FileStat, stat_key


def test_filestat_is_a_frozen_value_with_defaults() -> None:
    entry = FileStat(path="a/b", mode=0o100644, size=3)
    assert (entry.uid, entry.gid, entry.mtime_ns, entry.linkname) == (0, 0, 0, "")
    assert (entry.devmajor, entry.devminor) == (0, 0)
    assert entry == FileStat(path="a/b", mode=0o100644, size=3)
    assert hash(entry) == hash(FileStat(path="a/b", mode=0o100644, size=3))
    assert entry != FileStat(path="a/b", mode=0o100644, size=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.size = 4  # type: ignore[misc]
    assert dataclasses.replace(entry, size=4).size == 4
    assert entry.is_regular
    assert not entry.is_dir
    assert not entry.is_hardlink
    with pytest.raises(TypeError):
        FileStat(path="a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        FileStat("a", 0o100644)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "entry",
    [
        FileStat(
            path="dir/f\udcff",  # a name that is not UTF-8 (surrogateescape)
            mode=0o100600,
            uid=1000,
            gid=1001,
            size=12,
            mtime_ns=1_700_000_000_123_456_789,
        ),
        FileStat(path="l", mode=0o120777, linkname="../t\udcfe"),
        FileStat(path="h", mode=0o100644, linkname="dir/f"),
        FileStat(path="d", mode=0o20660, devmajor=1, devminor=3),
    ],
)
def test_stat_survives_the_wire(entry: FileStat) -> None:
    message = stat_to_pb(entry)
    every_field = pb.Stat(
        path=os.fsencode(entry.path),
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        linkname=os.fsencode(entry.linkname),
        devmajor=entry.devmajor,
        devminor=entry.devminor,
    )
    assert message.SerializeToString() == every_field.SerializeToString()
    back = stat_from_pb(message)
    assert back == entry
    assert stat_key(back) == stat_key(entry)


def test_a_file_list_decodes_as_each_entry_does() -> None:
    entries = [
        FileStat(path="d", mode=0o40755, mtime_ns=5),
        FileStat(path="d/f", mode=0o100600, uid=7, gid=8, size=12, mtime_ns=6),
        FileStat(path="d/h", mode=0o100600, size=12, linkname="d/f"),
        FileStat(path="d/l", mode=0o120777, linkname="../x\udcff"),
        FileStat(path="d/n\udcfe", mode=0o20600, devmajor=1, devminor=3),
    ]
    frame = pb.Frame()
    for entry in entries:
        frame.stats.entries.append(stat_to_pb(entry))
    decoded = stats_from_pb(pb.Frame.FromString(frame.SerializeToString()).stats.entries)
    assert decoded == [stat_from_pb(m) for m in frame.stats.entries] == entries
    assert all(type(e) is FileStat for e in decoded)
