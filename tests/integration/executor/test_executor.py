from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from dockyard.core import ExecError, NotFoundError, PathEscapeError
from dockyard.executor import (
    BindMount,
    ExecMount,
    HostEntry,
    NetworkMode,
    OciExecutor,
    ProcessSpec,
    SecretMount,
    SecurityMode,
    SshMount,
    TmpfsMount,
)
from dockyard.snapshot import mount as snapmount
from dockyard.snapshot.types import Mount
from dockyard.testing.processes import processes_with
from tests.integration.conftest import Overlay

BOTH = pytest.mark.parametrize("runtime", ["crun", "runc"], indirect=True)
TIMEOUT = 60  # only guards against a hang; never a measurement


class Output:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []
        self.waiters: list[tuple[bytes, asyncio.Event]] = []

    def __call__(self, stream: int, data: bytes) -> None:
        self.chunks.append((stream, data))
        for needle, event in self.waiters:
            if needle in self.stdout:
                event.set()

    def stream(self, n: int) -> bytes:
        return b"".join(d for s, d in self.chunks if s == n)

    @property
    def stdout(self) -> bytes:
        return self.stream(1)

    @property
    def stderr(self) -> bytes:
        return self.stream(2)

    @property
    def text(self) -> str:
        return self.stdout.decode()

    def seen(self, needle: bytes) -> asyncio.Event:
        event = asyncio.Event()
        self.waiters.append((needle, event))
        if needle in self.stdout:
            event.set()
        return event


async def run(
    executor: OciExecutor,
    root: Sequence[Mount],
    script: str,
    *,
    mounts: Sequence[ExecMount] = (),
    **kw: object,
) -> tuple[int, Output]:
    out = Output()
    process = ProcessSpec(args=("/bin/sh", "-c", script), **kw)  # type: ignore[arg-type]
    rc = await asyncio.wait_for(
        executor.run(root=root, mounts=mounts, process=process, output=out), TIMEOUT
    )
    return rc, out


@BOTH
async def test_runs_and_captures_output(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(executor, busybox_overlay.mounts, "echo hello; echo oops >&2; echo world")
    assert rc == 0
    assert out.stdout == b"hello\nworld\n"
    assert out.stderr == b"oops\n"


@BOTH
async def test_writes_land_in_the_upper_dir(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, _ = await run(executor, busybox_overlay.mounts, "echo data > /result.txt; rm /bin/ls")
    assert rc == 0
    assert (busybox_overlay.upper / "result.txt").read_text() == "data\n"
    # a deletion is a whiteout in the upper dir; the lower dir is untouched
    assert stat.S_ISCHR((busybox_overlay.upper / "bin" / "ls").lstat().st_mode)
    assert (busybox_overlay.lower / "bin" / "ls").is_symlink()
    # the runtime's mount points and our generated files left nothing in the layer
    assert sorted(p.name for p in busybox_overlay.upper.iterdir()) == ["bin", "result.txt"]


@pytest.mark.parametrize(("script", "status"), [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)])
async def test_exit_status(
    executor: OciExecutor, busybox_overlay: Overlay, script: str, status: int
) -> None:
    rc, _ = await run(executor, busybox_overlay.mounts, script)
    assert rc == status


async def test_killed_by_signal(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    # pid 1 of a namespace ignores signals it has no handler for, so kill a child
    rc, _ = await run(executor, busybox_overlay.mounts, "sh -c 'kill -9 $$'; exit $?")
    assert rc == 137


async def test_output_is_streamed_while_running(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    out = Output()
    script = "echo ready; while [ ! -e /shared/go ]; do sleep 0.01; done; echo done"
    task = asyncio.create_task(
        executor.run(
            root=busybox_overlay.mounts,
            mounts=[BindMount.directory("/shared", shared)],
            process=ProcessSpec(args=("/bin/sh", "-c", script)),
            output=out,
        )
    )
    # the process only finishes after we saw its first line: output cannot be buffered
    await asyncio.wait_for(out.seen(b"ready\n").wait(), TIMEOUT)
    assert not task.done()
    (shared / "go").touch()
    assert await asyncio.wait_for(task, TIMEOUT) == 0
    assert out.stdout == b"ready\ndone\n"


async def test_env_cwd_defaults(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        'echo "$FOO|$PATH|$HOSTNAME|$HOME"; pwd',
        env=("FOO=bar baz",),
        cwd="/work/deep/dir",
    )
    assert rc == 0
    assert out.text.splitlines() == [
        "bar baz|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|dockyard|/root",
        "/work/deep/dir",
    ]
    # a missing cwd is made in the root (as docker does): part of the result
    assert (busybox_overlay.upper / "work" / "deep" / "dir").is_dir()


async def test_cwd_symlink_stays_inside_root(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), busybox_overlay.upper / "escape")
    rc, _ = await run(executor, busybox_overlay.mounts, "pwd", cwd="/escape/made")
    assert rc == 0
    assert list(outside.iterdir()) == []
    # the absolute link target was taken inside the root
    assert (busybox_overlay.upper / str(outside).lstrip("/") / "made").is_dir()


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", "uid=0(root) gid=0(root)"),
        ("app", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff)"),
        ("1000", "uid=1000(app) gid=1000(app) groups=10(wheel),50(staff)"),
        ("daemon", "uid=1(daemon) gid=1(daemon) groups=50(staff)"),
        ("app:staff", "uid=1000(app) gid=50(staff)"),
        ("1000:10", "uid=1000(app) gid=10(wheel)"),
        ("4242:4243", "uid=4242 gid=4243"),
        ("nobody", "uid=65534(nobody) gid=65534(nogroup)"),
    ],
)
async def test_users_and_groups(
    executor: OciExecutor, busybox_overlay: Overlay, user: str, expected: str
) -> None:
    rc, out = await run(executor, busybox_overlay.mounts, "id", user=user)
    assert rc == 0
    # busybox prints "groups=" only for supplementary groups
    line = out.text.strip()
    assert line == expected or line == expected + " groups=" + expected.split("gid=")[1]


