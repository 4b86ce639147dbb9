"""The builders under test, each a small set of commands: build, clear everything, push.

- ``dockyard-embedded``: ``dockyard build --state-dir DIR`` (the engine runs in the CLI
  process, as a user without a daemon runs it).
- ``dockyard-daemon``: ``dockyard build --addr unix://SOCK`` against a ``dockyardd`` the
  harness starts on its own socket and state directory.
- ``docker-buildkit``: Debian's ``/usr/bin/docker`` 20.10 with ``DOCKER_BUILDKIT=1``,
  i.e. the BuildKit embedded in dockerd 20.10 (v0.8.x), ``--network=host``.
- ``buildah``: ``buildah bud --layers --isolation=oci --runtime=runc --network=host``.
  runc, not crun: once dockerd has enabled ``hugetlb`` in the cgroup2 hierarchy's
  ``subtree_control`` on this hybrid-cgroup host, crun refuses to start containers
  ("cgroups in hybrid mode not supported"); runc is unaffected.

Dockyard runs RUN steps in the host's network namespace by default (BuildKit's default
without CNI), so it gets no ``--network`` flag. Every builder is quiet (``-q``): the
image ID is the only output, so no progress rendering is measured.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._proc import BenchError, Log, output, run

PYCACHE = Path("/var/tmp/dockyard-bench/pycache")
# Dockyard runs as an installed package would: with its bytecode cached (the development
# environment sets PYTHONDONTWRITEBYTECODE=1, which makes every process compile every
# module it imports); the cache lives outside the source tree.
DOCKYARD_ENV = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(PYCACHE)}
DOCKER = "/usr/bin/docker"
DOCKER_ENV = {"DOCKER_BUILDKIT": "1"}
TOOLS_DIR = Path(__file__).resolve().parents[3] / "shared" / "tools"

EMBEDDED = "dockyard-embedded"
DAEMON = "dockyard-daemon"
BUILDKIT = "docker-buildkit"
BUILDAH = "buildah"
ALL_BUILDERS = (EMBEDDED, DAEMON, BUILDKIT, BUILDAH)
DOCKYARD_BUILDERS = (EMBEDDED, DAEMON)
PEERS = (BUILDKIT, BUILDAH)


def venv_bin(name: str) -> str:
    """An executable of the virtualenv this harness runs in."""
    return str(Path(sys.executable).parent / name)


def _build_args(build_args: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in build_args.items():
        out += ["--build-arg", f"{key}={value}"]
    return out


@dataclass(slots=True, kw_only=True)
class Builder:
    """One builder: how to build, push and clear it. Subclasses fill the commands in."""

    name: str
    log: Log
    env: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    # profile the next Dockyard build into this file (pyinstrument / py-spy)
    profile_to: Path | None = None

    @property
    def is_dockyard(self) -> bool:
        return self.name in DOCKYARD_BUILDERS

    def available(self) -> str | None:
        """Why this builder cannot run here (``None``: it can)."""
        return None

    def start(self) -> None:
        """Make the builder ready (untimed)."""

    def stop(self) -> None:
        """Stop what :meth:`start` started."""

    def build_argv(
        self,
        context: Path,
        *,
        tag: str | None,
        build_args: Mapping[str, str] | None = None,
        output: str | None = None,
    ) -> list[str]:
        raise NotImplementedError

    def build(
        self,
        context: Path,
        *,
        tag: str | None,
        build_args: Mapping[str, str] | None = None,
        output: str | None = None,
    ) -> float:
        argv = self.build_argv(context, tag=tag, build_args=build_args, output=output)
        if tag is not None:
            self.tags.add(tag)
        return run(argv, self.log, env=self.env)

    def reset(self) -> None:
        """Clear the build cache and every image this builder made or pulled (cold)."""
        raise NotImplementedError

    def remove_images(self, refs: Sequence[str]) -> None:
        """Remove images by name (untimed cleanup)."""

    def push_argv(self, ref: str, compression: str) -> list[str] | None:
        """The command pushing the already-built image ``ref`` (``None``: not supported
        or the push is part of the build)."""
        return None


# -- Dockyard --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class DockyardBuilder(Builder):
    state_dir: Path

    def _client(self) -> list[str]:
        raise NotImplementedError

    def _command(self) -> list[str]:
        exe = venv_bin("dockyard")
        if self.profile_to is None:
            return [exe]
        path, self.profile_to = self.profile_to, None
        # a profiled command runs in its own process (a warm start's client does nothing)
        alone = ["env", "DOCKYARD_WARM=0"]
        if path.suffix == ".collapsed":  # py-spy: every thread, raw collapsed stacks
            return [
                *alone,
                venv_bin("py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "100",
                "--output",
                str(path),
                "--",
                exe,
            ]
        # pyinstrument: the main thread's wall clock (await points included)
        return [*alone, venv_bin("pyinstrument"), "-r", "pyisession", "-o", str(path), exe]

    def build_argv(
        self,
        context: Path,
        *,
        tag: str | None,
        build_args: Mapping[str, str] | None = None,
        output: str | None = None,
    ) -> list[str]:
        argv = [*self._command(), "build", "-q", *self._client()]
        if tag is not None:
            argv += ["-t", tag]
        if output is not None:
            argv += ["--output", output]
        return [*argv, *_build_args(build_args or {}), str(context)]

    def remove_images(self, refs: Sequence[str]) -> None:
        # the image commands work on a state directory (the daemon's too, while it is
        # idle would race it: only used for the embedded one)
        pass


def _unmount_under(root: Path) -> None:
    """Detach anything still mounted under ``root`` (left by a crashed build)."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def wipe(path: Path) -> None:
    if path.exists():
        _unmount_under(path)
        shutil.rmtree(path)


