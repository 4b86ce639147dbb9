"""``RUN --mount=...``, ``--network=...``, ``--security=...`` and ``--device=...`` values.

A mount is a CSV list of ``key=value`` fields (BuildKit's syntax): ``type`` is one of
``bind`` (default), ``cache``, ``tmpfs``, ``secret``, ``ssh``; the other keys are
``from``, ``source``/``src``, ``target``/``dst``/``destination``, ``readonly``/``ro``,
``readwrite``/``rw``, ``id``, ``sharing`` (``shared``/``private``/``locked``),
``required``, ``size`` (tmpfs), ``mode``/``uid``/``gid`` (cache, secret, ssh) and ``env``
(secret). Values may use variables; keys may not.
"""

from __future__ import annotations

import csv
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._text import parse_go_bool, suggest

__all__ = [
    "CacheSharing",
    "MountError",
    "MountType",
    "NetworkMode",
    "RunDevice",
    "RunMount",
    "SecurityMode",
    "parse_device",
    "parse_mount",
    "parse_network",
    "parse_security",
]


class MountError(ValueError):
    pass


class MountType(enum.Enum):
    BIND = "bind"
    CACHE = "cache"
    TMPFS = "tmpfs"
    SECRET = "secret"
    SSH = "ssh"


class CacheSharing(enum.Enum):
    SHARED = "shared"
    PRIVATE = "private"
    LOCKED = "locked"


class NetworkMode(enum.Enum):
    DEFAULT = "default"
    NONE = "none"
    HOST = "host"


class SecurityMode(enum.Enum):
    SANDBOX = "sandbox"
    INSECURE = "insecure"