async def test_user_home_and_writes(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor, busybox_overlay.mounts, 'echo "$HOME"; touch /tmp/mine; touch /etc/x', user="app"
    )
    assert rc != 0  # /etc is root's
    assert out.text.splitlines()[0] == "/home/app"
    st = (busybox_overlay.upper / "tmp" / "mine").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)


async def test_unknown_user(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    with pytest.raises(NotFoundError, match="ghost"):
        await run(executor, busybox_overlay.mounts, "id", user="ghost")


async def test_hostname_and_hosts(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "hostname; cat /etc/hosts; echo nope > /etc/hosts",
        hostname="builder",
        extra_hosts=(HostEntry(name="db", ip="10.1.2.3"), HostEntry(name="v6", ip="fd00::1")),
    )
    assert rc != 0  # /etc/hosts is read-only
    lines = out.text.splitlines()
    assert lines[0] == "builder"
    assert lines[1] == "127.0.0.1\tlocalhost builder"
    assert "10.1.2.3\tdb" in lines
    assert "fd00::1\tv6" in lines
    # the image's own (empty) file is untouched
    assert (busybox_overlay.lower / "etc" / "hosts").read_text() == ""
    assert not (busybox_overlay.upper / "etc").exists()


def _read(path: str) -> str:
    return Path(path).read_text()


def _files_containing(top: Path, needle: bytes) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
    return found


def _interfaces(proc_net_dev: str) -> list[str]:
    return sorted(line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:])


@BOTH
async def test_network_none_has_only_loopback(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "cat /proc/net/dev; echo ---; ip -o link; echo ---; cat /etc/resolv.conf",
        network=NetworkMode.NONE,
    )
    assert rc == 0
    dev, links, resolv = out.text.split("---\n")
    assert _interfaces(dev) == ["lo"]
    assert len(links.splitlines()) == 1
    assert "lo:" in links
    assert "UP" in links.split("<")[1].split(">")[0].split(",")
    assert "nameserver" not in resolv


async def test_network_host_shares_interfaces(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "cat /proc/net/dev; echo ---; cat /etc/resolv.conf",
        network=NetworkMode.HOST,
    )
    assert rc == 0
    dev, resolv = out.text.split("---\n")
    assert _interfaces(dev) == _interfaces(_read("/proc/net/dev"))
    assert resolv == _read("/etc/resolv.conf")