@dataclass(slots=True, kw_only=True)
class DockyardEmbedded(DockyardBuilder):
    def _client(self) -> list[str]:
        return ["--state-dir", str(self.state_dir)]

    def reset(self) -> None:
        wipe(self.state_dir)


@dataclass(slots=True, kw_only=True)
class DockyardDaemon(DockyardBuilder):
    socket: Path
    process: subprocess.Popen[bytes] | None = None
    # py-spy on the daemon while the next build runs
    spy: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    def _client(self) -> list[str]:
        return ["--addr", self.address]

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir.parent / f"{self.name}.toml"
        # an explicit (empty) config: a stray /etc/dockyard/dockyardd.toml is not read
        config.write_text("# dockyard bench harness: defaults only\n")
        argv = [
            venv_bin("dockyardd"),
            "--config",
            str(config),
            "--addr",
            self.address,
            "--state-dir",
            str(self.state_dir),
        ]
        self.log.note("$ " + " ".join(argv))
        with self.log.path.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + 60
        probe = [venv_bin("dockyard"), "--addr", self.address, "du"]
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"dockyardd exited with {self.process.returncode} (see the log)")
            if self.socket.exists() and output(probe, env=self.env) != "":
                return
            if time.monotonic() > deadline:
                raise BenchError("dockyardd did not answer within 60 s")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def reset(self) -> None:
        self.stop()
        wipe(self.state_dir)
        self.start()
        time.sleep(1.2)  # its first GC pass starts a second after it serves
        self.wait_idle()

    def wait_idle(self, quiet: float = 0.3, limit: float = 10.0) -> None:
        """Wait (untimed) until the new daemon has settled — its start-up imports in a
        thread and its first GC pass done, no CPU used for ``quiet`` seconds — as the
        dockerd a peer builds on has long settled: `cold` clears caches and images,
        it does not time a daemon's start."""
        if self.process is None:
            return
        stat_path = Path(f"/proc/{self.process.pid}/stat")

        def cpu() -> int:
            try:
                fields = stat_path.read_text().rsplit(")", 1)[1].split()
            except OSError:
                return -1
            return int(fields[11]) + int(fields[12])  # utime + stime, in ticks

        deadline = time.monotonic() + limit
        last, since = cpu(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = cpu()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def rss_mib(self) -> float | None:
        """The daemon's resident set size (VmRSS), MiB."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def start_spy(self, path: Path) -> None:
        """py-spy (raw collapsed stacks) on the daemon until :meth:`stop_spy`."""
        assert self.process is not None
        argv = [
            venv_bin("py-spy"),
            "record",
            "--pid",
            str(self.process.pid),
            "--format",
            "raw",
            "--rate",
            "100",
            "--output",
            str(path),
        ]
        self.log.note("$ " + " ".join(argv))
        with self.log.path.open("ab") as out:
            try:
                self.spy = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            except OSError as exc:
                raise BenchError(f"cannot run py-spy ({exc}): pip install -e '.[bench]'") from exc
        time.sleep(0.5)  # attached

    def stop_spy(self) -> None:
        spy, self.spy = self.spy, None
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)


# -- peers -----------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class DockerBuildKit(Builder):
    bases: tuple[str, ...] = ()

    def available(self) -> str | None:
        if not os.access(DOCKER, os.X_OK):
            return f"{DOCKER} is not installed (run ../shared/tools/setup.sh)"
        if output([DOCKER, "version", "--format", "{{.Server.Version}}"]) == "":
            return "dockerd does not answer (../shared/tools/dockerd.sh start)"
        return None

    def build_argv(
        self,
        context: Path,
        *,
        tag: str | None,
        build_args: Mapping[str, str] | None = None,
        output: str | None = None,
    ) -> list[str]:
        argv = [DOCKER, "build", "-q", "--network=host"]
        if tag is not None:
            argv += ["-t", tag]
        if output is not None:
            argv += ["--output", output]
        return [*argv, *_build_args(build_args or {}), str(context)]

    def reset(self) -> None:
        self.remove_images([*sorted(self.tags), *self.bases])
        run([DOCKER, "builder", "prune", "-af"], self.log, env=self.env)

    def remove_images(self, refs: Sequence[str]) -> None:
        if refs:
            run([DOCKER, "image", "rm", "-f", *refs], self.log, env=self.env, check=False)

    def push_argv(self, ref: str, compression: str) -> list[str] | None:
        if compression != "gzip":
            return None  # moby 20.10 pushes gzip only; BuildKit v0.8 has no zstd
        return [DOCKER, "push", "-q", ref]


@dataclass(slots=True, kw_only=True)
class Buildah(Builder):
    def available(self) -> str | None:
        if shutil.which("buildah") is None:
            return "buildah is not installed (run ../shared/tools/setup.sh)"
        if shutil.which("runc") is None:
            return "runc is not installed"
        return None

    def build_argv(
        self,
        context: Path,
        *,
        tag: str | None,
        build_args: Mapping[str, str] | None = None,
        output: str | None = None,
    ) -> list[str]:
        argv = [
            "buildah",
            "bud",
            "-q",
            "--layers",
            "--network=host",
            "--isolation=oci",
            "--runtime=runc",
            "--tls-verify=false",
        ]
        if tag is not None:
            argv += ["-t", tag]
        return [*argv, *_build_args(build_args or {}), str(context)]

    def reset(self) -> None:
        # as ../shared/tools/bench-peers.sh: every working container and image
        run(["buildah", "rm", "--all"], self.log, check=False)
        run(["buildah", "rmi", "--all", "--force"], self.log, check=False)

    def remove_images(self, refs: Sequence[str]) -> None:
        if refs:
            run(["buildah", "rmi", "-f", *refs], self.log, check=False)

    def push_argv(self, ref: str, compression: str) -> list[str] | None:
        return [
            "buildah",
            "push",
            "-q",
            "--tls-verify=false",
            "--compression-format",
            compression,
            ref,
        ]


def warm_bytecode(log: Log) -> None:
    """Compile Dockyard, its dependencies and the standard library into :data:`PYCACHE`
    (what an installation does once)."""
    import sysconfig

    paths = sysconfig.get_paths()
    roots = sorted({paths["stdlib"], paths["purelib"], paths["platlib"]})
    src = Path(__file__).resolve().parents[2] / "src"
    run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j0",
            "-x",
            r"/(tests?|idlelib|tkinter|lib2to3|ensurepip|turtledemo)/",
            str(src),
            *roots,
        ],
        log,
        env=DOCKYARD_ENV,
        check=False,
    )


def _warm_env(work: Path, warm: bool) -> dict[str, str]:
    """Dockyard's environment: its warm-start servers (cli._warm) are the harness's own,
    in the work directory, or there are none."""
    if not warm:
        return {**DOCKYARD_ENV, "DOCKYARD_WARM": "0"}
    runtime = work / "xdg-run"
    runtime.mkdir(parents=True, mode=0o700, exist_ok=True)
    return {**DOCKYARD_ENV, "XDG_RUNTIME_DIR": str(runtime), "DOCKYARD_WARM": "1"}


def stop_warm_servers(work: Path) -> None:
    """SIGTERM the warm-start servers Dockyard's commands started for the harness."""
    from dockyard.cli._warm import stop_servers

    stop_servers(work / "xdg-run" / "dockyard")


_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def _own_area(work: Path, name: str) -> Path:
    """A directory of its own for one Dockyard builder's state, in another part of the
    file system than the other's.

    ext4 without a journal (this VM's) makes every file created in a block group scan
    past the inodes deleted there in the last minute (``recently_deleted`` under
    ``ext4_create``). Side by side in one directory, the embedded and the daemon
    builder's state directories share their block groups, so each cold run paid for the
    *other* builder's reset too (by hand: 2,000 creates 0.04 s after nothing was
    deleted, 0.36 s after deleting 4,600 of their own, 0.75 s after the neighbour
    deleted 4,600), while the peers' data lives apart (``/var/lib/docker``,
    ``/var/lib/containers``). The work directory is marked as a top of a directory
    hierarchy (``chattr +T``), so that ext4's Orlov allocator spreads its children over
    the file system; each builder's resets then stay in its own groups, as a peer's do.
    Elsewhere (no such flag) this is a plain sub-directory."""
    import fcntl
    import struct

    work.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            (flags,) = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("i", 0)))
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_TOPDIR_FL))
        finally:
            os.close(fd)
    except OSError:
        pass
    area = work / name
    area.mkdir(exist_ok=True)
    return area / "state"


def make_builders(names: Sequence[str], work: Path, log: Log, *, warm: bool) -> list[Builder]:
    out: list[Builder] = []
    for name in names:
        if name == EMBEDDED:
            out.append(
                DockyardEmbedded(
                    name=name,
                    log=log,
                    env=_warm_env(work, warm),
                    state_dir=_own_area(work, "embedded"),
                )
            )
        elif name == DAEMON:
            out.append(
                DockyardDaemon(
                    name=name,
                    log=log,
                    env=_warm_env(work, warm),
                    state_dir=_own_area(work, "daemon"),
                    socket=work / "dockyardd.sock",
                )
            )
        elif name == BUILDKIT:
            out.append(DockerBuildKit(name=name, log=log, env=dict(DOCKER_ENV)))
        elif name == BUILDAH:
            out.append(Buildah(name=name, log=log))
        else:
            raise BenchError(f"unknown builder {name!r} (one of {', '.join(ALL_BUILDERS)})")
    return out
