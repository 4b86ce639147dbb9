"""The OCI executor: one bundle per process, run by crun or runc, torn down after.

Life of a run (``bundles/<id>/`` under the executor's directory, a tmpfs)::

    prepare (thread)   mount a tmpfs at the bundle, mount the root at rootfs/ (or use
                       a plain directory as it is), resolve the user, make cwd, mount
                       bind sources, write secrets, hosts, resolv.conf and config.json
                       and make the container's device cgroup (crun; see _devices)
    execute            <runtime> run (started inside that cgroup), stdout/stderr
                       streamed to the sink as they come; the container is announced
                       to this process's watchdog first, which kills it should this
                       process die (even by SIGKILL)
    teardown (thread)  delete the runtime's state, remove the device cgroup and the
                       mount-point stubs the runtime made in the root, unmount
                       everything under the bundle, delete the bundle

Teardown runs after success, failure and cancellation alike; cancellation first kills
the container (``kill KILL``, then ``delete --force``) and waits for the runtime to exit.
Should ``kill`` fail, hang (each call is limited to what is left of the grace time) or
not end the container within the grace time, the container's init is killed directly
and the runtime with it; a ``kill`` that failed is logged (logger ``dockyard.executor``)
and noted on the exception that ends the run. A ``delete`` that fails or hangs is an
error of the teardown (its mounts and bundle are still removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import DockyardError, ExecError, NotFoundError
from dockyard.core.fspath import clean_rel, mkdir_all_in_root, open_dir_in_root, resolve_in_root
from dockyard.snapshot import mount as snapmount
from dockyard.snapshot.types import Mount

from ._child import Child, in_thread, settle
from ._devices import (
    SPARE_SCRIPT_NAME,
    DeviceCgroups,
    DeviceMode,
    join_argv,
    rules_from_spec,
    spare_script,
)
from ._etc import hosts_file, resolv_conf
from ._runtime import Runtime, RuntimeKind, check_rlimits, host_capabilities, nofile_limit
from ._spares import SANDBOX_RULES, Spare, Spares
from ._spec import SpecMount, build_spec, default_mounts
from ._users import read_in_root, resolve_user
from ._watchdog import watchdog
from .types import (
    BindMount,
    ExecMount,
    OutputSink,
    ProcessSpec,
    SecretMount,
    SecurityMode,
    SshMount,
    Stdio,
    TmpfsMount,
)

if TYPE_CHECKING:
    from . import _console

__all__ = ["OciExecutor"]

_BUNDLE_TMPFS = Mount(
    type="tmpfs",
    source="dockyard-bundle",
    options=("nosuid", "nodev", "noexec", "mode=0700", "size=64m"),
)
_KILL_GRACE = 2.0  # seconds of `kill` retries before the runtime process itself is killed
_KILL_MIN_TIME = 0.2  # the least time a `kill` call is given
_log = logging.getLogger("dockyard.executor")


@dataclass(slots=True)
class _Stubs:
    """Mount points the runtime may have to create in the root (not there before)."""

    paths: list[str] = field(default_factory=list)
    parent_times: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Sandbox:
    """What one run made; teardown undoes exactly this."""

    id: str
    bundle: Path
    rootfs: Path | None = None  # where the root is visible on the host while running
    mounted: list[Path] = field(default_factory=list)  # mount points, in mount order
    stubs: _Stubs = field(default_factory=lambda: _Stubs())
    log: Path = Path()
    pid_file: Path = Path()
    cgroup: Path | None = None  # the device cgroup the runtime starts in
    spare: Spare | None = None  # a process already in that cgroup, to start the runtime


class OciExecutor:
    """:class:`~dockyard.executor.types.Executor` over crun (default) or runc.

    ``root_dir`` belongs to this executor alone (e.g. ``<state dir>/executor``); bundles
    and the runtime's state (``--root``) live under it. ``runtime`` is ``"crun"`` or
    ``"runc"``; ``binary`` overrides the runtime's path.
    """

    def __init__(self, root_dir: Path, *, runtime: str = "crun", binary: str | None = None) -> None:
        kind = RuntimeKind.parse(runtime)
        self._root_dir = root_dir
        self._bundles = root_dir / "bundles"
        self._bundles.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._runtime = Runtime.create(kind, root_dir / "runtime" / kind.value, binary=binary)
        self._caps = host_capabilities()
        self._nofile = nofile_limit()
        # runc enforces the spec's device rules in its own cgroup; crun runs without
        # cgroups, so the executor puts it in one (found on the first run: no I/O here)
        self._devices = DeviceCgroups(root_dir, runtime_managed=kind is RuntimeKind.RUNC)
        self._sh = shutil.which("sh") or "/bin/sh"
        # entering a cgroup costs an RCU grace period (5-12 ms): a spare enters the
        # next container's cgroup while the current one runs (see _spares)
        self._spares = Spares(self._runtime, self._devices, self._sh)
        weakref.finalize(self, self._spares.release)

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def devices(self) -> DeviceCgroups:
        """How the device rules of the executor's containers are enforced."""
        return self._devices

    def close(self) -> None:
        """End the spare process waiting for the next container, and wait for it to
        remove its cgroup. Optional: an unused spare also goes when the executor is
        collected or this process exits. Blocking."""
        self._spares.close()

    def reap_stale(self) -> int:
        """Remove what an earlier process left behind when it died mid-run: containers
        in the runtime's state (killed), mounts and bundles. Blocking.

        Only call it while holding the state directory's lock, before any run: another
        executor on the same directory would lose its sandboxes. Returns the number of
        bundles removed.
        """
        if self._runtime.state_dir.is_dir():
            for entry in self._runtime.state_dir.iterdir():
                try:
                    self._runtime.delete(entry.name)
                except DockyardError as exc:
                    # its state is gone all the same: the next start does not try again
                    _log.warning("removing stale container %s: %s", entry.name, exc)
        self._devices.reap()  # (their containers are gone now)
        removed = 0
        for bundle in self._bundles.iterdir():
            for mountpoint in reversed(snapmount.mountpoints_under(bundle)):
                with contextlib.suppress(snapmount.MountError):
                    snapmount.unmount(mountpoint, detach=True)
            if not snapmount.mountpoints_under(bundle):
                shutil.rmtree(bundle, ignore_errors=True)
                removed += 1
        return removed

    async def run(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        output: OutputSink | None = None,
    ) -> int:
        return await self._in_sandbox(root, mounts, process, output=output)

    async def run_interactive(
        self,
        *,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount] = (),
        process: ProcessSpec,
        stdio: Stdio,
    ) -> int:
        """:class:`~dockyard.executor.types.InteractiveExecutor`: ``process`` on the
        user's streams (a pty through the console socket when ``stdio`` asks for a
        terminal), in a sandbox made and torn down as :meth:`run`'s."""
        terminal = stdio.uses_terminal()
        if terminal and self._runtime.kind is not RuntimeKind.CRUN:
            # runc takes a console socket only when it detaches (it would not be our
            # child to wait for); in the foreground it proxies its own stdio, which is
            # not the user's terminal here
            raise ExecError(
                f"an interactive terminal needs the crun runtime ({self._runtime.name} runs"
                " one only detached); use --runtime crun, or give the command's input on"
                " a pipe (no terminal)"
            )
        return await self._in_sandbox(root, mounts, process, stdio=stdio, terminal=terminal)

    async def _in_sandbox(
        self,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount],
        process: ProcessSpec,
        *,
        output: OutputSink | None = None,
        stdio: Stdio | None = None,
        terminal: bool = False,
    ) -> int:
        """Make a sandbox, run ``process`` in it to its end (see :meth:`_execute`) and
        tear it down, whatever happened."""
        spare = None
        if stdio is None and process.security is SecurityMode.SANDBOX and not process.cdi_edits:
            spare = self._spares.take()  # (its cgroup has these rules)
        container_id = spare.id if spare is not None else "dy-" + secrets.token_hex(8)
        sandbox = _Sandbox(id=container_id, bundle=self._bundles / container_id, spare=spare)
        if spare is not None:
            sandbox.cgroup = spare.cgroup
        try:
            await in_thread(self._prepare, sandbox, root, mounts, process, terminal)
            status = await self._execute(sandbox, process, output, stdio=stdio, terminal=terminal)
        except BaseException as exc:
            try:
                await in_thread(self._teardown, sandbox)
            except DockyardError as cleanup:
                # the first error is what the user needs; the cleanup failure rides along
                exc.add_note(f"and then: {cleanup}")
            raise
        await in_thread(self._teardown, sandbox)
        return status

    # -- prepare ------------------------------------------------------------------------

    def _prepare(
        self,
        sb: _Sandbox,
        root: Sequence[Mount],
        mounts: Sequence[ExecMount],
        process: ProcessSpec,
        terminal: bool,
    ) -> None:
        self._check_process(process)
        nodev = self._no_device_cgroup(process)
        sb.bundle.mkdir(mode=0o700)
        # the whole bundle lives in memory: config.json (its env may carry secrets),
        # secret files, hosts and the runtime's log never touch a disk
        snapmount.mount_all([_BUNDLE_TMPFS], sb.bundle)
        sb.mounted.append(sb.bundle)
        sb.log = sb.bundle / "runtime.log"
        sb.pid_file = sb.bundle / "pid"
        if not root:
            raise DockyardError("no root filesystem given to run a process on")
        rootfs, root_ro = self._mount_root(sb, root, nodev=nodev)
        sb.rootfs = rootfs

        passwd = read_in_root(rootfs, "/etc/passwd")
        group = read_in_root(rootfs, "/etc/group")
        user = resolve_user(process.user, passwd, group)
        if not root_ro:
            try:
                mkdir_all_in_root(rootfs, process.cwd)
            except DockyardError as exc:
                raise DockyardError(
                    f"cannot create working directory {process.cwd}: {exc.message}"
                ) from exc

        spec_mounts: list[SpecMount] = []
        for i, m in enumerate(mounts):
            spec_mount = self._spec_mount(sb, i, m)
            if nodev and "nodev" not in spec_mount.options:
                spec_mount = replace(spec_mount, options=(*spec_mount.options, "nodev"))
            spec_mounts.append(spec_mount)

        (sb.bundle / "hosts").write_bytes(hosts_file(process.hostname, process.extra_hosts))
        (sb.bundle / "resolv.conf").write_bytes(resolv_conf(process.network))
        etc_opts = ("rbind", "ro", "nosuid", "nodev", "noexec")
        spec_mounts.append(
            SpecMount(
                dest="/etc/hosts", type="bind", source=str(sb.bundle / "hosts"), options=etc_opts
            )
        )
        spec_mounts.append(
            SpecMount(
                dest="/etc/resolv.conf",
                type="bind",
                source=str(sb.bundle / "resolv.conf"),
                options=etc_opts,
            )
        )
        dests = [m.dest for m in default_mounts(process.security)] + [m.dest for m in spec_mounts]
        if process.cdi_edits:
            from .cdi import destinations

            dests += destinations(process.cdi_edits)
        sb.stubs = _missing_paths(rootfs, dests)

        spec = build_spec(
            process=process,
            user=user,
            root_path=str(rootfs),
            root_readonly=root_ro,
            mounts=spec_mounts,
            host_capabilities=(
                tuple(c for c in self._caps if c != "CAP_MKNOD") if nodev else self._caps
            ),
            nofile=self._nofile,
            precompiled_seccomp=self._runtime.precompiled_seccomp,
            terminal=terminal,
        )
        if process.security is SecurityMode.INSECURE:
            from ._privileged import privileged_devices  # BuildKit's insecure /dev nodes

            spec["linux"]["devices"] = privileged_devices()
        if process.cdi_edits:
            from .cdi import apply_edits  # only for a process that asks for devices

            apply_edits(spec, process.cdi_edits)
        if process.cgroup_parent:
            # BuildKit's /PARENT/buildkit/<id>: runc makes it in every hierarchy
            parent = process.cgroup_parent.strip("/")
            spec["linux"]["cgroupsPath"] = f"/{parent}/dockyard/{sb.id}".replace("//", "/")
        with open(sb.bundle / "config.json", "w", encoding="utf-8") as f:
            json.dump(spec, f)
        # last: the rules include those of the CDI devices
        rules = rules_from_spec(spec)
        if sb.spare is not None:
            if rules == SANDBOX_RULES and "\n" not in str(sb.bundle):
                script = spare_script(self._run_argv(sb, None))
                (sb.bundle / SPARE_SCRIPT_NAME).write_text(script)
                return
            spare, sb.spare = sb.spare, None  # (not expected: its rules are these)
            self._spares.discard(spare)
            sb.cgroup = None
        sb.cgroup = self._devices.create(sb.id, rules)

    def _check_process(self, process: ProcessSpec) -> None:
        """What the runtime could not do, refused before anything is made."""
        if process.cgroup_parent and self._runtime.kind is RuntimeKind.CRUN:
            raise ExecError(
                f"cgroup parent {process.cgroup_parent!r}: the crun executor runs without"
                " a cgroup manager (--cgroup-manager=disabled; on a hybrid cgroup v1/v2"
                " host crun only starts with the v2 hierarchy hidden, and cannot make"
                " cgroups then);"
                " use the runc runtime (--runtime runc) to place RUN steps in a cgroup"
            )
        if process.cgroup_parent and ":" in process.cgroup_parent:
            raise ExecError(
                f"cgroup parent {process.cgroup_parent!r}: a systemd slice (SLICE:PREFIX:)"
                " needs runc's systemd cgroup driver; Dockyard runs runc with cgroupfs"
                " (give a cgroup path, e.g. /builds)"
            )
        check_rlimits(process.rlimits)

    def _no_device_cgroup(self, process: ProcessSpec) -> bool:
        """Whether the sandboxed ``process`` must do without a device cgroup (the host
        has none): it then gets nodev mounts and no ``CAP_MKNOD``. Refused under crun,
        which clears ``nodev`` on the root it binds (device nodes of the image would
        stay openable). Blocking (finds the host's mechanism once)."""
        if process.security is not SecurityMode.SANDBOX:
            return False
        if self._devices.mode() is not DeviceMode.NODEV:
            return False
        if self._runtime.kind is RuntimeKind.CRUN:
            raise ExecError(
                "this host has no usable device cgroup (no cgroup v1 devices controller,"
                " no writable cgroup v2 hierarchy with BPF), and crun cannot keep a build"
                " step from opening device nodes without one; mount the devices"
                " controller or a writable cgroup2, use the runc runtime (--runtime runc:"
                " steps then run with nodev mounts and without CAP_MKNOD), or run the"
                " step with security=insecure"
            )
        return True

    def _mount_root(
        self, sb: _Sandbox, root: Sequence[Mount], *, nodev: bool = False
    ) -> tuple[Path, bool]:
        if len(root) == 1 and root[0].type == "bind":
            # a plain directory (native snapshotter): the runtime binds it itself
            path = Path(root[0].source)
            if not path.is_dir():
                raise NotFoundError(f"root filesystem {path} is not a directory")
            if not nodev:
                return path, root[0].readonly
            # nodev is a flag of a mount: bind it here with the flag
            opts = ("rbind", "nodev") + (("ro",) if root[0].readonly else ())
            root = [Mount(type="bind", source=str(path), options=opts)]
        elif nodev:
            root = [replace(m, options=(*m.options, "nodev")) for m in root]
        target = sb.bundle / "rootfs"
        target.mkdir()
        snapmount.mount_all(root, target)
        sb.mounted.append(target)
        readonly = all(m.readonly for m in root) or all(
            m.type == "overlay" and not any(o.startswith("upperdir=") for o in m.options)
            for m in root
        )
        return target, readonly

    def _spec_mount(self, sb: _Sandbox, index: int, m: ExecMount) -> SpecMount:
        if isinstance(m, BindMount):
            return self._bind(sb, index, m)
        if isinstance(m, TmpfsMount):
            # BuildKit's tmpfs mount options: nosuid (and the size), no nodev
            opts = ("nosuid", "mode=1777") + ((f"size={m.size}",) if m.size else ())
            return SpecMount(dest=m.dest, type="tmpfs", source="tmpfs", options=opts)
        if isinstance(m, SecretMount):
            path = self._write_secret(sb, index, m)
            return SpecMount(
                dest=m.dest,
                type="bind",
                source=str(path),
                options=("rbind", "ro", "nosuid", "nodev", "noexec"),
            )
        if isinstance(m, SshMount):
            try:
                st = os.stat(m.socket)
            except OSError as exc:
                raise NotFoundError(
                    f"ssh agent socket {m.socket} for {m.dest}: {exc.strerror}"
                ) from exc
            if not stat.S_ISSOCK(st.st_mode):
                raise DockyardError(f"ssh agent socket {m.socket} for {m.dest} is not a socket")
            return SpecMount(
                dest=m.dest,
                type="bind",
                source=str(m.socket),
                options=("rbind", "nosuid", "nodev", "noexec"),
            )
        raise TypeError(f"unknown mount {m!r}")  # pragma: no cover

    def _bind(self, sb: _Sandbox, index: int, m: BindMount) -> SpecMount:
        if len(m.source) == 1 and m.source[0].type == "bind":
            base = Path(m.source[0].source)
            readonly = m.readonly or m.source[0].readonly
        else:
            base = sb.bundle / f"mnt{index}"
            base.mkdir()
            snapmount.mount_all(m.source, base)
            sb.mounted.append(base)
            readonly = m.readonly or all(s.readonly for s in m.source)
        if m.selector and clean_rel(m.selector) != ".":
            src = resolve_in_root(base, m.selector)
            if not os.path.lexists(src):
                raise NotFoundError(f"mount source path {m.selector!r} for {m.dest} does not exist")
        else:
            if not base.is_dir():
                raise NotFoundError(f"mount source {base} for {m.dest} does not exist")
            src = base
        opts = ("rbind", "ro" if readonly else "rw")
        return SpecMount(dest=m.dest, type="bind", source=str(src), options=opts)

    def _write_secret(self, sb: _Sandbox, index: int, m: SecretMount) -> Path:
        secrets_dir = sb.bundle / "secrets"
        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        path = secrets_dir / f"secret{index}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(m.data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode)
        finally:
            os.close(fd)
        return path

    # -- execute ------------------------------------------------------------------------

    async def _execute(
        self,
        sb: _Sandbox,
        process: ProcessSpec,
        output: OutputSink | None,
        *,
        stdio: Stdio | None = None,
        terminal: bool = False,
    ) -> int:
        """Run the container to its end: its output to ``output`` (a build step), or
        its streams the ``stdio`` given (an interactive process; with ``terminal`` a pty
        the runtime hands over its console socket, bridged to them)."""
        rt = self._runtime
        console = None
        if terminal:
            from ._console import ConsoleSocket  # only for an interactive process

            console = ConsoleSocket()
        try:
            argv = self._run_argv(sb, console.path if console is not None else None)
            if sb.cgroup is not None:
                # the runtime starts inside the device cgroup; its container inherits it
                argv = join_argv(self._sh, sb.cgroup, sb.log, argv)
            # an interactive process's runtime has the user's streams (its messages go
            # to its log); with a terminal the process's own are the pty's
            streams = None
            if stdio is not None:
                stdin = subprocess.DEVNULL if terminal else stdio.stdin
                streams = (stdin, stdio.stdout, stdio.stderr)
            loop = asyncio.get_running_loop()
            starting = loop.run_in_executor(
                None, functools.partial(_start, rt, sb.id, argv, streams, sb)
            )
            cancelled = await settle(starting)
            popen = starting.result()
            if stdio is None:
                self._spares.make_soon(loop)  # it enters its cgroup while this one runs
            child = Child(popen, output or _discard)
            try:
                try:
                    if cancelled:
                        raise asyncio.CancelledError
                    if console is not None:
                        assert stdio is not None
                        await _attach(console, child, stdio)
                    elif stdio is not None and stdio.started is not None:
                        stdio.started()  # the process reads its stdin pipe itself
                    await asyncio.wait([child.done])  # a cancellation raises here
                except BaseException as exc:
                    problem = await self._kill(sb, child)
                    if problem:
                        exc.add_note(problem)
                    raise
            finally:
                watchdog().unwatch(sb.id)  # the runtime exited
        finally:
            if console is not None:
                console.close()
        returncode = child.done.result()
        if returncode != 0:
            message = await in_thread(rt.runtime_error, sb.log)
            if message:
                raise ExecError(
                    f"{rt.name} could not run {list(process.args)!r}: {message}",
                    args=process.args,
                    exit_status=returncode,
                )
        return 128 - returncode if returncode < 0 else returncode

    async def _kill(self, sb: _Sandbox, child: Child) -> str:
        """Kill the container and wait for the runtime to exit; never cancelled itself,
        never raising. Returns what went wrong on the way ('' when nothing did), which
        is logged too."""
        rt = self._runtime
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _KILL_GRACE
        failure: BaseException | None = None
        forced = False
        while not child.exited:
            if not forced:
                limit = max(deadline - loop.time(), _KILL_MIN_TIME)
                # (a failure is reported when the last attempt failed)
                failure = await _runtime_kill(rt, sb.id, limit)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([child.done], timeout=0.05)
            if not child.exited and not forced and loop.time() > deadline:
                # the runtime is stuck (or never created the container): kill the
                # container's init, whose death ends every process of the pid namespace,
                # and the runtime itself
                _kill_pid_file(sb.pid_file)
                child.kill()
                forced = True
        # the runtime is gone; anything still holding its pipes is not ours to wait for
        child.close_pipes()
        await settle(child.done)
        if failure is None:
            return ""
        problem = f"killing container {sb.id}: {failure}"
        if forced:
            problem += f"; its init process and {rt.name} were killed directly instead"
        _log.warning("%s", problem)
        return problem

    def _run_argv(self, sb: _Sandbox, console_socket: Path | None) -> list[str]:
        return self._runtime.run_argv(
            sb.id, sb.bundle, pid_file=sb.pid_file, log=sb.log, console_socket=console_socket
        )

    # -- teardown -----------------------------------------------------------------------

    def _teardown(self, sb: _Sandbox) -> None:
        if sb.spare is not None and not sb.spare.started:
            # taken, but the runtime was never started through it
            spare, sb.spare = sb.spare, None
            self._spares.discard(spare)
        errors: list[str] = []
        try:
            self._runtime.delete(sb.id)
        except DockyardError as exc:  # (its state is gone all the same)
            errors.append(str(exc))
        if sb.cgroup is not None:
            self._devices.remove(sb.cgroup)  # the container is gone
        self._teardown_files(sb, errors)

    def _teardown_files(self, sb: _Sandbox, errors: list[str]) -> None:
        if sb.rootfs is not None and sb.stubs.paths:
            try:
                _remove_stubs(sb.rootfs, sb.stubs)
            except (OSError, DockyardError) as exc:
                errors.append(f"removing mount stubs: {exc}")
        for target in reversed(sb.mounted):
            try:
                snapmount.unmount(target)
            except snapmount.MountError:
                try:
                    snapmount.unmount(target, detach=True)
                except snapmount.MountError as exc:
                    errors.append(str(exc))
        if sb.bundle.exists():
            leftover = snapmount.mountpoints_under(sb.bundle)
            if leftover:
                errors.append(f"still mounted: {', '.join(map(str, leftover))}")
            else:
                # normally empty (its tmpfs is gone); files only if that mount failed
                shutil.rmtree(sb.bundle, ignore_errors=True)
        if errors:
            raise DockyardError(f"cleaning up sandbox {sb.id}: {'; '.join(errors)}")