async def test_loopback_works_in_network_none(
    executor: OciExecutor, busybox_overlay: Overlay
) -> None:
    script = (
        "nc -l -p 5555 -e sh -c 'echo pong' & sleep 0.2;"
        " for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 5555 </dev/null && exit 0; sleep 0.1; done;"
        " exit 1"
    )
    rc, out = await run(executor, busybox_overlay.mounts, script, network=NetworkMode.NONE)
    assert rc == 0, out.stderr
    assert b"pong" in out.stdout


async def test_sandbox_confinement(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status;"
        " wc -c < /proc/keys; wc -c < /proc/timer_list;"
        " touch /proc/sys/kernel/hostname 2>/dev/null && echo sys-writable || echo sys-ro;"
        " mkdir /sys/x 2>/dev/null && echo sysfs-rw || echo sysfs-ro;"
        " echo $$; ls /dev",
    )
    assert rc == 0
    lines = out.text.splitlines()
    assert lines[0] == "CapEff:\t00000000a80425fb"  # docker's default set
    assert lines[1] == "NoNewPrivs:\t1"
    assert lines[2:4] == ["0", "0"]  # masked
    assert lines[4] == "sys-ro"
    assert lines[5] == "sysfs-ro"
    assert lines[6] == "1"  # own pid namespace
    devices = set(" ".join(lines[7:]).split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= devices
    assert "sda" not in devices
    assert "vda" not in devices


async def test_insecure_is_privileged(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; wc -c < /proc/timer_list;"
        " grep ' /sys ' /proc/self/mountinfo",
        security=SecurityMode.INSECURE,
    )
    assert rc == 0
    lines = out.text.splitlines()
    cap_eff = int(lines[0].split()[1], 16)
    cap_sys_admin = 1 << 21
    assert cap_eff & cap_sys_admin
    host_bnd = next(
        int(line.split()[1], 16)
        for line in _read("/proc/self/status").splitlines()
        if line.startswith("CapBnd:")
    )
    assert cap_eff == host_bnd & ((1 << 41) - 1)
    assert lines[1] == "NoNewPrivs:\t0"
    assert lines[2] != "0"  # not masked
    assert " rw," in lines[3] or " rw " in lines[3]


@BOTH
async def test_bind_mounts(executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "sub" / "file.txt").write_text("content\n")
    rw = tmp_path / "rw"
    rw.mkdir()
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "cat /ro/file.txt; ls /ro; (echo x > /ro/new) 2>/dev/null && echo writable || echo ro;"
        " echo written > /rw/out.txt; cat /single",
        mounts=[
            BindMount.directory("/ro", src, selector="sub", readonly=True),
            BindMount.directory("/rw", rw),
            BindMount.directory("/single", src, selector="/sub/file.txt", readonly=True),
        ],
    )
    assert rc == 0, out.stderr
    assert out.text.splitlines() == ["content", "deeper", "file.txt", "ro", "content"]
    assert not (src / "sub" / "new").exists()
    assert (rw / "out.txt").read_text() == "written\n"
    # mount points made for /ro, /rw, /single are gone from the result
    assert sorted(p.name for p in busybox_overlay.upper.iterdir()) == []


async def test_bind_selector_cannot_escape(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "key").write_text("host data")
    os.symlink(str(secret), src / "abs")
    os.symlink("../host-secret", src / "rel")
    for selector in ("abs", "rel", "../host-secret", "/../host-secret"):
        # a link is resolved inside the source (where nothing is); ".." is refused
        with pytest.raises((NotFoundError, PathEscapeError)):
            await run(
                executor,
                busybox_overlay.mounts,
                "cat /m/key",
                mounts=[BindMount.directory("/m", src, selector=selector, readonly=True)],
            )


async def test_bind_snapshot_overlay_source(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    lower1, lower2 = tmp_path / "l1", tmp_path / "l2"
    (lower1 / "dir").mkdir(parents=True)
    (lower2 / "dir").mkdir(parents=True)
    (lower1 / "dir" / "top").write_text("top\n")
    (lower2 / "dir" / "bottom").write_text("bottom\n")
    view = Mount(type="overlay", source="overlay", options=(f"lowerdir={lower1}:{lower2}",))
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "cat /v/top /v/bottom",
        mounts=[BindMount(dest="/v", source=(view,), selector="dir", readonly=True)],
    )
    assert rc == 0
    assert out.text == "top\nbottom\n"


