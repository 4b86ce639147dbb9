"""The exec op: a process in a sandbox assembled from the op's mounts.

Mounts (``pb.Mount``): the root ``/`` and other bind mounts come from inputs (or are
empty); a writable one is a new writable ref on top of its input, and when it has an
output index its changes become that output (outputs in index order); a read-only one
is the input's read-only view. Cache mounts come from the cache manager (persistent,
shared by id with their sharing mode, never part of a result), tmpfs mounts are empty
memory filesystems, secret mounts are files holding a secret of the job (never on disk,
in a key or in a log), and SSH mounts forward the job's SSH agent.

Cache map (BuildKit's): the digest covers the exec definition without the mount
selectors (they key the inputs instead), without the IPs of extra hosts and without the
proxy environment (``HTTP_PROXY`` and friends do not change what a command builds),
plus the platform. Extra host names, ulimits, the cgroup parent and a ``/dev/shm``
tmpfs's size (``--shm-size``) stay in it, as in BuildKit's. Inputs mounted read-only (other than the root) are content
dependencies on the selected paths.

An exec of another platform than the worker's runs when the host emulates it (a QEMU
handler in binfmt_misc with the F flag, see :mod:`dockyard.executor._binfmt`; looked up
only then); otherwise it fails before running, saying why and how to set emulation up.

CDI devices (``cdiDevices``): their names are checked when the op is loaded (the
``device`` entitlement is the loader's, :mod:`dockyard.llbsolver._devices`); when the
process runs, the worker's registry resolves them to edits of the sandbox, which only the
names, never the edits, key.

On a status outside ``validExitCodes`` (``0`` when empty) the op raises
:class:`dockyard.core.ExecError` naming the command and the status, with the last lines
of its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.core import (
    DockyardError,
    ExecError,
    Grant,
    InternalError,
    InvalidDefinitionError,
    NotFoundError,
    Platform,
)
from dockyard.core.cdinames import parse_selector
from dockyard.executor.cdi.types import ContainerEdits, DeviceRequest
from dockyard.executor.types import (
    BindMount,
    ExecMount,
    HostEntry,
    NetworkMode,
    ProcessSpec,
    Rlimit,
    SecretMount,
    SecurityMode,
    SshMount,
    TmpfsMount,
)
from dockyard.llb import CacheSharing
from dockyard.snapshot.types import Mount
from dockyard.solver import CacheMap, Dep, Result, VertexContext

from ._common import OpInfo, cache_digest
from ._devices import device_edits
from .types import (
    DEBUG_SHELL,
    SECRETS,
    SSH_AGENTS,
    ContentSelector,
    Entitlement,
    ImmutableRef,
    MutableRef,
    Worker,
)

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = ["ExecOp", "OutputTail"]

_TAIL_LINES = 20
_TAIL_BYTES = 64 << 10
_BIND, _SECRET, _SSH, _CACHE, _TMPFS = 0, 1, 2, 3, 4  # pb.MountType
_PROXY_ENV = (
    ("http_proxy", "HTTP_PROXY"),
    ("https_proxy", "HTTPS_PROXY"),
    ("ftp_proxy", "FTP_PROXY"),
    ("no_proxy", "NO_PROXY"),
    ("all_proxy", "ALL_PROXY"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Mount:
    """A ``pb.Mount`` as a value."""

    dest: str
    kind: int
    input: int = -1
    selector: str = ""
    output: int = -1
    readonly: bool = False
    cache_id: str = ""
    sharing: CacheSharing = CacheSharing.SHARED
    tmpfs_size: int = 0
    secret_id: str = ""
    uid: int = 0
    gid: int = 0
    mode: int = 0
    optional: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _SecretEnv:
    id: str
    name: str
    optional: bool


_SHARINGS = frozenset(int(mode) for mode in CacheSharing)


def _parse_mount(m: pb.Mount) -> _Mount:
    if not m.dest.startswith("/"):
        raise InvalidDefinitionError(f"mount destination {m.dest!r} is not an absolute path")
    kind = int(m.mountType)
    if kind not in (_BIND, _SECRET, _SSH, _CACHE, _TMPFS):
        raise InvalidDefinitionError(f"mount {m.dest}: unknown mount type {kind}")
    if kind == _BIND:
        return _Mount(
            dest=m.dest,
            kind=kind,
            input=int(m.input),
            selector=m.selector,
            output=int(m.output),
            readonly=m.readonly,
        )
    if kind == _CACHE:
        if not m.cacheOpt.ID:
            raise InvalidDefinitionError(f"cache mount {m.dest} has no id")
        sharing = int(m.cacheOpt.sharing)
        if sharing not in _SHARINGS:  # a client's value: was a ValueError traceback
            raise InvalidDefinitionError(f"cache mount {m.dest}: unknown sharing mode {sharing}")
        return _Mount(
            dest=m.dest,
            kind=kind,
            input=int(m.input),
            selector=m.selector,
            readonly=m.readonly,
            cache_id=m.cacheOpt.ID,
            sharing=CacheSharing(sharing),
        )
    if kind == _TMPFS:
        if m.TmpfsOpt.size < 0:
            raise InvalidDefinitionError(f"tmpfs mount {m.dest} has a negative size")
        return _Mount(dest=m.dest, kind=kind, tmpfs_size=int(m.TmpfsOpt.size))
    opt = m.secretOpt if kind == _SECRET else m.SSHOpt
    if kind == _SECRET and not opt.ID:
        raise InvalidDefinitionError(f"secret mount {m.dest} has no secret id")
    return _Mount(
        dest=m.dest,
        kind=kind,
        secret_id=opt.ID or "default",
        uid=int(opt.uid),
        gid=int(opt.gid),
        mode=int(opt.mode) & 0o7777,
        optional=opt.optional,
    )


def _digest_payload(exec_op: pb.ExecOp) -> str:
    """BuildKit's exec cache-map message: the op without what does not change the
    result (selectors, extra host IPs, proxy settings)."""
    from dockyard.api import ops as pb

    op = pb.ExecOp()
    op.CopyFrom(exec_op)
    for host in op.meta.extraHosts:
        host.IP = ""
    for m in op.mounts:
        m.selector = ""
    op.meta.ClearField("proxy_env")
    mounts = op.mounts
    if (
        len(mounts) == 1
        and mounts[0].dest == pb.ROOT_MOUNT
        and not mounts[0].readonly
        and mounts[0].mountType == pb.MountType.BIND
        and not mounts[0].HasField("cacheOpt")
        and not mounts[0].HasField("secretOpt")
        and not mounts[0].HasField("SSHOpt")
        and not mounts[0].resultID
    ):
        del op.mounts[:]  # the plain RUN case, as BuildKit keys it
    return hashlib.sha256(op.SerializeToString(deterministic=True)).hexdigest()


class OutputTail:
    """The last lines a process wrote (both streams), for error messages."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > _TAIL_BYTES * 2:
            del self._data[: len(self._data) - _TAIL_BYTES]

    def lines(self, n: int = _TAIL_LINES) -> tuple[str, ...]:
        text = bytes(self._data[-_TAIL_BYTES:]).decode("utf-8", "replace")
        lines = [line.rstrip("\r") for line in text.split("\n")]
        while lines and not lines[-1].strip():
            lines.pop()
        return tuple(lines[-n:])


