"""The daemon's configuration file (TOML), parsed at the edge into frozen values.

The shape follows ``buildkitd.toml`` with our key names (kebab-case); every key is
optional and unknown keys are refused (with a suggestion when a BuildKit spelling such as
``reservedSpace`` was used)::

    state-dir = "/var/lib/dockyard"                 # default: the engine's
    allowed-entitlements = ["network.host"]         # what builds may --allow

    [grpc]
    address = ["unix:///run/dockyard/dockyardd.sock", "tcp://0.0.0.0:1234"]
    group = "dockyard"                              # owner group of unix sockets (name or gid)
    [grpc.tls]                                      # mutual TLS for tcp addresses
    cert = "/etc/dockyard/tls/server.pem"
    key = "/etc/dockyard/tls/server-key.pem"
    ca = "/etc/dockyard/tls/ca.pem"                 # client certificates must chain to it

    [worker]
    runtime = "crun"                                # crun | runc
    runtime-binary = "/usr/local/bin/crun"          # default: found on PATH
    snapshotter = "auto"                            # auto | overlayfs | native
    max-parallelism = 4                             # steps running at once (default: no limit)
    gc = true                                       # garbage collection after builds and on a timer
    gc-interval = "1h"
    # reserved-space = "10%"                        # limits of the built-in GC rules,
    # max-used-space = "60%"                        # when there is no [[worker.gcpolicy]]
    # min-free-space = "20GB"

    [[worker.gcpolicy]]                             # rules, in order (replace the built-in ones)
    filters = ["type==source.local", "type==exec.cachemount"]
    keep-duration = "48h"
    max-used-space = "512MB"
    [[worker.gcpolicy]]
    all = true
    reserved-space = "10GB"

    [cdi]                                           # CDI devices (RUN --device), as buildkitd.toml's
    disabled = false
    spec-dirs = ["/etc/cdi", "/var/run/cdi", "/etc/buildkit/cdi"]   # the default
    auto-allowed = ["vendor.com/gpu"]               # usable without the device entitlement

    [registry."docker.io"]                          # as buildkitd.toml's [registry."host"]
    mirrors = ["mirror.example.com:5000"]
    [registry."registry.local:5000"]
    http = true

Sizes are bytes (integers) or strings with a binary unit as docker takes them (``512MB``
is 512 MiB; ``k``/``kb``/``kib`` … ``t``) or a percentage of the state directory's
filesystem (``"10%"``). Durations are seconds (numbers) or Go durations (``"48h"``,
``"1h30m"``; ``d`` for days too). Relative paths are relative to the file's directory.
A tcp address needs ``[grpc.tls]`` unless it is a loopback address; a unix socket is
created mode 0660, owned by root and ``group`` (root-only by default).

Bad values raise :class:`~dockyard.core.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import difflib
import grp
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from dockyard.cache import RecordType, UsageFilter
from dockyard.core import ConfigError, DockyardError, Entitlement, UsageError
from dockyard.core.address import (
    DEFAULT_SOCKET,
    Listener,
    TcpListener,
    TlsConfig,
    UnixListener,
    parse_address,
)
from dockyard.executor.cdi.types import CdiConfig
from dockyard.registry import RegistryConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_GC_INTERVAL",
    "DEFAULT_SOCKET",
    "DaemonConfig",
    "GcConfig",
    "GcPolicy",
    "Listener",
    "RuntimeName",
    "SnapshotterName",
    "Space",
    "TcpListener",
    "TlsConfig",
    "UnixListener",
    "default_gc_policies",
    "parse_address",
    "parse_duration",
    "parse_space",
]

DEFAULT_CONFIG_PATH = Path("/etc/dockyard/dockyardd.toml")
DEFAULT_GC_INTERVAL = 3600.0

RuntimeName = Literal["crun", "runc"]
SnapshotterName = Literal["auto", "overlayfs", "native"]

T = TypeVar("T")


# -- values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Space:
    """An amount of disk space: ``bytes``, or ``percent`` of the filesystem that holds
    the state directory (resolved with :meth:`resolve` when the disk is known)."""

    bytes: int = 0
    percent: float | None = None

    def resolve(self, disk_total: int) -> int:
        """Bytes, given the size of the state directory's filesystem."""
        if self.percent is not None:
            return int(disk_total * self.percent / 100)
        return self.bytes

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return str(self.bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class GcPolicy:
    """One garbage-collection rule (BuildKit's ``gcpolicy``), applied to the records
    ``filter`` selects (all of them, internal and frontend records too, with ``all``):

    - ``keep_duration`` (seconds): records used more recently are kept;
    - ``reserved_space``: never prune below this much cache;
    - ``max_used_space``: prune while the cache uses more than this;
    - ``min_free_space``: prune while the disk has less free space than this (but not
      below ``reserved_space``).

    A rule with no space limit prunes every record older than ``keep_duration``.
    """

    all: bool = False
    filter: UsageFilter = field(default_factory=UsageFilter)
    keep_duration: float | None = None
    reserved_space: Space | None = None
    max_used_space: Space | None = None
    min_free_space: Space | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GcConfig:
    """Whether GC runs (after builds and every ``interval`` seconds) and its rules, in
    order: a rule applies only if the ones before it did not free enough."""

    enabled: bool = True
    interval: float = DEFAULT_GC_INTERVAL
    policies: tuple[GcPolicy, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """Everything ``dockyardd`` is configured with (see the module docstring).

    ``state_dir`` ``None`` means the engine's default. ``runtime``, ``runtime_binary``,
    ``snapshotter``, ``max_parallelism``, ``registry``, ``entitlements`` and ``cdi``
    mean what the engine's configuration fields of the same names mean
    (``entitlements``: those a build may ask for). ``source`` is the file the values
    came from.
    """

    state_dir: Path | None = None
    runtime: RuntimeName = "crun"
    runtime_binary: str | None = None
    snapshotter: SnapshotterName = "auto"
    max_parallelism: int | None = None
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    entitlements: frozenset[Entitlement] = frozenset()
    listeners: tuple[Listener, ...] = (UnixListener(path=DEFAULT_SOCKET),)
    gc: GcConfig = field(default_factory=lambda: GcConfig(policies=default_gc_policies()))
    cdi: CdiConfig = field(default_factory=CdiConfig)
    source: Path | None = None

    @classmethod
    def load(cls, path: Path | str) -> DaemonConfig:
        """Read and parse a config file."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the config file: {exc.strerror or exc}"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: the config file is not UTF-8 text") from exc
        return cls.from_toml(text, source=path)

    @classmethod
    def from_toml(cls, text: str, *, source: Path | None = None) -> DaemonConfig:
        """Parse the text of a config file (``source``: where it came from, for messages
        and relative paths)."""
        where = str(source) if source is not None else "<config>"
        long_key = _LONG_DOTTED_KEY.search(text)
        if long_key is not None:
            # tomllib keeps every prefix of a dotted key: 10 000 parts (20 KB) took 400 MB
            line = text.count("\n", 0, long_key.start()) + 1
            raise ConfigError(
                f"{where}: line {line}: a dotted key of more than {_MAX_KEY_PARTS} parts"
            )
        try:
            data = tomllib.loads(text)
        except ValueError as exc:  # TOMLDecodeError, or an integer past Python's 4300 digits
            raise ConfigError(f"{where}: invalid TOML: {exc}") from exc
        except RecursionError:  # arrays or inline tables nested past the parser's stack
            raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: Path | None = None) -> DaemonConfig:
        """Parse a config already decoded from TOML."""
        return _Parser(source).config(data)

    def with_overrides(
        self,
        *,
        addresses: Sequence[str] = (),
        state_dir: Path | str | None = None,
    ) -> DaemonConfig:
        """The command line's ``--addr`` (replacing the configured addresses) and
        ``--state-dir``; :class:`~dockyard.core.UsageError` for a bad address."""
        listeners = self.listeners
        if addresses:
            tls = next(
                (ln.tls for ln in self.listeners if isinstance(ln, TcpListener) and ln.tls),
                None,
            )
            group = next((ln.group for ln in self.listeners if isinstance(ln, UnixListener)), None)
            listeners = tuple(_listener(a, tls=tls, group=group) for a in addresses)
        return replace(
            self,
            listeners=listeners,
            state_dir=Path(state_dir).absolute() if state_dir is not None else self.state_dir,
        )


def default_gc_policies(
    *,
    reserved_space: Space | None = None,
    max_used_space: Space | None = None,
    min_free_space: Space | None = None,
) -> tuple[GcPolicy, ...]:
    """The built-in rules (BuildKit's defaults): first the easily re-made records
    (local contexts, cache mounts, git checkouts) unused for 2 days beyond 512 MB; then
    anything unused for 60 days; then anything beyond the space limits; then internal
    and frontend records too."""
    reserved = reserved_space or Space(percent=10)
    max_used = max_used_space or Space(percent=60)
    min_free = min_free_space or Space(percent=20)
    reproducible = UsageFilter(
        types=frozenset(
            {RecordType.SOURCE_LOCAL, RecordType.EXEC_CACHEMOUNT, RecordType.SOURCE_GIT}
        )
    )
    limited = GcPolicy(reserved_space=reserved, max_used_space=max_used, min_free_space=min_free)
    return (
        GcPolicy(
            filter=reproducible, keep_duration=48 * 3600.0, max_used_space=Space(bytes=512 << 20)
        ),
        replace(limited, keep_duration=60 * 86400.0),
        limited,
        replace(limited, all=True),
    )


# -- scalar parsers (also for command-line flags) --------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_space(value: object) -> Space:
    """``512000000``, ``"512MB"`` (binary units, as docker), ``"10%"``; a
    :class:`~dockyard.core.UsageError` otherwise."""
    if isinstance(value, bool):
        raise UsageError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UsageError(f"invalid size {value}: must not be negative")
        if value > _MAX_BYTES:
            raise UsageError(f"invalid size {_short(value)}: more than 2^63-1 bytes")
        return Space(bytes=value)
    if isinstance(value, str):
        percent = _PERCENT.match(value)
        if percent:
            amount = float(percent.group(1))
            if amount > 100:
                raise UsageError(f"invalid size {value!r}: more than 100%")
            return Space(percent=amount)
        match = _SIZE.match(value)
        if match:
            number, unit, _ = match.groups()
            amount = float(number) * (1 << _SIZE_SHIFT[unit.lower()])
            if amount > _MAX_BYTES:  # (infinity too: 400 digits)
                raise UsageError(f"invalid size {_short(value)!r}: more than 2^63-1 bytes")
            return Space(bytes=int(amount))
    raise UsageError(
        f"invalid size {value!r} (expected bytes, a size such as '512MB', or a percentage)"
    )


def parse_duration(value: object) -> float:
    """Seconds: a number of seconds, or a Go duration (``"48h"``, ``"1h30m"``, ``"90s"``,
    plus ``d`` for days); a :class:`~dockyard.core.UsageError` otherwise."""
    if isinstance(value, bool):
        raise UsageError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise UsageError(f"invalid duration {value!r}: must be a positive number of seconds")
        if value > _MAX_SECONDS:  # compared as numbers: a 400-digit int is no float
            raise UsageError(f"invalid duration {_short(value)}: longer than 292 years")
        return float(value)
    if isinstance(value, str):
        from dockyard.core.durations import parse_go_duration

        try:
            seconds = parse_go_duration(value.strip(), days=True) / 1e9
        except ValueError:
            pass
        else:
            if seconds >= 0:
                return seconds
    raise UsageError(f"invalid duration {value!r} (expected seconds or e.g. '48h', '1h30m')")


def _listener(address: str, *, tls: TlsConfig | None, group: int | None) -> Listener:
    listener = parse_address(address, tls=tls, group=group)
    if isinstance(listener, TcpListener) and tls is None and not listener.loopback:
        raise UsageError(
            f"address {address!r} is reachable from other hosts: it needs mutual TLS "
            "([grpc.tls] cert, key and ca in the config file)"
        )
    return listener


# -- the file --------------------------------------------------------------------------

_TOP = ("state-dir", "allowed-entitlements", "grpc", "worker", "registry", "cdi")
_CDI = ("disabled", "spec-dirs", "auto-allowed")
_GRPC = ("address", "group", "tls")
_TLS = ("cert", "key", "ca")
_SPACES = ("reserved-space", "max-used-space", "min-free-space")
_WORKER = (
    "runtime",
    "runtime-binary",
    "snapshotter",
    "max-parallelism",
    "gc",
    "gc-interval",
    *_SPACES,
    "gcpolicy",
)
_POLICY = ("all", "filters", "keep-duration", *_SPACES)
_RECORD_TYPE_ALIASES = {"source.git.checkout": "source.git"}


# a key part (bare, "basic" or 'literal') and its dot, repeated: no config of ours has
# more than four parts; tomllib's cost is quadratic in them
_MAX_KEY_PARTS = 64
_LONG_DOTTED_KEY = re.compile(
    r"""(?<![A-Za-z0-9_-])"""  # a part starts where a run of key characters does, and
    # possessive loops never give back (a search stays linear in the text)
    r"""(?:(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')[ \t]*+\.[ \t]*+)"""
    + f"{{{_MAX_KEY_PARTS}}}"
)
# Go's durations are int64 nanoseconds (~292 years); sizes are int64 bytes
_MAX_SECONDS = (2**63 - 1) / 1e9
_MAX_BYTES = 2**63 - 1


def _squash(key: str) -> str:
    return key.replace("-", "").replace("_", "").lower()


class _Parser:
    def __init__(self, source: Path | None) -> None:
        self.source = source
        self.where = str(source) if source is not None else "<config>"
        self.base = source.parent if source is not None else Path.cwd()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {key}: {message}")

    def table(self, value: object, key: str, known: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, "must be a table")
        for name in value:
            if name in known:
                continue
            guess = [k for k in known if _squash(k) == _squash(name)]
            guess = guess or difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            full = f"{key}.{name}" if key else name
            raise self.error(full, f"unknown key{hint}")
        return value

    def typed(self, value: object, key: str, kind: type[T], what: str) -> T:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"must be {what}, not {_show(value)}")
        return value

    def strings(self, value: object, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, not {_show(value)}")
        return tuple(value)

    def path(self, value: object, key: str) -> Path:
        text = self.typed(value, key, str, "a path")
        if not text:
            raise self.error(key, "must not be empty")
        self.no_nul(text, key)
        return (self.base / Path(text).expanduser()).absolute()

    def no_nul(self, text: str, key: str) -> None:
        """Paths and program names go to the OS, which takes no NUL character (Python
        raises ``ValueError`` when one is passed)."""
        if "\x00" in text:
            raise self.error(key, f"must not contain a NUL character: {text!r}")

    def convert(self, key: str, value: object, parse: Callable[[Any], T]) -> T:
        try:
            return parse(value)
        except DockyardError as exc:
            raise self.error(key, exc.message) from exc

    # -- sections ------------------------------------------------------------------------

    def config(self, data: Mapping[str, Any]) -> DaemonConfig:
        data = self.table(data, "", _TOP)
        worker = self.table(data.get("worker", {}), "worker", _WORKER)
        grpc_table = self.table(data.get("grpc", {}), "grpc", _GRPC)
        runtime = worker.get("runtime", "crun")
        if runtime not in get_args(RuntimeName):
            raise self.error(
                "worker.runtime", f"unknown OCI runtime {runtime!r} (expected crun or runc)"
            )
        snapshotter = worker.get("snapshotter", "auto")
        if snapshotter not in get_args(SnapshotterName):
            raise self.error(
                "worker.snapshotter",
                f"unknown snapshotter {snapshotter!r} (expected auto, overlayfs or native)",
            )
        binary = worker.get("runtime-binary")
        if binary is not None:
            binary = self.typed(binary, "worker.runtime-binary", str, "a program name or path")
            if not binary:
                raise self.error("worker.runtime-binary", "must not be empty")
            self.no_nul(binary, "worker.runtime-binary")
        parallelism = worker.get("max-parallelism")
        if parallelism is not None:
            parallelism = self.typed(parallelism, "worker.max-parallelism", int, "an integer")
            if parallelism < 1:
                raise self.error("worker.max-parallelism", f"must be at least 1, not {parallelism}")
        state_dir = data.get("state-dir")
        return DaemonConfig(
            state_dir=self.path(state_dir, "state-dir") if state_dir is not None else None,
            runtime=runtime,
            runtime_binary=binary,
            snapshotter=snapshotter,
            max_parallelism=parallelism,
            registry=self.registry(data.get("registry", {})),
            entitlements=self.entitlements(data.get("allowed-entitlements", [])),
            listeners=self.listeners(grpc_table),
            gc=self.gc(worker),
            cdi=self.cdi(data.get("cdi", {})),
            source=self.source,
        )

    def registry(self, value: object) -> RegistryConfig:
        if not isinstance(value, Mapping):
            raise self.error("registry", "must be a table of hosts")
        try:
            return RegistryConfig.from_mapping(value)
        except ConfigError as exc:
            raise ConfigError(f"{self.where}: {exc.message}") from exc

    def cdi(self, value: object) -> CdiConfig:
        table = self.table(value, "cdi", _CDI)
        disabled = self.typed(table.get("disabled", False), "cdi.disabled", bool, "true or false")
        dirs = CdiConfig().spec_dirs
        if "spec-dirs" in table:
            dirs = tuple(
                self.path(d, "cdi.spec-dirs")
                for d in self.strings(table["spec-dirs"], "cdi.spec-dirs")
            )
        allowed = self.strings(table.get("auto-allowed", []), "cdi.auto-allowed")
        from dockyard.core.cdinames import parse_selector

        for name in allowed:
            self.convert("cdi.auto-allowed", name, parse_selector)
        return CdiConfig(disabled=disabled, spec_dirs=dirs, auto_allowed=allowed)

    def entitlements(self, value: object) -> frozenset[Entitlement]:
        key = "allowed-entitlements"
        return frozenset(self.convert(key, v, Entitlement.parse) for v in self.strings(value, key))

    def listeners(self, table: Mapping[str, Any]) -> tuple[Listener, ...]:
        group: int | None = None
        if "group" in table:
            group = self.group(table["group"])
        tls: TlsConfig | None = None
        if "tls" in table:
            tls_table = self.table(table["tls"], "grpc.tls", _TLS)
            missing = [k for k in _TLS if k not in tls_table]
            if missing:
                raise self.error(
                    "grpc.tls",
                    f"mutual TLS needs cert, key and ca (missing {', '.join(missing)})",
                )
            tls = TlsConfig(
                cert=self.path(tls_table["cert"], "grpc.tls.cert"),
                key=self.path(tls_table["key"], "grpc.tls.key"),
                ca=self.path(tls_table["ca"], "grpc.tls.ca"),
            )
        addresses = self.strings(table.get("address", [f"unix://{DEFAULT_SOCKET}"]), "grpc.address")
        if not addresses:
            raise self.error("grpc.address", "must list at least one address")
        for address in addresses:
            self.no_nul(address, "grpc.address")
        listeners = tuple(
            self.convert("grpc.address", a, lambda a: _listener(a, tls=tls, group=group))
            for a in addresses
        )
        seen: set[str] = set()
        for listener in listeners:
            if listener.url in seen:
                raise self.error("grpc.address", f"{listener.url} is listed twice")
            seen.add(listener.url)
        return listeners

    def group(self, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < 2**32 - 1:  # 2^32-1 is chown's "unchanged"
                raise self.error("grpc.group", f"invalid group id {_short(value)}")
            return value
        name = self.typed(value, "grpc.group", str, "a group name or id")
        self.no_nul(name, "grpc.group")
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            raise self.error("grpc.group", f"no group named {name!r} on this host") from None

    def space(self, table: Mapping[str, Any], key: str, prefix: str) -> Space | None:
        if key not in table:
            return None
        return self.convert(f"{prefix}.{key}", table[key], parse_space)

    def gc(self, worker: Mapping[str, Any]) -> GcConfig:
        enabled = self.typed(worker.get("gc", True), "worker.gc", bool, "true or false")
        interval = DEFAULT_GC_INTERVAL
        if "gc-interval" in worker:
            interval = self.convert("worker.gc-interval", worker["gc-interval"], parse_duration)
            if interval <= 0:
                raise self.error("worker.gc-interval", "must be longer than 0")
        if "gcpolicy" in worker:
            for key in _SPACES:
                if key in worker:
                    raise self.error(
                        f"worker.{key}",
                        "sets the limits of the built-in GC rules, which [[worker.gcpolicy]] "
                        "replaces: set it in each rule instead",
                    )
            rules = worker["gcpolicy"]
            if not isinstance(rules, list):
                raise self.error(
                    "worker.gcpolicy", "must be a list of tables ([[worker.gcpolicy]])"
                )
            policies = tuple(self.policy(rule, i) for i, rule in enumerate(rules))
        else:
            policies = default_gc_policies(
                reserved_space=self.space(worker, "reserved-space", "worker"),
                max_used_space=self.space(worker, "max-used-space", "worker"),
                min_free_space=self.space(worker, "min-free-space", "worker"),
            )
        return GcConfig(enabled=enabled, interval=interval, policies=policies)

    def policy(self, value: object, index: int) -> GcPolicy:
        key = f"worker.gcpolicy[{index}]"
        rule = self.table(value, key, _POLICY)
        keep: float | None = None
        if "keep-duration" in rule:
            keep = self.convert(f"{key}.keep-duration", rule["keep-duration"], parse_duration)
        return GcPolicy(
            all=self.typed(rule.get("all", False), f"{key}.all", bool, "true or false"),
            filter=self.filters(rule.get("filters", []), f"{key}.filters"),
            keep_duration=keep or None,
            reserved_space=self.space(rule, "reserved-space", key),
            max_used_space=self.space(rule, "max-used-space", key),
            min_free_space=self.space(rule, "min-free-space", key),
        )

    def filters(self, value: object, key: str) -> UsageFilter:
        items: list[str] = []
        for text in self.strings(value, key):
            for item in text.split(","):
                name, sep, wanted = item.partition("=")
                wanted = wanted.removeprefix("=")  # BuildKit's containerd syntax: type==x
                if name.strip() == "type":
                    wanted = _RECORD_TYPE_ALIASES.get(wanted.strip(), wanted.strip())
                items.append(f"{name.strip()}{sep}{wanted}")
        return self.convert(key, items, UsageFilter.parse)


def _short(value: object) -> str:
    """A number or string for a message: long ones cut (and Python's 4300-digit limit
    on printing ints never reached)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}a number of {value.bit_length()} bits"
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