def _discard(stream: int, data: bytes) -> None:
    return None


async def _attach(console: _console.ConsoleSocket, child: Child, stdio: Stdio) -> None:
    """Receive the container's pty and bridge it to the user's terminal (in raw mode)
    until the runtime exits; the terminal is restored before this returns or raises."""
    from ._console import PtyBridge, raw_terminal

    master = await console.receive(child.done)
    if master is None:
        return  # the runtime ended first (its error is in its log)
    bridge = PtyBridge(master, stdin=stdio.stdin, stdout=stdio.stdout, window=stdio.window)
    try:
        with raw_terminal(stdio.stdin):
            bridge.start()
            if stdio.started is not None:
                stdio.started()
            await asyncio.wait([child.done])
            await bridge.drain()
    finally:
        bridge.close()


def _start(
    rt: Runtime,
    container_id: str,
    argv: list[str],
    stdio: tuple[int, int, int] | None = None,
    sb: _Sandbox | None = None,
) -> subprocess.Popen[bytes]:
    """Start the runtime for ``container_id`` (through the sandbox's spare when it has
    one: ``argv`` then only serves if the spare is gone), watched: should this process
    die before it exited, however it dies, the watchdog kills the container.
    Blocking."""
    guard = watchdog()
    guard.watch(container_id)  # before the start: no moment unwatched
    try:
        if sb is not None and sb.spare is not None:
            if sb.spare.start(sb.bundle):
                return sb.spare.popen
            # it is gone: start the runtime as usual (its cgroup is still there)
            _log.debug("the spare of %s is gone; starting %s directly", container_id, rt.name)
            sb.spare = None
        return rt.popen(argv, capture=True, stdio=stdio)
    except BaseException:
        guard.unwatch(container_id)
        raise