class ExecOp:
    """:class:`dockyard.solver.Op` of an LLB exec op."""

    def __init__(self, *, info: OpInfo, worker: Worker, exec_op: pb.ExecOp, n_inputs: int) -> None:
        self.info = info
        self.worker = worker
        self.n_inputs = n_inputs
        meta = exec_op.meta
        self.args = tuple(meta.args)
        self.env = tuple(meta.env)
        self.cwd = meta.cwd or "/"
        if not self.cwd.startswith("/"):
            raise InvalidDefinitionError(f"working directory {self.cwd!r} is not absolute")
        self.user = meta.user
        self.hostname = meta.hostname
        try:
            self.extra_hosts = tuple(HostEntry(name=h.Host, ip=h.IP) for h in meta.extraHosts)
        except DockyardError as exc:
            raise InvalidDefinitionError(exc.message) from exc
        self.valid_exit_codes = frozenset(int(c) for c in meta.validExitCodes) or frozenset({0})
        self.proxy_env = tuple(
            f"{name}={value}"
            for field, upper in _PROXY_ENV
            if (value := getattr(meta.proxy_env, field))
            for name in (upper, field)
        )
        try:
            self.rlimits = tuple(
                Rlimit(name=u.Name, soft=int(u.Soft), hard=int(u.Hard)) for u in meta.ulimit
            )
        except DockyardError as exc:
            raise InvalidDefinitionError(f"ulimit: {exc.message}") from exc
        self.cgroup_parent = meta.cgroupParent
        self.net = int(exec_op.network)
        self.security = int(exec_op.security)
        if self.net not in (0, 1, 2):
            raise InvalidDefinitionError(f"unknown network mode {self.net}")
        if self.security not in (0, 1):
            raise InvalidDefinitionError(f"unknown security mode {self.security}")
        self.secret_env = tuple(
            _SecretEnv(id=s.ID, name=s.name, optional=s.optional) for s in exec_op.secretenv
        )
        for s in self.secret_env:
            if not s.id or not s.name:
                raise InvalidDefinitionError("a secret environment variable needs an id and a name")
        self.devices = tuple(
            DeviceRequest(name=d.name, optional=d.optional) for d in exec_op.cdiDevices
        )
        for device in self.devices:
            try:
                parse_selector(device.name)
            except DockyardError as exc:
                raise InvalidDefinitionError(exc.message) from exc
        self.device_grants: frozenset[Grant] = frozenset()
        """The build's grants the devices are checked against when the exec runs (the
        loader's)."""
        self.mounts = tuple(_parse_mount(m) for m in exec_op.mounts)
        roots = [m for m in self.mounts if m.dest == "/"]
        if len(roots) != 1 or roots[0].kind != _BIND:
            raise InvalidDefinitionError("an exec needs exactly one root bind mount (/)")
        self.root = roots[0]
        if self.root.selector not in ("", "/"):
            raise InvalidDefinitionError("a root mount with a selector is not supported")
        self.n_outputs = max((m.output for m in self.mounts if m.kind == _BIND), default=-1) + 1
        self._digest = cache_digest("exec", _digest_payload(exec_op), info.platform)
        self._deps = self._make_deps()

    # -- entitlements and cache map ---------------------------------------------------

    def required_entitlements(self) -> frozenset[Entitlement]:
        need: set[Entitlement] = set()
        if self.net == 1:
            need.add(Entitlement.NETWORK_HOST)
        if self.security == 1:
            need.add(Entitlement.SECURITY_INSECURE)
        return frozenset(need)

    def _make_deps(self) -> tuple[Dep, ...]:
        selectors: list[list[str]] = [[] for _ in range(self.n_inputs)]
        no_content = [False] * self.n_inputs
        for m in self.mounts:
            if m.input < 0 or m.kind in (_TMPFS, _SECRET, _SSH):
                continue
            if m.selector:
                selectors[m.input].append("/" + m.selector.lstrip("/"))
            if (not m.readonly or m.dest == "/") and m.output != -1:
                no_content[m.input] = True
        deps: list[Dep] = []
        for index in range(self.n_inputs):
            sels = selectors[index]
            selector = (
                "sha256:" + hashlib.sha256("\0".join(sels).encode()).hexdigest() if sels else None
            )
            if no_content[index]:
                deps.append(Dep(selector=selector))
                continue
            paths = tuple(dict.fromkeys(sels)) or ("/",)
            deps.append(Dep(selector=selector, compute_digest=self._content_digest(paths)))
        return tuple(deps)

    def _content_digest(self, paths: tuple[str, ...]) -> Any:
        refs = self.worker.refs
        info = self.info

        async def compute(result: Result, ctx: VertexContext) -> str:
            if not isinstance(result, ImmutableRef):
                raise InternalError(f"exec input {result!r} is not a snapshot ref")
            async with info.errors():
                sums = [
                    await refs.checksum(result, ContentSelector(path=p, follow_links=True))
                    for p in paths
                ]
            data = "\0".join(f"{p}\0{s}" for p, s in zip(paths, sums, strict=True))
            return "sha256:" + hashlib.sha256(data.encode()).hexdigest()

        return compute

    async def cache_map(self, ctx: VertexContext) -> CacheMap:
        return CacheMap(digest=self._digest, deps=self._deps)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    # -- exec -------------------------------------------------------------------------

    async def _check_platform(self) -> None:
        wanted = self.info.platform
        host: Platform = self.worker.platform
        if wanted is None or (wanted.os, wanted.architecture) == (host.os, host.architecture):
            return
        # another platform: it runs when a binfmt_misc emulator (QEMU with the F flag)
        # takes its binaries; looked up only here, cached per process
        from dockyard.executor import host_platforms

        found = await asyncio.to_thread(host_platforms, wanted=wanted)
        if found.find(wanted) is not None:
            return
        raise DockyardError(
            f"cannot run a {wanted} process on this {host.os}/{host.architecture} worker:"
            f" {found.why_not(wanted)}. {found.how_to_emulate(wanted)}. Or run the commands"
            " in a stage FROM --platform=$BUILDPLATFORM and copy their output into the"
            " target platform's stage"
        )

    async def exec(self, ctx: VertexContext, inputs: Sequence[Result]) -> Sequence[Result]:
        if len(inputs) != self.n_inputs:
            raise InternalError(f"exec got {len(inputs)} inputs, expected {self.n_inputs}")
        refs: list[ImmutableRef] = []
        for r in inputs:
            if not isinstance(r, ImmutableRef):
                raise InternalError(f"exec input {r!r} is not a snapshot ref")
            refs.append(r)
        async with self.info.errors():
            await self._check_platform()
            return await self._run(ctx, refs)

    async def _run(self, ctx: VertexContext, inputs: list[ImmutableRef]) -> list[Result]:
        env = list(self.env) + list(self.proxy_env)
        for s in self.secret_env:
            value = await _secret(ctx, s.id)
            if value is None:
                if s.optional:
                    continue
                raise NotFoundError(
                    f"secret {s.id!r} not found (for environment variable {s.name})"
                )
            env.append(f"{s.name}={value.decode('utf-8', 'surrogateescape')}")
        cdi_edits = await device_edits(
            self.devices, self.device_grants, self.worker.devices, ctx, self.info
        )
        writable: dict[int, MutableRef] = {}  # mount position -> writable ref
        outputs: dict[int, ImmutableRef] = {}
        try:
            async with contextlib.AsyncExitStack() as stack:
                root: Sequence[Mount] = ()
                exec_mounts: list[tuple[str, ExecMount]] = []
                for position, m in enumerate(self.mounts):
                    if m.kind == _BIND:
                        specs = await self._bind_source(m, position, inputs, writable)
                        if m.dest == "/":
                            root = specs
                        else:
                            exec_mounts.append(
                                (
                                    m.dest,
                                    BindMount(
                                        dest=m.dest,
                                        source=tuple(specs),
                                        selector=m.selector,
                                        readonly=m.readonly,
                                    ),
                                )
                            )
                    elif m.kind == _CACHE:
                        base = inputs[m.input] if m.input >= 0 else None
                        specs = await stack.enter_async_context(
                            self.worker.refs.cache_mount(m.cache_id, sharing=m.sharing, base=base)
                        )
                        exec_mounts.append(
                            (
                                m.dest,
                                # a selector shows a subpath of the cache (as BuildKit)
                                BindMount(
                                    dest=m.dest,
                                    source=tuple(specs),
                                    selector=m.selector,
                                    readonly=m.readonly,
                                ),
                            )
                        )
                    elif m.kind == _TMPFS:
                        exec_mounts.append((m.dest, TmpfsMount(dest=m.dest, size=m.tmpfs_size)))
                    elif m.kind == _SECRET:
                        data = await _secret(ctx, m.secret_id)
                        if data is None:
                            if m.optional:
                                continue
                            raise NotFoundError(
                                f"secret {m.secret_id!r} not found (mount at {m.dest})"
                            )
                        exec_mounts.append(
                            (
                                m.dest,
                                SecretMount(
                                    dest=m.dest,
                                    data=data,
                                    mode=m.mode or 0o400,
                                    uid=m.uid,
                                    gid=m.gid,
                                ),
                            )
                        )
                    else:
                        socket = await _ssh_socket(ctx, stack, m)
                        if socket is not None:
                            exec_mounts.append((m.dest, SshMount(dest=m.dest, socket=socket)))
                exec_mounts.sort(key=lambda item: item[0])
                tail = OutputTail()
                process = self._process(env, cdi_edits)
                mounts = [m for _, m in exec_mounts]
                try:
                    status = await self._execute(ctx, root, mounts, process, tail)
                except ExecError as exc:  # the runtime could not start the command
                    await self._debug_shell(ctx, root, mounts, process, exc)
                    raise
                if status not in self.valid_exit_codes:
                    error = status_error(self.args, status, tail)
                    # (the mounts are all still there: the shell gets the same ones)
                    await self._debug_shell(ctx, root, mounts, process, error)
                    raise error
            for position, mutable in sorted(writable.items()):
                m = self.mounts[position]
                if m.output >= 0:
                    del writable[position]
                    outputs[m.output] = await mutable.commit()
            return [outputs[i] for i in range(self.n_outputs)]
        except BaseException:
            for ref in outputs.values():
                with contextlib.suppress(Exception):
                    await ref.release()
            raise
        finally:
            for mutable in writable.values():
                with contextlib.suppress(Exception):
                    await mutable.release()

    async def _bind_source(
        self,
        m: _Mount,
        position: int,
        inputs: list[ImmutableRef],
        writable: dict[int, MutableRef],
    ) -> Sequence[Mount]:
        parent = inputs[m.input] if m.input >= 0 else None
        if m.readonly and m.output < 0 and parent is not None:
            return await parent.mounts()
        mutable = await self.worker.refs.new_mutable(parent, description=self.info.name)
        writable[position] = mutable
        return await mutable.mounts()

    async def _debug_shell(
        self,
        ctx: VertexContext,
        root: Sequence[Mount],
        mounts: list[ExecMount],
        process: ProcessSpec,
        error: ExecError,
    ) -> None:
        """``--invoke``: the build's debug shell on this failed step's mounts (looked
        up only on a failure)."""
        for shell in ctx.values(DEBUG_SHELL):
            if shell.on_error:
                title = f"{self.info.name or 'RUN'} failed ({error.message})"
                await shell.run(
                    self.worker.executor, root=root, mounts=mounts, process=process, title=title
                )
            return

    def _process(self, env: list[str], cdi_edits: tuple[ContainerEdits, ...] = ()) -> ProcessSpec:
        network = {0: self.worker.default_network, 1: NetworkMode.HOST, 2: NetworkMode.NONE}[
            self.net
        ]
        security = SecurityMode.INSECURE if self.security == 1 else SecurityMode.SANDBOX
        try:
            process = ProcessSpec(
                args=self.args,
                env=tuple(env),
                cwd=self.cwd,
                user=self.user,
                extra_hosts=self.extra_hosts,
                network=network,
                security=security,
                rlimits=self.rlimits,
                cgroup_parent=self.cgroup_parent,
                cdi_edits=cdi_edits,
                **({"hostname": self.hostname} if self.hostname else {}),
            )
        except DockyardError as exc:
            raise InvalidDefinitionError(exc.message) from exc
        return process

    async def _execute(
        self,
        ctx: VertexContext,
        root: Sequence[Mount],
        mounts: list[ExecMount],
        process: ProcessSpec,
        tail: OutputTail,
    ) -> int:
        def sink(stream: int, data: bytes) -> None:
            tail.feed(data)
            ctx.log(data, stream=stream)

        return await self.worker.executor.run(
            root=root, mounts=mounts, process=process, output=sink
        )


