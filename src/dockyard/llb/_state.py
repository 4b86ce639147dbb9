"""The immutable :class:`State`: a handle on one output of the graph plus the process
settings (env, working directory, user, platform, ...) that later ops inherit.

This follows BuildKit's Go client (``llb.State``): settings travel with the state —
``image("alpine").with_env("A", "1").with_cwd("/src").run(["make"])`` runs ``make`` in
``/src`` with ``A=1`` — and every method returns a new state. Unlike Go, values are
computed eagerly (there are no asynchronous states), so reading them is free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from dockyard.core import Platform, UsageError, jsontext
from dockyard.core.applog import AppendLog
from dockyard.core.ulimits import ULIMIT_NAMES

from . import _paths
from ._constraints import Constraints, NetMode, SecurityMode, options
from ._vertex import Output

if TYPE_CHECKING:
    from datetime import datetime

    from ._definition import Definition
    from ._exec import CDIDevice, ExecState, MountSpec, ProxyEnv, SecretEnv
    from ._file import CopyInput, FileAction, Owner

__all__ = [
    "HOST_GATEWAY",
    "HOST_GATEWAY_IP",
    "ULIMIT_NAMES",
    "HostIP",
    "State",
    "Ulimit",
    "scratch",
]


HOST_GATEWAY = "host-gateway"
"""The special IP of ``--add-host NAME:host-gateway``: see :meth:`HostIP.parse`."""

HOST_GATEWAY_IP = "127.0.0.1"
"""What ``host-gateway`` stands for. Dockyard's ``RUN`` steps share the host's network
(there is no bridge), so the host is reached on its loopback address."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostIP:
    """An ``/etc/hosts`` entry added to execs (``--add-host``): ``ip`` (v4 or v6, kept
    in its canonical form, as BuildKit's ``net.IP`` prints it) for ``host``. A
    :class:`~dockyard.core.UsageError` for a host with blanks or commas (it could not
    travel in the ``add-hosts`` attribute) or an invalid IP."""

    host: str
    ip: str

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() or c == "," for c in self.host):
            raise UsageError(f"invalid host name {self.host!r} for /etc/hosts")
        object.__setattr__(self, "ip", _canonical_ip(self.ip, self.host))

    @classmethod
    def parse(cls, text: str) -> HostIP:
        """``--add-host``'s value as docker reads it: ``NAME:IP`` or ``NAME=IP``; an
        IPv6 address as it is (``db:::1``, split at the first ``:``) or in brackets
        (``db:[::1]``). ``host-gateway`` as the IP is :data:`HOST_GATEWAY_IP` (docker
        gives the bridge's gateway there; Dockyard's steps run on the host's network)."""
        host, sep, ip = text.partition("=")
        if not sep:
            host, sep, ip = text.partition(":")
        if not sep or not host or not ip:
            raise UsageError(f"invalid extra host {text!r} (expected NAME:IP)")
        if ip == HOST_GATEWAY:
            ip = HOST_GATEWAY_IP
        elif len(ip) > 2 and ip[0] == "[" and ip[-1] == "]":
            ip = ip[1:-1]
        return cls(host=host, ip=ip)