async def _runtime_kill(rt: Runtime, container_id: str, limit: float) -> BaseException | None:
    """``rt.kill`` in a thread, waited for to the end; what it raised (retrieved, never
    left for the garbage collector to report), ``None`` when it did not."""
    loop = asyncio.get_running_loop()
    try:
        killing = loop.run_in_executor(
            None, functools.partial(rt.kill, container_id, timeout=limit)
        )
    except Exception as exc:  # e.g. no thread could be started
        return exc
    await settle(killing)
    if killing.cancelled():  # (its executor was shut down)
        return None
    return killing.exception()


def _kill_pid_file(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if pid > 1:
            os.kill(pid, 9)


def _missing_paths(rootfs: Path, dests: Sequence[str]) -> _Stubs:
    """For each destination, the paths (shallowest first) that do not exist in the root,
    and the times of the existing directory the first of them would be made in.

    A symlink on the way stops the search: the runtime resolves it inside the root and
    whatever it creates there is not ours to remove.
    """
    out = _Stubs()
    for dest in dests:
        rel = clean_rel(dest)
        if rel == ".":
            continue
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                st = os.lstat(rootfs / sub)
            except FileNotFoundError:
                parent = "/".join(parts[: i - 1]) or "."
                if parent not in out.parent_times:
                    pst = os.lstat(rootfs / parent)
                    out.parent_times[parent] = (pst.st_atime_ns, pst.st_mtime_ns)
                for j in range(i, len(parts) + 1):
                    path = "/".join(parts[:j])
                    if path not in out.paths:
                        out.paths.append(path)
                break
            except OSError:
                break
            if stat.S_ISLNK(st.st_mode):
                break
    return out


def _is_node(mode: int) -> bool:
    """A device node or fifo: what the runtime makes for a CDI device node outside the
    sandbox's ``/dev`` tmpfs."""
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _remove_stubs(rootfs: Path, stubs: _Stubs) -> None:
    """Remove mount-point stubs the runtime made: empty files, device nodes and
    directories only, deepest first, each opened through directory fds inside the root.
    The directories they were made in get their times back, so that they do not look
    changed."""
    for rel in sorted(stubs.paths, key=lambda p: p.count("/"), reverse=True):
        parent, _, name = rel.rpartition("/")
        try:
            dfd = open_dir_in_root(rootfs, parent or ".")
        except DockyardError:
            continue
        try:
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(OSError):  # not empty: the process put files there
                    os.rmdir(name, dir_fd=dfd)
            elif (stat.S_ISREG(st.st_mode) and st.st_size == 0) or _is_node(st.st_mode):
                os.unlink(name, dir_fd=dfd)
        finally:
            os.close(dfd)
    for parent, times in stubs.parent_times.items():
        try:
            fd = open_dir_in_root(rootfs, parent)
        except DockyardError:
            continue
        try:
            # only when changed: setting times on an overlay copies the directory up
            if os.fstat(fd).st_mtime_ns != times[1]:
                os.utime(f"/proc/self/fd/{fd}", ns=times)
        except OSError:
            pass
        finally:
            os.close(fd)