async def test_tmpfs(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "echo scratch > /scratch/f; cat /scratch/f; grep ' /scratch ' /proc/self/mountinfo;"
        " df -k /scratch | tail -1",
        mounts=[TmpfsMount(dest="/scratch", size=2 << 20)],
    )
    assert rc == 0
    lines = out.text.splitlines()
    assert lines[0] == "scratch"
    assert " - tmpfs " in lines[1]
    # BuildKit mounts a RUN --mount=type=tmpfs nosuid only (a device node made there
    # opens, as in docker 20.10's BuildKit)
    assert lines[1].split()[5].split(",") == ["rw", "nosuid", "relatime"]
    assert lines[2].split()[1] == "2048"
    assert not (busybox_overlay.upper / "scratch").exists()


async def test_secret(executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path) -> None:
    token = uuid.uuid4().hex.encode()
    rc, out = await run(
        executor,
        busybox_overlay.mounts,
        "cat /run/secrets/token; echo; stat -c '%a %u %g' /run/secrets/token;"
        " grep ' /run/secrets/token ' /proc/self/mountinfo;"
        " (echo x > /run/secrets/token) 2>/dev/null && echo writable || echo ro",
        mounts=[SecretMount(dest="/run/secrets/token", data=token, mode=0o440, uid=1000, gid=50)],
    )
    assert rc == 0, out.stderr
    lines = out.text.splitlines()
    assert lines[0].encode() == token
    assert lines[1] == "440 1000 50"
    assert " - tmpfs " in lines[2]
    assert lines[3] == "ro"
    # never on disk: not in the result, not in the state dir, nowhere under the test's dir
    assert not (busybox_overlay.upper / "run" / "secrets").exists()
    assert _files_containing(tmp_path, token) == []


async def test_ssh_socket(executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path) -> None:
    sock_path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(sock_path))
        server.listen(1)
        rc, out = await run(
            executor,
            busybox_overlay.mounts,
            "test -S /run/ssh/agent.sock && echo socket",
            mounts=[SshMount(dest="/run/ssh/agent.sock", socket=sock_path)],
        )
    finally:
        server.close()
    assert rc == 0
    assert out.text == "socket\n"