def status_error(args: tuple[str, ...], status: int, tail: OutputTail) -> ExecError:
    """BuildKit's message for a process that failed."""
    command = " ".join(args)
    return ExecError(
        f'process "{command}" did not complete successfully: exit code: {status}',
        args=args,
        exit_status=status,
        log_tail=tail.lines(),
    )


async def _secret(ctx: VertexContext, id: str) -> bytes | None:
    """The secret from the first job's store that has it (a vertex may be shared). A
    store whose client fails to answer (gone, silent, a wrong reply) is passed over, as
    BuildKit's ``session.Any`` passes over a failing session: one client cannot fail the
    others' builds of a shared step. Its error is raised when no store has the secret."""
    failure: DockyardError | None = None
    for store in ctx.values(SECRETS):
        try:
            return await store.get(id)
        except NotFoundError:
            continue
        except DockyardError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return None


async def _ssh_socket(
    ctx: VertexContext, stack: contextlib.AsyncExitStack, m: _Mount
) -> Path | None:
    failure: DockyardError | None = None
    for provider in ctx.values(SSH_AGENTS):
        try:
            return await stack.enter_async_context(
                provider.forward(m.secret_id, uid=m.uid, gid=m.gid, mode=m.mode or 0o600)
            )
        except NotFoundError:
            continue
        except DockyardError as exc:  # a failing client is passed over (see _secret)
            failure = failure or exc
    if failure is not None:
        raise failure
    if m.optional:
        return None
    raise NotFoundError(
        f"no SSH agent {m.secret_id!r} was forwarded for this build (mount at {m.dest})"
    )
