"""Exec ops: a process run in a container assembled from mounts.

Serialization follows BuildKit's Go client so that equal graphs give equal bytes: mounts
are sorted by destination (the root ``/`` first), inputs are deduplicated, writable bind
mounts (the root included) get output indexes 0, 1, ... in that order, read-only, cache
and tmpfs mounts get no output (``-1``), and secret and SSH mounts follow, in the order
given, without inputs.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

from dockyard.core import UsageError

from ._constraints import CacheSharing, Constraints, ContentCache, NetMode, SecurityMode
from ._state import State, _Values
from ._vertex import MarshalContext, Output, Vertex

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = [
    "BindMount",
    "CDIDevice",
    "CacheMount",
    "ExecOp",
    "ExecState",
    "MountSpec",
    "ProxyEnv",
    "SSHMount",
    "SecretEnv",
    "SecretMount",
    "TmpfsMount",
]

ROOT = "/"
SHM_PATH = "/dev/shm"  # where --shm-size puts its tmpfs
_SSH_SOCKET = "/run/buildkit/ssh_agent.{}"


@dataclass(frozen=True, slots=True)
class BindMount:
    """Mount ``source`` (or its ``selector`` subpath) at ``dest``.

    Writable by default: the changed filesystem becomes an output of the exec, reachable
    with ``ExecState.get_mount(dest)``. ``readonly`` mounts have no output;
    ``no_output`` makes a writable mount whose changes are discarded.
    """

    dest: str
    source: State
    _: KW_ONLY
    selector: str = ""
    readonly: bool = False
    no_output: bool = False
    content_cache: ContentCache = ContentCache.DEFAULT


@dataclass(frozen=True, slots=True)
class CacheMount:
    """A persistent cache directory at ``dest`` shared between builds by ``id``
    (``RUN --mount=type=cache``); ``source`` seeds it when it is first created.
    ``readonly`` mounts it read-only (``--mount=type=cache,ro``)."""

    dest: str
    id: str
    _: KW_ONLY
    sharing: CacheSharing = CacheSharing.SHARED
    source: State | None = None
    selector: str = ""
    readonly: bool = False
    content_cache: ContentCache = ContentCache.DEFAULT


@dataclass(frozen=True, slots=True)
class TmpfsMount:
    """An in-memory filesystem at ``dest``; ``size`` in bytes (0: the runtime default)."""

    dest: str
    _: KW_ONLY
    size: int = 0


@dataclass(frozen=True, slots=True)
class SecretMount:
    """The secret ``id`` as a file at ``dest``."""

    dest: str
    id: str
    _: KW_ONLY
    uid: int = 0
    gid: int = 0
    mode: int = 0o400
    optional: bool = False


@dataclass(frozen=True, slots=True)
class SSHMount:
    """An SSH agent socket forwarded from the client (``RUN --mount=type=ssh``).

    ``dest`` defaults to ``/run/buildkit/ssh_agent.N``; ``SSH_AUTH_SOCK`` is set to the
    first SSH mount unless the environment already sets it.
    """

    dest: str = ""
    _: KW_ONLY
    id: str = ""
    uid: int = 0
    gid: int = 0
    mode: int = 0o600
    optional: bool = False


MountSpec = BindMount | CacheMount | TmpfsMount | SecretMount | SSHMount


@dataclass(frozen=True, slots=True)
class SecretEnv:
    """The secret ``id`` as the environment variable ``name``."""

    name: str
    id: str
    _: KW_ONLY
    optional: bool = False


@dataclass(frozen=True, slots=True)
class CDIDevice:
    """A CDI device the process gets (``RUN --device``, BuildKit 0.20+): ``name`` is
    ``vendor/class=name``, ``vendor/class`` (the kind's first device), ``vendor/class=*``
    (all of them) or a class annotation's value (see :mod:`dockyard.core.cdinames`).
    Unless ``optional``, the exec fails on a worker that has no such device. Using a
    device needs the ``device`` entitlement unless the worker allows it automatically.
    """

    name: str
    _: KW_ONLY
    optional: bool = False

    def __post_init__(self) -> None:
        from dockyard.core.cdinames import parse_selector

        parse_selector(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyEnv:
    """Proxy settings passed to the process without entering the cache key."""

    http_proxy: str = ""
    https_proxy: str = ""
    ftp_proxy: str = ""
    no_proxy: str = ""
    all_proxy: str = ""


class ExecOptions(NamedTuple):
    args: tuple[str, ...]
    mounts: tuple[MountSpec, ...] = ()
    secret_env: tuple[SecretEnv, ...] = ()
    valid_exit_codes: tuple[int, ...] | None = None
    proxy_env: ProxyEnv | None = None
    readonly_rootfs: bool = False
    devices: tuple[CDIDevice, ...] = ()


class _Mount(NamedTuple):
    """A filesystem mount of the exec (root, bind, cache or tmpfs), resolved."""

    dest: str
    source: Output | None
    readonly: bool = False
    selector: str = ""
    cache_id: str = ""
    sharing: CacheSharing = CacheSharing.SHARED
    tmpfs: bool = False
    tmpfs_size: int = 0
    no_output: bool = False
    content_cache: ContentCache = ContentCache.DEFAULT
    output: int = -1  # assigned after sorting
    spec: MountSpec | None = None

    @property
    def writable_output(self) -> bool:
        return not (self.no_output or self.readonly or self.tmpfs or self.cache_id)


class ExecOp(Vertex):
    """The exec vertex. Built by :meth:`State.run`; read its outputs through
    :class:`ExecState`."""

    __slots__ = ("_mounts", "_options", "_outputs", "_secrets", "_ssh", "_values")

    def __init__(
        self,
        base: State,
        values: _Values,
        options: ExecOptions,
        constraints: Constraints,
    ) -> None:
        super().__init__(constraints)
        self._values = values
        self._options = options
        mounts = [
            _Mount(dest=ROOT, source=base.output, readonly=options.readonly_rootfs),
        ]
        secrets: list[SecretMount] = []
        ssh: list[SSHMount] = []
        for spec in options.mounts:
            if isinstance(spec, BindMount):
                mounts.append(
                    _Mount(
                        dest=spec.dest,
                        source=spec.source.output,
                        readonly=spec.readonly,
                        selector=spec.selector,
                        no_output=spec.no_output,
                        content_cache=ContentCache(spec.content_cache),
                        spec=spec,
                    )
                )
            elif isinstance(spec, CacheMount):
                if not spec.id:
                    raise UsageError(f"cache mount {spec.dest}: an id is required")
                mounts.append(
                    _Mount(
                        dest=spec.dest,
                        source=spec.source.output if spec.source is not None else None,
                        selector=spec.selector,
                        readonly=spec.readonly,
                        cache_id=spec.id,
                        sharing=CacheSharing(spec.sharing),
                        content_cache=ContentCache(spec.content_cache),
                        spec=spec,
                    )
                )
            elif isinstance(spec, TmpfsMount):
                mounts.append(
                    _Mount(dest=spec.dest, source=None, tmpfs=True, tmpfs_size=spec.size, spec=spec)
                )
            elif isinstance(spec, SecretMount):
                secrets.append(spec)
            elif isinstance(spec, SSHMount):
                ssh.append(spec)
            else:
                raise UsageError(f"not a mount: {spec!r}")
        ssh = [s if s.dest else replace(s, dest=_SSH_SOCKET.format(i)) for i, s in enumerate(ssh)]
        mounts.sort(key=lambda m: m.dest)
        dests = [m.dest for m in mounts] + [s.dest for s in secrets] + [s.dest for s in ssh]
        for dest in dests:
            if not dest:
                raise UsageError("a mount needs a destination path")
            if dests.count(dest) > 1:
                raise UsageError(f"two mounts at {dest}")
        next_output = 0
        resolved: list[_Mount] = []
        for m in mounts:
            if m.writable_output:
                m = m._replace(output=next_output)
                next_output += 1
            resolved.append(m)
        self._mounts = tuple(resolved)
        self._secrets = tuple(secrets)
        self._ssh = tuple(ssh)
        self._outputs = next_output

    # -- graph ----------------------------------------------------------------------

    def inputs(self) -> tuple[Output, ...]:
        seen: list[Output] = []
        for m in self._mounts:
            if m.source is not None and not any(o is m.source for o in seen):
                seen.append(m.source)
        return tuple(seen)

    def mount(self, dest: str) -> _Mount | None:
        for m in self._mounts:
            if m.dest == dest:
                return m
        return None

    def has_mount(self, dest: str) -> bool:
        others: list[SecretMount | SSHMount] = [*self._secrets, *self._ssh]
        return self.mount(dest) is not None or any(s.dest == dest for s in others)

    def output(self, dest: str) -> Output:
        m = self.mount(dest)
        if m is None or not m.writable_output:
            raise UsageError(f"mount {dest} has no output")
        return Output(self, m.output, platform=self.constraints.platform)

    def validate(self) -> None:
        if not self._options.args:
            raise UsageError("run: arguments are required")
        if not self._values.cwd:
            raise UsageError("run: a working directory is required")

    # -- serializing ------------------------------------------------------------------

    def build(self, ctx: MarshalContext) -> tuple[pb.Op, Constraints]:
        from dockyard.api import ops as pb

        values = self._values
        options = self._options
        caps = {"exec.meta.base"}
        constraints = self.constraints
        if constraints.platform is None and values.platform is not None:
            constraints = constraints.merged(Constraints(platform=values.platform))

        env = list(values.env.items())
        if self._ssh and not any(k == "SSH_AUTH_SOCK" for k, _ in env):
            env.append(("SSH_AUTH_SOCK", self._ssh[0].dest))
        meta = pb.Meta(
            args=options.args,
            env=[f"{k}={v}" for k, v in env],
            cwd=values.cwd,
            user=values.user,
            hostname=values.hostname,
            cgroupParent=values.cgroup_parent,
            removeMountStubsRecursive=True,
        )
        if options.valid_exit_codes is not None:
            meta.validExitCodes.extend(options.valid_exit_codes)
            caps.add("exec.validexitcode")
        for host in values.extra_hosts:
            meta.extraHosts.add(Host=host.host, IP=host.ip)
        if values.ulimits:
            caps.add("exec.meta.ulimit")
            for limit in values.ulimits:
                meta.ulimit.add(Name=limit.name, Soft=limit.soft, Hard=limit.hard)
        if options.proxy_env is not None:
            p = options.proxy_env
            meta.proxy_env.http_proxy = p.http_proxy
            meta.proxy_env.https_proxy = p.https_proxy
            meta.proxy_env.ftp_proxy = p.ftp_proxy
            meta.proxy_env.no_proxy = p.no_proxy
            meta.proxy_env.all_proxy = p.all_proxy
            meta.proxy_env.SetInParent()
            caps.add("exec.meta.proxyenv")
        if values.network != NetMode.SANDBOX:
            caps.add("exec.meta.network")
        if values.security != SecurityMode.SANDBOX:
            caps.add("exec.meta.security")

        for m in self._mounts:
            if m.selector:
                caps.add("exec.mount.selector")
            if m.cache_id:
                caps.update(("exec.mount.cache", "exec.mount.cache.sharing"))
            elif m.tmpfs:
                caps.add("exec.mount.tmpfs")
                if m.tmpfs_size > 0:
                    caps.add("exec.mount.tmpfs.size")
            elif m.source is not None:
                caps.add("exec.mount.bind")
            if m.content_cache != ContentCache.DEFAULT:
                caps.add("exec.mount.cache.content")
        if self._secrets or self._options.secret_env:
            caps.add("exec.mount.secret")
        if self._options.secret_env:
            caps.add("exec.secretenv")
        if self._ssh:
            caps.add("exec.mount.ssh")
        if options.devices:
            caps.add("exec.meta.cdi")

        op, merged = ctx.op_base(constraints.with_caps(*caps), with_platform=True)
        exec_op = op.exec
        exec_op.meta.CopyFrom(meta)
        exec_op.network = int(values.network)  # type: ignore[assignment]
        exec_op.security = int(values.security)  # type: ignore[assignment]

        for m in self._mounts:
            mount = exec_op.mounts.add(
                dest=m.dest, readonly=m.readonly, output=m.output, selector=m.selector
            )
            if m.source is not None:
                mount.input = _input_index(op, m.source.to_input(ctx))
            else:
                mount.input = -1
            if m.cache_id:
                mount.mountType = pb.MountType.CACHE
                mount.cacheOpt.ID = m.cache_id
                mount.cacheOpt.sharing = int(m.sharing)  # type: ignore[assignment]
            mount.contentCache = int(m.content_cache)  # type: ignore[assignment]
            if m.tmpfs:
                mount.mountType = pb.MountType.TMPFS
                mount.TmpfsOpt.size = m.tmpfs_size
                mount.TmpfsOpt.SetInParent()
        for env_secret in options.secret_env:
            exec_op.secretenv.add(
                ID=env_secret.id, name=env_secret.name, optional=env_secret.optional
            )
        for device in options.devices:
            exec_op.cdiDevices.add(name=device.name, optional=device.optional)
        for secret in self._secrets:
            mount = exec_op.mounts.add(input=-1, dest=secret.dest, mountType=pb.MountType.SECRET)
            mount.secretOpt.ID = secret.id
            mount.secretOpt.uid = secret.uid
            mount.secretOpt.gid = secret.gid
            mount.secretOpt.optional = secret.optional
            mount.secretOpt.mode = secret.mode
            mount.secretOpt.SetInParent()
        for sock in self._ssh:
            mount = exec_op.mounts.add(input=-1, dest=sock.dest, mountType=pb.MountType.SSH)
            mount.SSHOpt.ID = sock.id
            mount.SSHOpt.uid = sock.uid
            mount.SSHOpt.gid = sock.gid
            mount.SSHOpt.mode = sock.mode
            mount.SSHOpt.optional = sock.optional
            mount.SSHOpt.SetInParent()
        return op, merged


def _input_index(op: pb.Op, inp: pb.Input) -> int:
    """The index of ``inp`` in ``op.inputs``, appending it if new."""
    for i, existing in enumerate(op.inputs):
        if existing.digest == inp.digest and existing.index == inp.index:
            return i
    op.inputs.append(inp)
    return len(op.inputs) - 1


class ExecState(State):
    """The result of :meth:`State.run`: the exec's root filesystem, with the settings of
    the state ``run`` was called on. Use :attr:`root` for a plain state and
    :meth:`get_mount` for the filesystem another mount left behind."""

    __slots__ = ("_exec",)

    def __init__(self, output: Output | None, values: _Values, exec_op: ExecOp) -> None:
        super().__init__(output, values)
        self._exec = exec_op

    @property
    def exec_op(self) -> ExecOp:
        return self._exec

    @property
    def root(self) -> State:
        """The root filesystem after the process ran."""
        return State(self._output, self._values)

    def get_mount(self, dest: str) -> State:
        """The filesystem at mount ``dest`` after the process ran.

        For a writable bind mount that is a new output of the exec (with the mount
        source's settings); for a read-only bind mount it is the unchanged source. Cache,
        tmpfs, secret and SSH mounts and ``no_output`` mounts have no result and raise
        :class:`UsageError`.
        """
        if dest == ROOT:
            return self.root
        m = self._exec.mount(dest)
        if m is None:
            if self._exec.has_mount(dest):
                raise UsageError(f"mount {dest} has no output")
            raise UsageError(f"no mount at {dest}")
        spec = m.spec
        if isinstance(spec, BindMount):
            if spec.readonly:
                return spec.source
            return spec.source.with_output(self._exec.output(dest))
        raise UsageError(f"mount {dest} has no output")


def new_exec(
    state: State, base: State, options: ExecOptions, constraints: Constraints
) -> ExecState:
    """Build the exec for ``State.run``: ``base`` carries the settings for this process,
    ``state`` those the result keeps."""
    vertex = ExecOp(base, base._values, options, constraints)
    if options.readonly_rootfs:
        root = base.output
    else:
        root = Output(vertex, vertex.mount(ROOT).output, platform=constraints.platform)  # type: ignore[union-attr]
    return ExecState(root, state._values, vertex)