async def test_command_not_found(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    with pytest.raises(ExecError, match="no-such-command") as info:
        await executor.run(
            root=busybox_overlay.mounts, process=ProcessSpec(args=("no-such-command",))
        )
    assert info.value.process_args == ("no-such-command",)


async def test_plain_directory_root(
    executor: OciExecutor, busybox_rootfs: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    rc = await asyncio.to_thread(os.system, f"cp -a {busybox_rootfs} {root}")
    assert rc == 0
    out = Output()
    status = await executor.run(
        root=[Mount(type="bind", source=str(root), options=("rbind",))],
        process=ProcessSpec(args=("/bin/sh", "-c", "echo hi > /made; cat /made")),
        output=out,
    )
    assert status == 0
    assert (root / "made").read_text() == "hi\n"


def _overlay(lower: Path, base: Path) -> tuple[Mount, ...]:
    upper, work = base / "upper", base / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    opts = (f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}")
    return (Mount(type="overlay", source="overlay", options=opts),)


async def test_concurrent_runs(executor: OciExecutor, busybox_rootfs: Path, tmp_path: Path) -> None:
    roots = [_overlay(busybox_rootfs, tmp_path / f"o{i}") for i in range(4)]
    results = await asyncio.gather(
        *(run(executor, roots[i], f"echo {i}; exit {i}") for i in range(4))
    )
    assert [(rc, out.text) for rc, out in results] == [(i, f"{i}\n") for i in range(4)]


@BOTH
async def test_cancel_kills_and_cleans_up(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    token = "dockyard-test-" + uuid.uuid4().hex
    out = Output()
    # $0 of both shells carries the token, so we can find them in /proc
    script = "sh -c 'while :; do sleep 1; done' inner-$0 & echo started; wait"
    task = asyncio.create_task(
        executor.run(
            root=busybox_overlay.mounts,
            mounts=[TmpfsMount(dest="/t"), SecretMount(dest="/s", data=b"x")],
            process=ProcessSpec(args=("/bin/sh", "-c", script, token)),
            output=out,
        )
    )
    await asyncio.wait_for(out.seen(b"started").wait(), TIMEOUT)
    assert len(processes_with(token)) >= 2  # (a fork may not have exec'd yet)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert processes_with(token) == []
    # the fixture checks mounts, bundles and the runtime's state dir


async def test_cancel_while_starting(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    token = "dockyard-test-" + uuid.uuid4().hex
    for delay in (0, 0.001, 0.003, 0.005, 0.01, 0.02):
        task = asyncio.create_task(
            executor.run(
                root=busybox_overlay.mounts,
                process=ProcessSpec(args=("/bin/sh", "-c", "while :; do sleep 1; done", token)),
            )
        )
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)
        assert processes_with(token) == []


async def test_failure_leaves_nothing(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        await executor.run(
            root=busybox_overlay.mounts,
            mounts=[
                SecretMount(dest="/s", data=b"x"),
                BindMount.directory("/m", tmp_path / "does-not-exist"),
            ],
            process=ProcessSpec(args=("true",)),
        )


async def test_reap_stale(executor: OciExecutor, tmp_path: Path) -> None:
    # what a killed process would leave: a bundle with a mount in it, runtime state
    state = tmp_path / "state"
    bundle = state / "bundles" / "dy-stale"
    (bundle / "secrets").mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    snapmount.mount_all([Mount(type="tmpfs", source="stale", options=())], bundle / "secrets")
    (executor.runtime.state_dir / "dy-stale").mkdir()
    assert await asyncio.to_thread(executor.reap_stale) == 1
    assert not bundle.exists()
    assert not (executor.runtime.state_dir / "dy-stale").exists()


async def test_bare_root_gets_no_mount_points_in_its_layer(
    executor: OciExecutor, busybox_rootfs: Path, tmp_path: Path
) -> None:
    # a root with nothing but a static busybox: the runtime must make /proc, /dev, /sys,
    # /etc/hosts... to mount on; none of them may stay in the result
    lower = tmp_path / "bare"
    (lower / "bin").mkdir(parents=True)
    await asyncio.to_thread(shutil.copy2, busybox_rootfs / "bin" / "busybox", lower / "bin")
    root = _overlay(lower, tmp_path / "o")
    out = Output()
    rc = await executor.run(
        root=root,
        mounts=[TmpfsMount(dest="/a/b/c"), SecretMount(dest="/run/secrets/x", data=b"s")],
        process=ProcessSpec(
            args=("/bin/busybox", "sh", "-c", "/bin/busybox cat /etc/hosts /run/secrets/x"),
            network=NetworkMode.NONE,
        ),
        output=out,
    )
    assert rc == 0, out.stderr
    assert out.stdout.endswith(b"s")
    assert sorted(os.listdir(tmp_path / "o" / "upper")) == []


async def test_command_found_on_path(executor: OciExecutor, busybox_overlay: Overlay) -> None:
    out = Output()
    rc = await executor.run(
        root=busybox_overlay.mounts,
        process=ProcessSpec(args=("echo", "found"), env=("PATH=/usr/bin:/bin",)),
        output=out,
    )
    assert rc == 0
    assert out.text == "found\n"


@BOTH
async def test_mount_destination_symlink_stays_inside_root(
    executor: OciExecutor, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), busybox_overlay.upper / "escape")
    try:
        rc, out = await run(
            executor,
            busybox_overlay.mounts,
            "echo in > /escape/t/file; cat /escape/t/file",
            mounts=[TmpfsMount(dest="/escape/t")],
        )
    except ExecError as exc:
        # crun resolves the link inside the root, finds no such directory there and
        # refuses; runc makes it inside the root. Either way the host is untouched.
        refused = str(exc)
        assert "escape" in refused
    else:
        assert rc == 0, out.stderr
        assert out.text == "in\n"
    assert list(outside.iterdir()) == []


async def test_hybrid_cgroup_fallback_without_unshare(
    monkeypatch: pytest.MonkeyPatch, busybox_overlay: Overlay, tmp_path: Path
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == "unshare" else real_which(name)
    )
    executor = OciExecutor(tmp_path / "state")
    assert executor.runtime._prefix == ()
    rc, out = await run(executor, busybox_overlay.mounts, "echo fallback")
    assert rc == 0
    assert out.text == "fallback\n"
