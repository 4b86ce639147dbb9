"""Device access of a sandboxed process: BuildKit's device cgroup policy on both runtimes.

A RUN step has docker's ``CAP_MKNOD``, so it can make any device node; what it may open
is the device cgroup's business: every block and character device may be made (``m``)
but only ``/dev/null``, ``zero``, ``full``, ``random``, ``urandom``, ``tty``, ``ptmx``,
the pseudo-terminals and ``/dev/net/tun`` opened (runc's default rules, which docker's
BuildKit gets), plus the CDI devices the step was granted. ``security=insecure`` opens
everything. A node from an image's layer, a bind mount (a build context, a cache mount)
or made by the step itself is refused alike ("Operation not permitted").

Block device 7:0 (``/dev/loop0``) is what the tests try to open: the host itself may open
it, and reading an unbound loop device reads nothing (no side effect).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core import ExecError
from dockyard.executor import BindMount, OciExecutor, SecurityMode
from dockyard.executor._devices import DeviceCgroups, DeviceMode, HostLayout
from dockyard.executor._spares import Spares
from dockyard.executor.cdi.types import ContainerEdits, DeviceNode
from dockyard.snapshot.types import Mount
from tests.integration.conftest import Overlay, need_tools, requirement_missing

from .test_executor import TIMEOUT, run

DENIED = "Operation not permitted"
LOOP = (7, 0)  # a block device the host can open (an unbound loop device reads nothing)
FUSE = (10, 229)  # a character device outside the allowed list

# crun in the host's device cgroup (v1 devices controller here, v2 on a pure v2 host),
# crun with the cgroup v2 BPF program forced (the unified hierarchy of a hybrid host
# enforces it too), and runc with its own device cgroup
VARIANTS = ["crun", "crun-bpf", "runc"]


@pytest.fixture(autouse=True)
def _host_devices() -> None:
    # the host must be able to open what the sandbox must not: otherwise a refusal
    # proves nothing
    for kind, (major, minor) in (("block", LOOP), ("char", FUSE)):
        path = Path(f"/sys/dev/{kind}/{major}:{minor}")
        assert path.exists(), f"this host has no {kind} device {major}:{minor} to test with"


def _leftovers(state: Path, devices: DeviceCgroups) -> list[str]:
    out: list[str] = []
    for sub in ("bundles", "runtime/crun", "runtime/runc"):
        d = state / sub
        if d.is_dir():
            out += [str(p) for p in d.iterdir()]
    base = devices.base
    if base is not None:
        out += [str(p) for p in base.glob(f"{devices.key}-*")]
    return out


def _executor(variant: str, state: Path) -> OciExecutor:
    runtime = variant.split("-")[0]
    need_tools(runtime)
    executor = OciExecutor(state, runtime=runtime)
    if variant == "crun-bpf":
        if HostLayout.current().unified is None:
            requirement_missing("no cgroup v2 hierarchy mounted (for the BPF device program)")
        _force(executor, DeviceCgroups(state, mode=DeviceMode.CGROUP_V2))
    return executor


def _force(executor: OciExecutor, devices: DeviceCgroups) -> None:
    executor._devices = devices
    executor._spares = Spares(executor.runtime, devices, executor._sh)


@pytest.fixture(params=VARIANTS)
def executor(
    request: pytest.FixtureRequest, tmp_path: Path, mountinfo_unchanged: None
) -> Iterator[OciExecutor]:
    """An executor of one variant; afterwards no bundle, runtime state, mount or device
    cgroup of the test may be left."""
    state = tmp_path / "state"
    executor = _executor(request.param, state)
    expected = {
        "crun": (DeviceMode.CGROUP_V1, DeviceMode.CGROUP_V2),
        "crun-bpf": (DeviceMode.CGROUP_V2,),
        "runc": (DeviceMode.RUNTIME,),
    }[request.param]
    assert executor.devices.mode() in expected
    yield executor
    executor.close()  # (the spare for a next container)
    assert _leftovers(state, executor.devices) == []


async def test_a_block_device_made_by_the_step_cannot_be_opened(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "mknod /disk b 7 0 && echo made && head -c1 /disk; echo status=$?",
    )
    assert rc == 0
    # making the node is allowed (as in BuildKit: mknod of any device), opening it is not
    assert out.stdout == b"made\nstatus=1\n"
    assert DENIED in out.stderr.decode()


async def test_a_char_device_outside_the_list_cannot_be_opened(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "mknod /fuse c 10 229 && echo made && true < /fuse; echo status=$?",
    )
    assert rc == 0
    assert out.stdout == b"made\nstatus=1\n"
    assert DENIED in out.stderr.decode()


async def test_allowed_devices_open_wherever_they_are_made(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    script = (
        "mknod /null c 1 3 && echo to-null > /null && echo null"
        " && mknod /zero c 1 5 && [ $(head -c4 /zero | wc -c) = 4 ] && echo zero"
        " && mknod /urandom c 1 9 && [ $(head -c4 /urandom | wc -c) = 4 ] && echo urandom"
        " && echo x > /dev/full; echo full=$?"
        " && head -c1 /dev/random > /dev/null && echo random"
    )
    rc, out = await run(executor, busybox_overlay.mounts, script)
    assert rc == 0, out.stderr
    assert out.stdout == b"null\nzero\nurandom\nfull=1\nrandom\n"
    # /dev/full refuses the write itself (ENOSPC), not the open
    assert b"No space left on device" in out.stderr
    assert DENIED.encode() not in out.stderr


async def test_a_device_node_in_an_image_layer_cannot_be_opened(
    executor: OciExecutor, busybox_rootfs: Path, tmp_path: Path
) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    os.mknod(layer / "disk", stat.S_IFBLK | 0o666, os.makedev(*LOOP))
    os.mknod(layer / "fuse", stat.S_IFCHR | 0o666, os.makedev(*FUSE))
    os.mknod(layer / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    root = Mount(
        type="overlay",
        source="overlay",
        options=(f"lowerdir={layer}:{busybox_rootfs}", f"upperdir={upper}", f"workdir={work}"),
    )
    rc, out = await run(
        executor,
        [root],
        "head -c1 /disk; echo disk=$?; true < /fuse; echo fuse=$?; echo x > /null; echo null=$?",
    )
    assert rc == 0
    assert out.stdout == b"disk=1\nfuse=1\nnull=0\n"
    assert out.stderr.decode().count(DENIED) == 2


async def test_a_device_node_in_a_bind_mount_cannot_be_opened(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    # a build context or a cache mount carrying a node (a remote client chooses its numbers)
    context = tmp_path / "context"
    context.mkdir()
    os.mknod(context / "disk", stat.S_IFBLK | 0o666, os.makedev(*LOOP))
    cache = tmp_path / "cache"
    cache.mkdir()
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "head -c1 /ctx/disk; echo ctx=$?; mknod /cache/disk b 7 0 && head -c1 /cache/disk;"
        " echo cache=$?",
        mounts=[
            BindMount.directory("/ctx", context, readonly=True),
            BindMount.directory("/cache", cache),
        ],
    )
    assert rc == 0
    assert out.stdout == b"ctx=1\ncache=1\n"
    assert out.stderr.decode().count(DENIED) == 2


async def test_insecure_opens_every_device(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "mknod /disk b 7 0 && head -c1 /disk && echo disk && mknod /fuse c 10 229"
        " && exec 3</fuse && echo fuse",
        security=SecurityMode.INSECURE,
    )
    assert rc == 0, out.stderr
    assert out.stdout == b"disk\nfuse\n"


async def test_insecure_steps_get_buildkits_privileged_device_nodes(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    """As BuildKit's insecure spec: kmsg, cuse, fuse, kvm, net/tun, loop-control and
    the loop devices up to seven past the first free one exist, 0666 and root's; a
    sandboxed step has none of them."""
    from dockyard.executor._privileged import PRIVILEGED_NODES, first_free_loop

    script = "for d in /dev/kmsg /dev/cuse /dev/fuse /dev/kvm /dev/net/tun /dev/loop-control"
    script += " /dev/loop*; do [ -e $d ] && stat -c '%n %F %t:%T %a %u:%g' $d; done; true"
    rc, out = await run(executor, busybox_overlay.mounts, script, security=SecurityMode.INSECURE)
    assert rc == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    for path, major, minor in PRIVILEGED_NODES:
        assert f"{path} character special file {major:x}:{minor:x} 666 0:0" in lines
    loops = [line for line in lines if line.startswith("/dev/loop") and "block" in line]
    free = first_free_loop()
    assert len(loops) == (free or 0) + 8
    assert "/dev/loop0 block special file 7:0 666 0:0" in loops
    # the loop control device answers (it exists on this host kind)
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "exec 3<>/dev/loop-control && echo opened",
        security=SecurityMode.INSECURE,
    )
    assert (rc, out.stdout) == (0, b"opened\n"), out.stderr
    rc, out = await run(executor, busybox_overlay.mounts, script)
    assert rc == 0, out.stderr
    assert out.stdout == b""


async def test_a_granted_cdi_device_opens_and_others_do_not(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    edits = ContainerEdits(
        origin="test.example/loop=0",
        device_nodes=(DeviceNode(path="/dev/loop0", type="b", major=7, minor=0),),
    )
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "head -c1 /dev/loop0 && echo loop0; mknod /loop1 b 7 1 && head -c1 /loop1; echo loop1=$?",
        cdi_edits=(edits,),
    )
    assert rc == 0, out.stderr
    assert out.stdout == b"loop0\nloop1=1\n"
    assert DENIED in out.stderr.decode()


async def test_a_cdi_device_read_only_cannot_be_written(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    edits = ContainerEdits(
        origin="test.example/loop=ro",
        device_nodes=(DeviceNode(path="/dev/loop0", type="b", major=7, minor=0, permissions="r"),),
    )
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "head -c1 /dev/loop0 && echo read; true > /dev/loop0; echo write=$?",
        cdi_edits=(edits,),
    )
    assert rc == 0, out.stderr
    assert out.stdout == b"read\nwrite=1\n"
    assert DENIED in out.stderr.decode()


async def test_the_container_runs_in_its_own_device_cgroup(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, out = await run(executor, busybox_overlay.mounts, "cat /proc/self/cgroup")
    assert rc == 0
    mode = executor.devices.mode()
    if mode is DeviceMode.RUNTIME:
        return  # runc's own cgroup
    controller = "devices" if mode is DeviceMode.CGROUP_V1 else ""
    (line,) = [entry for entry in out.text.splitlines() if entry.split(":")[1] == controller]
    # dockyard/<key>-<container id> under the cgroup this process lives in
    assert f"/dockyard/{executor.devices.key}-dy-" in line


async def test_leftover_cgroups_are_reaped(tmp_path: Path, mountinfo_unchanged: None) -> None:
    state = tmp_path / "state"
    executor = _executor("crun", state)
    base = executor.devices.base
    assert base is not None
    stale = base / f"{executor.devices.key}-dy-0123456789abcdef"
    stale.mkdir()
    other = base / "0000000000000000-dy-0123456789abcdef"  # another state directory's
    other.mkdir()
    try:
        executor.reap_stale()
        assert not stale.exists()
        assert other.exists()
    finally:
        for d in (stale, other):
            if d.exists():
                d.rmdir()


# -- no device cgroup at all ---------------------------------------------------------------


def _without_cgroup(runtime: str, state: Path) -> OciExecutor:
    need_tools(runtime)
    executor = OciExecutor(state, runtime=runtime)
    _force(executor, DeviceCgroups(state, mode=DeviceMode.NODEV))
    return executor


async def test_without_a_device_cgroup_runc_steps_get_nodev_and_no_mknod(
    busybox_rootfs: Path, tmp_path: Path, mountinfo_unchanged: None
) -> None:
    executor = _without_cgroup("runc", tmp_path / "state")
    layer = tmp_path / "layer"
    layer.mkdir()
    os.mknod(layer / "disk", stat.S_IFBLK | 0o666, os.makedev(*LOOP))
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    root = Mount(
        type="overlay",
        source="overlay",
        options=(f"lowerdir={layer}:{busybox_rootfs}", f"upperdir={upper}", f"workdir={work}"),
    )
    context = tmp_path / "context"
    context.mkdir()
    os.mknod(context / "disk", stat.S_IFBLK | 0o666, os.makedev(*LOOP))
    rc, out = await run(
        executor,
        [root],
        "mknod /made b 7 0; echo mknod=$?; head -c1 /disk; echo layer=$?;"
        " head -c1 /ctx/disk; echo ctx=$?; echo x > /dev/null && echo null;"
        " head -c1 /dev/zero | wc -c",
        mounts=[BindMount.directory("/ctx", context)],
    )
    assert rc == 0, out.stderr
    assert out.stdout == b"mknod=1\nlayer=1\nctx=1\nnull\n1\n"
    assert out.stderr.decode().count("Permission denied") == 2  # nodev refuses the open
    assert DENIED in out.stderr.decode()  # no CAP_MKNOD


async def test_without_a_device_cgroup_crun_refuses_sandboxed_steps(
    busybox_overlay: Overlay, tmp_path: Path, mountinfo_unchanged: None
) -> None:
    executor = _without_cgroup("crun", tmp_path / "state")
    with pytest.raises(ExecError, match="no usable device cgroup"):
        await run(executor, busybox_overlay.mounts, "true")
    # an insecure step opens every device anyway
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "mknod /disk b 7 0 && head -c1 /disk && echo disk",
        security=SecurityMode.INSECURE,
    )
    assert rc == 0, out.stderr
    assert out.stdout == b"disk\n"
    assert _leftovers(tmp_path / "state", executor.devices) == []


async def _spare_ready(executor: OciExecutor) -> str:
    """The container id of the executor's spare, once it is ready (the deadline only
    guards against a hang: a spare is a process started in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while loop.time() < deadline:
        spare = executor._spares._spare
        if spare is not None:
            return spare.id
        await asyncio.sleep(0.005)
    raise AssertionError("no spare was made")