_ALL_KEYS = (
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMount:
    """One ``--mount`` of a ``RUN``, as written (defaults such as a secret's target path
    or a cache's id are the converter's to fill in, as they depend on the stage)."""

    type: MountType = MountType.BIND
    source_stage: str | None = None  # ``from=``
    source: str | None = None
    target: str | None = None
    readonly: bool = True
    size: int | None = None  # tmpfs size limit in bytes
    id: str | None = None  # cache/secret/ssh id
    sharing: CacheSharing | None = None
    required: bool = False
    env: str | None = None  # secret as this environment variable ("" = named like its id)
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def _parse_uint(value: str, base: int, what: str) -> int:
    try:
        parsed = int(value, base)
    except ValueError:
        parsed = -1
    if parsed < 0 or parsed >= 1 << 32 or value.startswith(("+", "-")) or "_" in value:
        raise MountError(f"invalid value {value} for {what}")
    return parsed


def _parse_bool(value: str, key: str) -> bool:
    parsed = parse_go_bool(value)
    if parsed is None:
        raise MountError(f"invalid value for {key}: {value} (use true or false)")
    return parsed


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?\Z", re.ASCII)
_MAX_SIZE = (1 << 63) - 1  # Go's int64
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_ram_size(value: str) -> int:
    """Docker's ``RAMInBytes``: ``64m``, ``1.5g``, ``512k``, ``1024`` (binary units)."""
    match = _SIZE_RE.match(value)
    if match is None:
        raise MountError(f"invalid size: {value!r} (use a number with an optional k, m, g suffix)")
    number = float(match.group(1)) if match.group(1).count(".") <= 1 else None
    if number is None:
        raise MountError(f"invalid size: {value!r}")
    size = number * _SIZE_UNITS[(match.group(2) or "").lower()]
    if not size <= _MAX_SIZE:  # also infinity: 400 digits were an OverflowError
        raise MountError(f"invalid size: {value!r} (too large)")
    return int(size)


def _fields(spec: str) -> list[str]:
    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as exc:
        raise MountError(f"failed to parse csv mounts: {exc} in {spec!r}") from None
    return rows[0] if rows else []


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> RunMount:
    """Parse one ``--mount`` value, expanding each value with ``expand``.

    Without ``expand`` only what can be checked before expansion is checked (BuildKit's
    first pass): fields need a value, and ``from`` may not use variables. The result is
    then not meaningful; call again with an expander.
    """
    mount_type = MountType.BIND
    readonly: bool | None = None
    required = False
    source_stage = source = target = mount_id = ""
    env: str | None = None
    size: int | None = None
    sharing: CacheSharing | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    for field in _fields(spec):
        key, sep, value = field.partition("=")
        key = key.lower()
        if not sep:
            if expand is None:
                continue
            if key in ("readonly", "ro"):
                readonly = True
            elif key in ("readwrite", "rw"):
                readonly = False
            elif key == "required":
                _check_required(key, mount_type)
                required = True
            else:
                raise MountError(f"invalid field '{field}' must be a key=value pair")
            continue
        if expand is None:
            if key == "from" and "$" in value[:-1]:
                raise MountError(
                    f"'{key}' doesn't support variable expansion, define alias stage instead"
                )
            continue
        value = expand(value)
        if key == "type":
            mount_type = _mount_type(value)
        elif key == "from":
            source_stage = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "dst", "destination"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(value, key)
        elif key in ("readwrite", "rw"):
            readonly = not _parse_bool(value, key)
        elif key == "required":
            _check_required(key, mount_type)
            required = _parse_bool(value, key)
        elif key == "size":
            if mount_type is not MountType.TMPFS:
                raise MountError(
                    f"unexpected key '{key}' for mount type '{mount_type.value}' "
                    "(size is for tmpfs mounts)"
                )
            size = parse_ram_size(value)
        elif key == "id":
            mount_id = value
        elif key == "sharing":
            try:
                sharing = CacheSharing(value.lower())
            except ValueError:
                raise MountError(
                    f"unsupported sharing value {value!r} (use shared, private or locked)"
                ) from None
        elif key == "mode":
            mode = _parse_uint(value, 8, "mode")
        elif key == "uid":
            uid = _parse_uint(value, 10, "uid")
        elif key == "gid":
            gid = _parse_uint(value, 10, "gid")
        elif key == "env":
            env = value
        else:
            hint = suggest(key, _ALL_KEYS, case_sensitive=True)
            extra = f" (did you mean {hint}?)" if hint else ""
            raise MountError(f"unexpected key '{key}' in '{field}'{extra}")

    if expand is None:
        return RunMount()
    if mount_type not in (MountType.SECRET, MountType.SSH, MountType.CACHE):
        for name, given in (("mode", mode), ("uid", uid), ("gid", gid)):
            if given is not None:
                raise MountError(
                    f"{name} not allowed for {mount_type.value!r} type mounts "
                    "(only cache, secret and ssh mounts take mode, uid and gid)"
                )
    if readonly is None:
        readonly = mount_type not in (MountType.CACHE, MountType.TMPFS)
    if mount_type is MountType.SECRET:
        if source_stage:
            raise MountError("secret mount should not have a from")
        if sharing is not None:
            raise MountError("secret mount should not define sharing")
        if not source and not target and not mount_id:
            raise MountError("invalid secret mount. one of source, target required (or give an id)")
        if source and mount_id:
            raise MountError("both source and id can't be set")
    if sharing is not None and mount_type is not MountType.CACHE:
        raise MountError(f"invalid cache sharing set for {mount_type.value} mount")
    return RunMount(
        type=mount_type,
        source_stage=source_stage or None,
        source=source or None,
        target=target or None,
        readonly=readonly,
        size=size,
        id=mount_id or None,
        sharing=sharing,
        required=required,
        env=env,
        mode=mode,
        uid=uid,
        gid=gid,
    )


def _check_required(key: str, mount_type: MountType) -> None:
    if mount_type not in (MountType.SECRET, MountType.SSH):
        raise MountError(
            f"unexpected key '{key}' for mount type '{mount_type.value}' "
            "(required is for secret and ssh mounts)"
        )


def _mount_type(value: str) -> MountType:
    try:
        return MountType(value.lower())
    except ValueError:
        hint = suggest(value, [t.value for t in MountType], case_sensitive=True)
        extra = f" (did you mean {hint}?)" if hint else " (use bind, cache, tmpfs, secret or ssh)"
        raise MountError(f"unsupported mount type {value!r}{extra}") from None


def parse_network(value: str) -> NetworkMode:
    try:
        return NetworkMode(value)
    except ValueError:
        raise MountError(
            f"unsupported network mode {value!r} (use default, none or host)"
        ) from None


def parse_security(value: str) -> SecurityMode:
    try:
        return SecurityMode(value)
    except ValueError:
        raise MountError(f"unsupported security mode {value!r} (use sandbox or insecure)") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunDevice:
    """One ``--device`` of a ``RUN``: a CDI device ``name`` (see
    :mod:`dockyard.core.cdinames`); a ``required`` one must exist on the worker, any
    other is skipped when it does not."""

    name: str
    required: bool = False


def parse_device(spec: str) -> RunDevice:
    """``--device=NAME[,required[=BOOL]]`` (BuildKit's fields: the name first, or
    ``name=NAME``; ``required`` alone means true)."""
    name = ""
    required = False
    for field in _fields(spec):
        key, sep, value = field.partition("=")
        key = key.lower()
        if not sep:
            if key == "required":
                required = True
            elif not name:
                name = field
            else:
                raise MountError(f"invalid field '{field}' must be a key=value pair")
        elif key == "name":
            if name:
                raise MountError(f"device name already set to {name}")
            name = value
        elif key == "required":
            parsed = parse_go_bool(value)
            if parsed is None:
                raise MountError(f"invalid value for required: {value} (use true or false)")
            required = parsed
        elif not name:
            name = field  # a qualified name: vendor.com/class=device
        else:
            hint = suggest(key, ["name", "required"], case_sensitive=True)
            extra = f" (did you mean {hint}?)" if hint else ""
            raise MountError(f"unexpected key '{key}' in '{field}'{extra}")
    if not name:
        raise MountError(f"--device={spec}: a device name is required")
    from dockyard.core import DockyardError
    from dockyard.core.cdinames import parse_selector

    try:
        parse_selector(name)
    except DockyardError as exc:
        raise MountError(exc.message) from None
    return RunDevice(name=name, required=required)
