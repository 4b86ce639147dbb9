"""Device nodes in builds through a real ``dockyardd`` (crun) cannot be opened by RUN
steps: a client's context carrying a node is refused by the file sync, and a node a
step makes — opened by a later step from the image, from a cache mount, or by the step
itself — is refused by the device cgroup ("Operation not permitted"), as docker's
BuildKit refuses it, while ``/dev/null`` made by a step opens. (Block device 7:0, an
unbound loop device, reads nothing on the host; 10:229 is /dev/fuse.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.core import SessionError

from .conftest import DaemonProcess

DOCKERFILE = """\
FROM busybox
RUN mkdir /nodes && mknod /nodes/disk b 7 0 && mknod /nodes/fuse c 10 229\
 && mknod /nodes/null c 1 3
RUN --mount=type=cache,target=/cache mknod /cache/disk b 7 0
RUN --mount=type=cache,target=/cache (head -c1 /nodes/disk; echo layer=$?;\
 true < /nodes/fuse; echo fuse=$?; head -c1 /cache/disk; echo cache=$?;\
 mknod /made b 7 0 && head -c1 /made; echo made=$?;\
 echo x > /nodes/null; echo null=$?) > /report 2>&1
FROM scratch
COPY --from=0 /report /
"""


async def test_device_nodes_made_in_a_build_cannot_be_opened(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    async with running.client() as client:
        await client.build(ctx, out=tmp_path / "out")
    report = (tmp_path / "out" / "report").read_text().splitlines()
    statuses = [line for line in report if "=" in line]
    assert statuses == ["layer=1", "fuse=1", "cache=1", "made=1", "null=0"], report
    refusals = [line for line in report if "=" not in line]
    assert len(refusals) == 4, report
    assert all(line.endswith("Operation not permitted") for line in refusals), report


async def test_a_context_with_a_device_node_is_refused(
    running: DaemonProcess, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY disk /disk\nRUN head -c1 /disk\n")
    os.mknod(ctx / "disk", stat.S_IFBLK | 0o666, os.makedev(7, 0))
    async with running.client() as client:
        with pytest.raises(SessionError, match="device node 'disk' is not accepted"):
            await client.build(ctx)
