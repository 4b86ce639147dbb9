"""Parsing /proc/<pid>/mountinfo text."""

from __future__ import annotations

from dockyard.snapshot.mount import MountInfo, parse_mountinfo

_TEXT = (
    "25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n"
    "31 25 0:27 / /sys/fs/cgroup/devices rw,nosuid - cgroup cgroup rw,devices\n"
    "40 25 0:30 /a\\040dir /mnt/with\\040space\\011tab rw shared:9 master:2 - tmpfs t rw,size=1k\n"
    "not a mountinfo line\n"
)


def test_entries_are_unescaped_with_their_super_block_options() -> None:
    assert parse_mountinfo(_TEXT) == [
        MountInfo(root="/", point="/", fstype="ext4", super_options=("rw", "discard")),
        MountInfo(
            root="/",
            point="/sys/fs/cgroup/devices",
            fstype="cgroup",
            super_options=("rw", "devices"),
        ),
        MountInfo(
            root="/a dir",
            point="/mnt/with space\ttab",
            fstype="tmpfs",
            super_options=("rw", "size=1k"),
        ),
    ]