async def test_later_steps_start_through_a_spare_in_their_cgroup(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    script = "grep -E ':devices:|^0::' /proc/self/cgroup; rm -f /d; mknod /d b 7 0 && head -c1 /d"
    rc, first = await run(executor, busybox_overlay.mounts, script)
    assert rc == 1
    assert DENIED in first.stderr.decode()
    if executor.devices.mode() is DeviceMode.RUNTIME:
        assert executor._spares._spare is None  # runc needs none
        return
    controller = "devices" if executor.devices.mode() is DeviceMode.CGROUP_V1 else ""
    seen = set()
    for _ in range(3):
        spare_id = await _spare_ready(executor)
        rc, out = await run(executor, busybox_overlay.mounts, script)
        assert rc == 1
        assert DENIED in out.stderr.decode()  # the spare's cgroup has the sandbox's rules
        (line,) = [e for e in out.text.splitlines() if e.split(":")[1] == controller]
        # the container ran in the spare's cgroup, made for it ahead of time
        assert line.endswith(f"/dockyard/{executor.devices.key}-{spare_id}"), out.text
        seen.add(spare_id)
    assert len(seen) == 3


@pytest.mark.parametrize("variant", ["crun", "crun-bpf"])
async def test_a_spare_that_died_is_not_used(
    variant: str, busybox_overlay: Overlay, tmp_path: Path, mountinfo_unchanged: None
) -> None:
    executor = _executor(variant, tmp_path / "state")
    await run(executor, busybox_overlay.mounts, "true")
    await _spare_ready(executor)
    spare = executor._spares._spare
    assert spare is not None
    os.killpg(spare.popen.pid, signal.SIGKILL)
    spare.popen.wait()
    rc, out = await run(executor, busybox_overlay.mounts, "rm -f /d; mknod /d b 7 0 && head -c1 /d")
    assert rc == 1
    assert DENIED in out.stderr.decode()
    assert not spare.cgroup.exists()  # removed in its place
    executor.close()
    assert _leftovers(tmp_path / "state", executor.devices) == []


def _gone(cgroup: Path, pid: int) -> bool:
    return not cgroup.exists() and not Path(f"/proc/{pid}").exists()


async def test_an_unused_spare_goes_with_its_executor(
    busybox_overlay: Overlay, tmp_path: Path, mountinfo_unchanged: None
) -> None:
    executor = _executor("crun", tmp_path / "state")
    await run(executor, busybox_overlay.mounts, "true")
    await _spare_ready(executor)
    spare = executor._spares._spare
    assert spare is not None
    pid, cgroup = spare.popen.pid, spare.cgroup
    assert cgroup.is_dir()
    del executor, spare
    gc.collect()
    # told to go when collected: it leaves its cgroup and removes it
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while loop.time() < deadline:
        if _gone(cgroup, pid):
            break
        await asyncio.sleep(0.005)
    assert not cgroup.exists()