def _canonical_ip(ip: str, host: str) -> str:
    import ipaddress  # only here: most graphs have no extra hosts

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise UsageError(f"invalid IP address {ip!r} for host {host!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # as Go prints it
    return str(address)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ulimit:
    """A resource limit for execs (``--ulimit nofile=1024:2048``): ``name`` one of
    :data:`ULIMIT_NAMES`, ``soft`` at most ``hard``, ``-1`` for unlimited. A
    :class:`~dockyard.core.UsageError` otherwise."""

    name: str
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if self.name not in ULIMIT_NAMES:
            raise UsageError(
                f"unknown ulimit {self.name!r} (expected one of {', '.join(sorted(ULIMIT_NAMES))})"
            )
        for value in (self.soft, self.hard):
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise UsageError(f"ulimit {self.name}: invalid limit {value!r} (-1: unlimited)")
        if _unlimited(self.soft) > _unlimited(self.hard):
            raise UsageError(
                f"ulimit {self.name}: the soft limit must be at most the hard limit:"
                f" {self.soft} > {self.hard}"
            )

    @classmethod
    def parse(cls, text: str) -> Ulimit:
        """``NAME=SOFT[:HARD]`` (docker's ``--ulimit``; ``HARD`` defaults to ``SOFT``)."""
        name, sep, values = text.partition("=")
        if not sep:
            raise UsageError(f"invalid ulimit {text!r} (expected NAME=SOFT[:HARD])")
        parts = values.split(":")
        if len(parts) > 2:
            raise UsageError(f"invalid ulimit {text!r}: at most two limits, SOFT[:HARD]")
        try:
            soft, hard = int(parts[0]), int(parts[-1])
        except ValueError:
            raise UsageError(f"invalid ulimit {text!r}: limits are integers") from None
        return cls(name=name.strip(), soft=soft, hard=hard)

    def __str__(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"


def _unlimited(value: int) -> int:
    return 1 << 64 if value == -1 else value


class _Env:
    """An environment as the log of the variables set in it, oldest first, in an
    :class:`~dockyard.core.applog.AppendLog` its derived environments share: a line of
    states each derived from the last appends in place, so a state per ``ENV`` line
    costs O(1), not a copy of the environment each (6000 lines were quadratic); setting
    on an older environment copies its log once (a branch). Reading the variables (an
    exec's op) walks the log once per environment and keeps the result."""

    __slots__ = ("_items", "_log")

    def __init__(self, log: AppendLog[tuple[str, str]]) -> None:
        self._log = log
        self._items: tuple[tuple[str, str], ...] | None = None if len(log) else ()

    def items(self) -> tuple[tuple[str, str], ...]:
        """The variables, each once with its last value, ordered by when they were last
        set."""
        items = self._items
        if items is None:
            log = self._log.as_tuple()
            values = dict(log)
            if len(values) == len(log):
                items = log
            else:
                # a name set again moves to the end: order by the last time it was set
                names = list(dict.fromkeys(name for name, _ in reversed(log)))
                names.reverse()
                items = tuple((name, values[name]) for name in names)
            self._items = items
        return items

    def set(self, pairs: Iterable[tuple[str, str]]) -> _Env:
        if not len(self._log):
            # not the storage of the shared empty environment (it would keep the first
            # chain of states alive for good)
            return _Env(AppendLog(pairs))
        if self._items is not None and len(self._log) > 2 * len(self._items) + 8:
            # mostly names set again: start from the variables
            return _Env(AppendLog((*self._items, *pairs)))
        log = self._log.branch()
        log.extend(pairs)
        return _Env(log)


_NO_ENV = _Env(AppendLog())


class _Values(NamedTuple):
    # A NamedTuple rather than a dataclass: cheap to define, and replaced often.
    env: _Env = _NO_ENV
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    platform: Platform | None = None
    network: NetMode = NetMode.SANDBOX
    security: SecurityMode = SecurityMode.SANDBOX
    extra_hosts: tuple[HostIP, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    cgroup_parent: str = ""


_DEFAULT_VALUES = _Values()


class State:
    """An immutable node of a build graph under construction.

    ``output`` is the filesystem this state stands for (``None``: an empty filesystem,
    :func:`scratch`). The other properties are settings that ops created from this state
    use; ``with_*`` methods return a copy with one setting changed:

    ========================  ==============================  ============================
    property                  set with                        BuildKit Go client
    ========================  ==============================  ============================
    ``env``                   ``with_env(key, value)``        ``AddEnv``
    ``cwd`` (default ``/``)   ``with_cwd(path)``              ``Dir``
    ``user``                  ``with_user(user)``             ``User``
    ``platform``              ``with_platform(platform)``     ``Platform``
    ``hostname``              ``with_hostname(name)``         ``Hostname``
    ``network``               ``with_network(mode)``          ``Network``
    ``security``              ``with_security(mode)``         ``Security``
    ``extra_hosts``           ``with_extra_host(host, ip)``   ``AddExtraHost``
    ``ulimits``               ``with_ulimit(name, s, h)``     ``AddUlimit``
    ``cgroup_parent``         ``with_cgroup_parent(path)``    ``WithCgroupParent``
    ========================  ==============================  ============================

    Ops: :meth:`run` (exec), :meth:`file` (file actions; shortcuts :meth:`mkdir`,
    :meth:`mkfile`, :meth:`rm`, :meth:`symlink`, :meth:`copy`); see also
    :func:`dockyard.llb.merge` and :func:`dockyard.llb.diff`. :meth:`marshal` serializes
    the graph that leads to this state.
    """

    __slots__ = ("_output", "_values")

    def __init__(self, output: Output | None = None, values: _Values = _DEFAULT_VALUES) -> None:
        self._output = output
        if output is not None and output.platform is not None:
            values = values._replace(platform=output.platform)
        self._values = values

    # -- reading --------------------------------------------------------------------

    @property
    def output(self) -> Output | None:
        """The graph output this state stands for; ``None`` for an empty filesystem."""
        return self._output

    @property
    def is_scratch(self) -> bool:
        return self._output is None

    @property
    def env(self) -> dict[str, str]:
        """The environment, in the order variables were last set (a copy)."""
        return dict(self._values.env.items())

    def get_env(self, key: str, default: str | None = None) -> str | None:
        for k, v in self._values.env.items():
            if k == key:
                return v
        return default

    @property
    def cwd(self) -> str:
        return self._values.cwd

    @property
    def user(self) -> str:
        return self._values.user

    @property
    def hostname(self) -> str:
        return self._values.hostname

    @property
    def platform(self) -> Platform | None:
        """The platform set on this state or inherited from its image; ``None``: the
        build's default platform."""
        return self._values.platform

    @property
    def network(self) -> NetMode:
        return self._values.network

    @property
    def security(self) -> SecurityMode:
        return self._values.security

    @property
    def extra_hosts(self) -> tuple[HostIP, ...]:
        return self._values.extra_hosts

    @property
    def ulimits(self) -> tuple[Ulimit, ...]:
        return self._values.ulimits

    @property
    def cgroup_parent(self) -> str:
        return self._values.cgroup_parent

    # -- settings -------------------------------------------------------------------

    def _with(self, **changes: Any) -> State:
        return State(self._output, self._values._replace(**changes))

    def with_env(self, key: str, value: str) -> State:
        """Set ``key`` (replacing an earlier value; the variable moves to the end)."""
        return self.with_envs({key: value})

    def with_envs(self, env: Mapping[str, str]) -> State:
        """Set several variables, in ``env``'s order (as ``with_env`` one after the
        other), in time proportional to ``env`` (see :class:`_Env`)."""
        for key in env:
            if not key or "=" in key:
                raise UsageError(f"invalid environment variable name {key!r}")
        return self._with(env=self._values.env.set(env.items()))

    def with_cwd(self, path: str) -> State:
        """Set the working directory; a relative ``path`` is joined to the current one."""
        if not path.startswith("/"):
            path = _paths.join(self._values.cwd or "/", path)
        return self._with(cwd=path)

    def with_user(self, user: str) -> State:
        """Set the user (``name``, ``uid``, ``name:group`` or ``uid:gid``) execs run as."""
        return self._with(user=user)

    def with_hostname(self, hostname: str) -> State:
        return self._with(hostname=hostname)

    def with_platform(self, platform: Platform | str) -> State:
        if isinstance(platform, str):
            try:
                platform = Platform.parse(platform)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        return self._with(
            platform=Platform.of(platform.os, platform.architecture, platform.variant)
        )

    def with_network(self, mode: NetMode) -> State:
        return self._with(network=NetMode(mode))

    def with_security(self, mode: SecurityMode) -> State:
        return self._with(security=SecurityMode(mode))

    def with_extra_host(self, host: str, ip: str) -> State:
        return self._with(extra_hosts=(*self._values.extra_hosts, HostIP(host=host, ip=ip)))

    def with_ulimit(self, name: str, soft: int, hard: int) -> State:
        return self._with(ulimits=(*self._values.ulimits, Ulimit(name=name, soft=soft, hard=hard)))

    def with_cgroup_parent(self, path: str) -> State:
        return self._with(cgroup_parent=path)

    def with_output(self, output: Output | None) -> State:
        """This state's settings on another output (the output's platform, if any,
        replaces the state's)."""
        return State(output, self._values)

    def with_image_config(self, config: bytes | str | Mapping[str, Any]) -> State:
        """Apply an OCI image config: its ``Env``, ``WorkingDir`` and platform (like
        BuildKit's ``WithImageConfig``; ``User`` and the rest are left to the caller)."""
        try:
            doc = jsontext.loads(config) if isinstance(config, bytes | str) else dict(config)
            cfg = doc.get("config") or {}
            env_list = cfg.get("Env") or []
            workdir = cfg.get("WorkingDir") or ""
        except (ValueError, AttributeError, TypeError) as exc:
            raise UsageError(f"invalid image config: {exc}") from exc
        state = self
        for entry in env_list:
            key, _, value = str(entry).partition("=")
            if key:
                state = state.with_env(key, value)
        state = state.with_cwd(str(workdir))
        if doc.get("architecture") and doc.get("os"):
            state = state._with(
                platform=Platform.of(
                    str(doc["os"]), str(doc["architecture"]), str(doc.get("variant") or "")
                )
            )
        return state

    # -- ops ------------------------------------------------------------------------

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        hostname: str | None = None,
        network: NetMode | None = None,
        security: SecurityMode | None = None,
        mounts: Iterable[MountSpec] = (),
        secret_env: Iterable[SecretEnv] = (),
        extra_hosts: Mapping[str, str] | None = None,
        ulimits: Iterable[Ulimit] = (),
        cgroup_parent: str | None = None,
        shm_size: int = 0,
        valid_exit_codes: Iterable[int] | None = None,
        proxy_env: ProxyEnv | None = None,
        readonly_rootfs: bool = False,
        devices: Iterable[CDIDevice] = (),
        name: str | None = None,
        constraints: Constraints | None = None,
    ) -> ExecState:
        """Run a process with this state as the root filesystem; returns an
        :class:`ExecState` standing for the changed root (``.root``) with access to the
        other writable mounts (``.get_mount(dest)``).

        ``cmd`` is an argument list, or a string run by ``/bin/sh -c`` (the Dockerfile
        shell form; ``shlex.split`` turns a string into an argument list instead). ``env``,
        ``cwd``, ``user``, ``hostname``, ``network``, ``security``, ``extra_hosts``,
        ``ulimits`` and ``cgroup_parent`` override this state's settings for this exec
        only. ``mounts`` add :class:`BindMount`, :class:`CacheMount`,
        :class:`TmpfsMount`, :class:`SecretMount` and :class:`SSHMount`; ``shm_size``
        (bytes, ``--shm-size``) mounts a tmpfs of that size at ``/dev/shm``, as
        BuildKit's Dockerfile frontend does (0: the sandbox's default ``/dev/shm``);
        ``valid_exit_codes`` lists statuses that count as success (default: 0 only).
        ``devices`` are the CDI devices the process gets (:class:`CDIDevice`, in order).
        """
        from ._exec import ExecOptions, new_exec

        base = self
        if env:
            base = base.with_envs(env)
        if cwd is not None:
            base = base.with_cwd(cwd)
        if user is not None:
            base = base.with_user(user)
        if hostname is not None:
            base = base.with_hostname(hostname)
        if network is not None:
            base = base.with_network(network)
        if security is not None:
            base = base.with_security(security)
        for host, ip in (extra_hosts or {}).items():
            base = base.with_extra_host(host, ip)
        for limit in ulimits:
            base = base._with(ulimits=(*base.ulimits, limit))
        if cgroup_parent is not None:
            base = base.with_cgroup_parent(cgroup_parent)
        args = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        mount_specs = tuple(mounts)
        if shm_size:
            if shm_size < 0:
                raise UsageError(f"run: shm_size must not be negative, got {shm_size}")
            from ._exec import SHM_PATH, TmpfsMount

            mount_specs += (TmpfsMount(SHM_PATH, size=shm_size),)
        return new_exec(
            self,
            base,
            ExecOptions(
                args=tuple(args),
                mounts=mount_specs,
                secret_env=tuple(secret_env),
                valid_exit_codes=None if valid_exit_codes is None else tuple(valid_exit_codes),
                proxy_env=proxy_env,
                readonly_rootfs=readonly_rootfs,
                devices=tuple(devices),
            ),
            options(constraints, name),
        )

    def file(
        self, action: FileAction, *, name: str | None = None, constraints: Constraints | None = None
    ) -> State:
        """Apply a chain of file actions (see :func:`dockyard.llb.mkdir` and friends) to
        this state as one file op; relative paths resolve against :attr:`cwd`."""
        from ._file import new_file_op

        return new_file_op(self, action, options(constraints, name))

    def mkdir(
        self,
        path: str,
        mode: int = 0o755,
        *,
        parents: bool = False,
        owner: Owner = None,
        created: datetime | None = None,
        name: str | None = None,
        constraints: Constraints | None = None,
    ) -> State:
        """Shortcut for ``file(mkdir(...))``."""
        from ._file import mkdir

        action = mkdir(path, mode, parents=parents, owner=owner, created=created)
        return self.file(action, name=name, constraints=constraints)

    def mkfile(
        self,
        path: str,
        mode: int,
        data: bytes | str,
        *,
        owner: Owner = None,
        created: datetime | None = None,
        name: str | None = None,
        constraints: Constraints | None = None,
    ) -> State:
        """Shortcut for ``file(mkfile(...))``."""
        from ._file import mkfile

        action = mkfile(path, mode, data, owner=owner, created=created)
        return self.file(action, name=name, constraints=constraints)

    def rm(
        self,
        path: str,
        *,
        allow_not_found: bool = False,
        allow_wildcard: bool = False,
        name: str | None = None,
        constraints: Constraints | None = None,
    ) -> State:
        """Shortcut for ``file(rm(...))``."""
        from ._file import rm

        action = rm(path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard)
        return self.file(action, name=name, constraints=constraints)

    def symlink(
        self,
        oldpath: str,
        newpath: str,
        *,
        owner: Owner = None,
        created: datetime | None = None,
        name: str | None = None,
        constraints: Constraints | None = None,
    ) -> State:
        """Shortcut for ``file(symlink(...))``: a link at ``newpath`` pointing to
        ``oldpath``."""
        from ._file import symlink

        action = symlink(oldpath, newpath, owner=owner, created=created)
        return self.file(action, name=name, constraints=constraints)

    def copy(
        self,
        source: State | CopyInput,
        src: str,
        dest: str,
        *,
        name: str | None = None,
        constraints: Constraints | None = None,
        **copy_options: Any,
    ) -> State:
        """Shortcut for ``file(copy(source, src, dest, **copy_options))``."""
        from ._file import copy

        return self.file(
            copy(source, src, dest, **copy_options), name=name, constraints=constraints
        )

    # -- serializing ------------------------------------------------------------------

    def marshal(
        self,
        *,
        platform: Platform | str | None = None,
        constraints: Constraints | None = None,
        local_unique_id: str | None = None,
    ) -> Definition:
        """Serialize the graph leading to this state into a :class:`Definition`.

        ``platform`` is the default for ops whose platform is not set (the host's if
        omitted); ``constraints`` are defaults merged under every op's own (for example
        ``Constraints(ignore_cache=True)``). The result is deterministic: the same graph
        gives the same bytes and digests in any process.

        ``local_unique_id``, when given, is written as ``local.unique`` into ``local://``
        sources that have no session id. BuildKit's Go client always writes a random one
        (so that a daemon does not share local-source cache between clients); Dockyard
        leaves it out by default to keep digests stable, and identifies local sources by
        their session when they are solved.
        """
        from ._marshal import marshal

        return marshal(
            self, platform=platform, constraints=constraints, local_unique_id=local_unique_id
        )

    def __repr__(self) -> str:
        if self._output is None:
            return f"<State scratch cwd={self.cwd!r}>"
        vertex = type(self._output.vertex).__name__
        return f"<State {vertex}[{self._output.index}] cwd={self.cwd!r}>"


def scratch() -> State:
    """An empty filesystem (no op; ``FROM scratch``)."""
    return State()
