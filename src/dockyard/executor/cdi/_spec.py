"""CDI spec files: read (JSON, or YAML), checked against the CDI specification
(versions 0.3.0 to 1.1.0) and turned into frozen values.

What is checked, as the reference implementation does (``tags.cncf.io/container-device-
interface``): ``cdiVersion`` is a released version and at least the one the features
used need (mount ``type`` 0.4.0; ``hostPath`` of device nodes and device names starting
with a digit 0.5.0; annotations and dots in the class 0.6.0; ``intelRdt`` and
``additionalGids`` 0.7.0; ``netDevices`` and the ``schemata``/``enableMonitoring`` of
``intelRdt`` 1.1.0); ``kind`` is ``vendor/class``; there is at least one device, each
with a valid and unique name and some edits; environment entries are ``KEY=value``;
device node types are ``b``, ``c``, ``u`` or ``p`` and permissions ``r``, ``w``, ``m``;
hooks have a known name and an absolute path; mounts name both paths; annotation keys
are qualified names. Unknown keys are errors (the reference decodes strictly). Every
error is a :class:`~dockyard.core.ConfigError` naming the file and the key.

Spec files are host configuration, trusted as such: their paths and hooks are used as
written. PyYAML is imported only when a ``.yaml``/``.yml`` file is read.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dockyard.core import ConfigError, DockyardError
from dockyard.core.cdinames import check_device_name, check_kind

from .types import (
    HOOK_NAMES,
    SPEC_SUFFIXES,
    CdiMount,
    ContainerEdits,
    DeviceNode,
    Hook,
    IntelRdt,
    NetDevice,
)

__all__ = ["SPEC_SUFFIXES", "VERSIONS", "CdiDevice", "CdiSpec", "parse_spec", "read_spec"]

VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")
"""The CDI spec versions a file may declare (0.1.0 and 0.2.0 are older than any
implementation reads)."""

_MAX_SPEC_BYTES = 16 << 20
_MAX_EXPANDED = 2 * _MAX_SPEC_BYTES  # a YAML document's values, aliases expanded
_ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAX_ANNOTATIONS_BYTES = 256 << 10

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiDevice:
    """One device of a spec: its name within the kind, annotations and edits."""

    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    edits: ContainerEdits = field(default_factory=ContainerEdits)


@dataclass(frozen=True, slots=True, kw_only=True)
class CdiSpec:
    """A checked spec file."""

    path: Path
    version: str
    kind: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[CdiDevice, ...] = ()
    edits: ContainerEdits = field(default_factory=ContainerEdits)

    def qualified(self, device: CdiDevice) -> str:
        return f"{self.kind}={device.name}"


def read_spec(path: Path) -> CdiSpec:
    """Read and check the spec file at ``path`` (JSON unless it ends in ``.yaml`` or
    ``.yml``). Blocking."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the CDI spec: {exc.strerror or exc}") from exc
    if len(data) > _MAX_SPEC_BYTES:
        raise ConfigError(f"{path}: CDI spec is larger than {_MAX_SPEC_BYTES >> 20} MiB")
    yaml = path.suffix in (".yaml", ".yml")
    return parse_spec(data, path=path, yaml=yaml)


def parse_spec(data: bytes | str, *, path: Path, yaml: bool = False) -> CdiSpec:
    """Check the text of a spec file (``yaml``: YAML, else JSON); ``path`` names it in
    errors."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: CDI spec is not UTF-8 text") from None
    if yaml:
        raw = _load_yaml(text, path)
    else:
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: CDI spec is not valid JSON: {exc}") from None
    return _Reader(path, yaml=yaml).spec(raw)


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise ConfigError(f"{path}: reading a YAML CDI spec needs PyYAML") from None
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        # ValueError: an integer past Python's 4300 digits (PyYAML converts with int())
        raise ConfigError(f"{path}: CDI spec is not valid YAML: {exc}") from None
    _check_expansion(document, path)
    return document


def _check_expansion(document: object, path: Path) -> None:
    """Refuse a YAML document whose aliases (``&a`` ... ``*a``) make it stand for far
    more than its text: each use of an alias is the whole aliased value again wherever
    it ends up (environment entries, hook arguments and mount options go into each
    step's ``config.json``), so 16 MiB of text could stand for terabytes. The size the
    document stands for is summed over its distinct values (each alias counted as often
    as it is used, never walked again), so this takes time in proportion to the text;
    a value that contains itself is refused too."""
    sizes: dict[int, int] = {}  # a list's or mapping's expanded size, by id
    active: set[int] = set()  # the lists and mappings being summed (ancestors)
    stack: list[tuple[object, bool]] = [(document, False)]
    while stack:
        item, summed = stack.pop()
        children = _children(item)
        if children is None:
            continue
        key = id(item)
        if summed:
            active.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), _leaf_size(c)) for c in children)
            continue
        if key in sizes:
            continue
        active.add(key)
        stack.append((item, True))
        for child in children:
            if id(child) in active:
                raise ConfigError(f"{path}: CDI spec has a YAML value that contains itself")
            if id(child) not in sizes and _children(child) is not None:
                stack.append((child, False))
    expanded = sizes.get(id(document), _leaf_size(document))
    if expanded > _MAX_EXPANDED:
        raise ConfigError(
            f"{path}: CDI spec expands to more than {_MAX_EXPANDED >> 20} MiB"
            " (YAML aliases used too often)"
        )


def _children(item: object) -> list[object] | None:
    """A list's items or a mapping's keys and values; ``None`` for anything else."""
    if isinstance(item, list):
        return item
    if isinstance(item, Mapping):
        return [*item.keys(), *item.values()]
    return None


def _leaf_size(item: object) -> int:
    return 1 + len(item) if isinstance(item, str) else 1


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class _Reader:
    """Walks the decoded document; ``where`` is the key path for messages."""

    def __init__(self, path: Path, *, yaml: bool) -> None:
        self.path = path
        self.yaml = yaml
        self.needs: dict[str, str] = {}  # version -> first feature that needs it

    def error(self, where: str, message: str) -> ConfigError:
        at = f"{where}: " if where else ""
        return ConfigError(f"{self.path}: {at}{message}")

    def need(self, version: str, feature: str) -> None:
        self.needs.setdefault(version, feature)

    # -- scalars ---------------------------------------------------------------------

    def table(self, value: object, where: str, known: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(where, f"must be an object, not {_show(value)}")
        for key in value:
            if key in known:
                continue
            hint = difflib.get_close_matches(str(key), known, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            full = f"{where}.{key}" if where else str(key)
            raise self.error(full, f"unknown key{suggestion}")
        return value

    def string(self, value: object, where: str) -> str:
        if self.yaml and isinstance(value, bool):
            return "true" if value else "false"  # as the reference's YAML decoding does
        if self.yaml and isinstance(value, int) and value.bit_length() <= 64:
            return str(value)
        if not isinstance(value, str):
            raise self.error(where, f"must be a string, not {_show(value)}")
        if "\0" in value:  # no environment entry, argument, option or path takes one
            raise self.error(where, "must not contain NUL")
        return value

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(where, f"must be a list of strings, not {_show(value)}")
        return tuple(self.string(v, f"{where}[{i}]") for i, v in enumerate(value))

    def integer(self, value: object, where: str, *, low: int, high: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(where, f"must be an integer, not {_show(value)}")
        if not low <= value <= high:
            raise self.error(where, f"{_show(value)} is out of range ({low}..{high})")
        return value

    def u32(self, value: object, where: str) -> int:
        return self.integer(value, where, low=0, high=2**32 - 1)

    def optional_int(self, value: object, where: str, *, high: int = 2**32 - 1) -> int | None:
        return None if value is None else self.integer(value, where, low=0, high=high)

    def boolean(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, f"must be true or false, not {_show(value)}")
        return value

    def items(self, value: object, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(where, f"must be a list, not {_show(value)}")
        return value

    def check(self, where: str, check: Callable[[str], object], value: str) -> None:
        try:
            check(value)
        except DockyardError as exc:
            raise self.error(where, exc.message) from None

    def absolute(self, value: object, where: str) -> str:
        text = self.string(value, where)
        if not text:
            raise self.error(where, "must not be empty")
        if not text.startswith("/"):
            raise self.error(where, f"{text!r} must be an absolute path")
        if "\0" in text:
            raise self.error(where, "must not contain NUL")
        return text

    def env(self, value: object, where: str) -> tuple[str, ...]:
        entries = self.strings(value, where)
        for i, entry in enumerate(entries):
            if entry.find("=") <= 0:
                raise self.error(f"{where}[{i}]", f"{entry!r} is not KEY=value")
        return entries

    def annotations(self, value: object, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(where, f"must be an object of strings, not {_show(value)}")
        out: dict[str, str] = {}
        size = 0
        for key, item in value.items():
            key = self.string(key, where)
            _check_annotation_key(self, key, f"{where}.{key}")
            out[key] = self.string(item, f"{where}.{key}")
            size += len(key) + len(out[key])
        if size > _MAX_ANNOTATIONS_BYTES:
            raise self.error(where, "annotations are larger than 256 KiB")
        if out:
            self.need("0.6.0", "annotations")
        return out

    # -- the document ----------------------------------------------------------------

    def spec(self, raw: object) -> CdiSpec:
        doc = self.table(
            raw, "", ("cdiVersion", "kind", "annotations", "devices", "containerEdits")
        )
        for key in ("cdiVersion", "kind", "devices"):
            if key not in doc:
                raise self.error("", f"{key} is required")
        version = self.string(doc["cdiVersion"], "cdiVersion")
        if version not in VERSIONS:
            raise self.error(
                "cdiVersion",
                f"unknown CDI version {version!r} (known: {', '.join(VERSIONS)})",
            )
        kind = self.string(doc["kind"], "kind")
        self.check("kind", check_kind, kind)
        if "." in kind.partition("/")[2]:
            self.need("0.6.0", "a dot in the class name")
        annotations = self.annotations(doc.get("annotations"), "annotations")
        edits = self.edits(doc.get("containerEdits"), "containerEdits", origin=kind)
        devices: list[CdiDevice] = []
        seen: set[str] = set()
        for i, item in enumerate(self.items(doc["devices"], "devices")):
            device = self.device(item, f"devices[{i}]", kind)
            if device.name in seen:
                raise self.error(f"devices[{i}].name", f"device {device.name!r} is listed twice")
            seen.add(device.name)
            devices.append(device)
        if not devices:
            raise self.error("devices", "a spec needs at least one device")
        self.check_version(version)
        return CdiSpec(
            path=self.path,
            version=version,
            kind=kind,
            annotations=annotations,
            devices=tuple(devices),
            edits=edits,
        )

    def check_version(self, version: str) -> None:
        for needed, feature in sorted(self.needs.items(), key=lambda i: _version_key(i[0])):
            if _version_key(needed) > _version_key(version):
                raise self.error(
                    "cdiVersion",
                    f"{feature} needs CDI version {needed} or later (the spec says {version})",
                )

    def device(self, raw: object, where: str, kind: str) -> CdiDevice:
        doc = self.table(raw, where, ("name", "annotations", "containerEdits"))
        if "name" not in doc:
            raise self.error(where, "name is required")
        name = self.string(doc["name"], f"{where}.name")
        self.check(f"{where}.name", check_device_name, name)
        if not name[0].isalpha():
            self.need("0.5.0", "a device name starting with a digit")
        annotations = self.annotations(doc.get("annotations"), f"{where}.annotations")
        edits = self.edits(
            doc.get("containerEdits"), f"{where}.containerEdits", origin=f"{kind}={name}"
        )
        if edits.is_empty():
            raise self.error(f"{where}.containerEdits", f"device {name!r} has no edits")
        return CdiDevice(name=name, annotations=annotations, edits=edits)

    def edits(self, raw: object, where: str, *, origin: str) -> ContainerEdits:
        if raw is None:
            return ContainerEdits(origin=f"{origin} ({self.path})")
        doc = self.table(
            raw,
            where,
            (
                "env",
                "deviceNodes",
                "mounts",
                "hooks",
                "additionalGids",
                "intelRdt",
                "netDevices",
            ),
        )
        nodes = tuple(
            self.device_node(n, f"{where}.deviceNodes[{i}]")
            for i, n in enumerate(self.items(doc.get("deviceNodes"), f"{where}.deviceNodes"))
        )
        mounts = tuple(
            self.mount(m, f"{where}.mounts[{i}]")
            for i, m in enumerate(self.items(doc.get("mounts"), f"{where}.mounts"))
        )
        hooks = tuple(
            self.hook(h, f"{where}.hooks[{i}]")
            for i, h in enumerate(self.items(doc.get("hooks"), f"{where}.hooks"))
        )
        gids = tuple(
            self.u32(g, f"{where}.additionalGids[{i}]")
            for i, g in enumerate(self.items(doc.get("additionalGids"), f"{where}.additionalGids"))
        )
        if gids:
            self.need("0.7.0", "additionalGids")
        rdt = None
        if doc.get("intelRdt") is not None:
            rdt = self.intel_rdt(doc["intelRdt"], f"{where}.intelRdt")
        net = tuple(
            self.net_device(d, f"{where}.netDevices[{i}]")
            for i, d in enumerate(self.items(doc.get("netDevices"), f"{where}.netDevices"))
        )
        if net:
            self.need("1.1.0", "netDevices")
        return ContainerEdits(
            origin=f"{origin} ({self.path})",
            env=self.env(doc.get("env"), f"{where}.env"),
            device_nodes=nodes,
            mounts=mounts,
            hooks=hooks,
            additional_gids=gids,
            intel_rdt=rdt,
            net_devices=net,
        )

    def device_node(self, raw: object, where: str) -> DeviceNode:
        doc = self.table(
            raw,
            where,
            ("path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"),
        )
        if "path" not in doc:
            raise self.error(where, "path is required")
        host_path = ""
        if doc.get("hostPath") is not None:
            host_path = self.absolute(doc["hostPath"], f"{where}.hostPath")
            self.need("0.5.0", "hostPath of a device node")
        kind = self.string(doc.get("type", ""), f"{where}.type")
        if kind not in ("", "b", "c", "u", "p"):
            raise self.error(f"{where}.type", f"unknown device type {kind!r} (b, c, u or p)")
        permissions = self.string(doc.get("permissions", ""), f"{where}.permissions")
        bad = sorted(set(permissions) - set("rwm"))
        if bad:
            raise self.error(
                f"{where}.permissions", f"{permissions!r}: unknown permission {bad[0]!r} (r, w, m)"
            )
        return DeviceNode(
            path=self.absolute(doc["path"], f"{where}.path"),
            host_path=host_path,
            type=kind,
            major=self.u32(doc.get("major", 0), f"{where}.major"),
            minor=self.u32(doc.get("minor", 0), f"{where}.minor"),
            file_mode=self.optional_int(doc.get("fileMode"), f"{where}.fileMode", high=0o7777),
            permissions=permissions,
            uid=self.optional_int(doc.get("uid"), f"{where}.uid"),
            gid=self.optional_int(doc.get("gid"), f"{where}.gid"),
        )

    def mount(self, raw: object, where: str) -> CdiMount:
        doc = self.table(raw, where, ("hostPath", "containerPath", "type", "options"))
        for key in ("hostPath", "containerPath"):
            if key not in doc:
                raise self.error(where, f"{key} is required")
        kind = self.string(doc.get("type") or "", f"{where}.type")
        if kind:
            self.need("0.4.0", "a mount type")
        return CdiMount(
            host_path=self.absolute(doc["hostPath"], f"{where}.hostPath"),
            container_path=self.absolute(doc["containerPath"], f"{where}.containerPath"),
            type=kind,
            options=self.strings(doc.get("options"), f"{where}.options"),
        )

    def hook(self, raw: object, where: str) -> Hook:
        doc = self.table(raw, where, ("hookName", "path", "args", "env", "timeout"))
        for key in ("hookName", "path"):
            if key not in doc:
                raise self.error(where, f"{key} is required")
        name = self.string(doc["hookName"], f"{where}.hookName")
        if name not in HOOK_NAMES:
            raise self.error(
                f"{where}.hookName", f"unknown hook {name!r} (known: {', '.join(HOOK_NAMES)})"
            )
        timeout = None
        if doc.get("timeout") is not None:
            timeout = self.integer(doc["timeout"], f"{where}.timeout", low=1, high=2**31 - 1)
        return Hook(
            hook_name=name,
            path=self.absolute(doc["path"], f"{where}.path"),
            args=self.strings(doc.get("args"), f"{where}.args"),
            env=self.env(doc.get("env"), f"{where}.env"),
            timeout=timeout,
        )

    def intel_rdt(self, raw: object, where: str) -> IntelRdt:
        doc = self.table(
            raw,
            where,
            (
                "closID",
                "l3CacheSchema",
                "memBwSchema",
                "schemata",
                "enableCMT",
                "enableMBM",
                "enableMonitoring",
            ),
        )
        self.need("0.7.0", "intelRdt")
        clos = self.string(doc.get("closID", ""), f"{where}.closID")
        if clos in (".", "..") or "/" in clos or "\0" in clos:
            raise self.error(f"{where}.closID", f"invalid CLOS name {clos!r}")
        schemata = self.strings(doc.get("schemata"), f"{where}.schemata")
        monitoring = self.boolean(doc.get("enableMonitoring", False), f"{where}.enableMonitoring")
        if schemata or monitoring:
            self.need("1.1.0", "intelRdt schemata and enableMonitoring")
        return IntelRdt(
            clos_id=clos,
            l3_cache_schema=self.string(doc.get("l3CacheSchema", ""), f"{where}.l3CacheSchema"),
            mem_bw_schema=self.string(doc.get("memBwSchema", ""), f"{where}.memBwSchema"),
            schemata=schemata,
            enable_cmt=self.boolean(doc.get("enableCMT", False), f"{where}.enableCMT"),
            enable_mbm=self.boolean(doc.get("enableMBM", False), f"{where}.enableMBM"),
            enable_monitoring=monitoring,
        )

    def net_device(self, raw: object, where: str) -> NetDevice:
        doc = self.table(raw, where, ("hostInterfaceName", "name"))
        host = self.string(doc.get("hostInterfaceName", ""), f"{where}.hostInterfaceName")
        name = self.string(doc.get("name", ""), f"{where}.name")
        for key, value in (("hostInterfaceName", host), ("name", name)):
            if not value or len(value) > 15 or "/" in value or value.strip() != value:
                raise self.error(f"{where}.{key}", f"invalid interface name {value!r}")
        return NetDevice(host_interface_name=host, name=name)


def _check_annotation_key(reader: _Reader, key: str, where: str) -> None:
    """A qualified name as Kubernetes annotations use: ``[prefix/]name``, the prefix a
    DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    labels_ok = all(_DNS_LABEL.match(label) for label in prefix.split("."))
    if slash and (not prefix or len(prefix) > 253 or not labels_ok):
        raise reader.error(where, f"invalid annotation key prefix {prefix!r}")
    if not _ANNOTATION_KEY.match(name):
        raise reader.error(where, f"invalid annotation key {key!r}")


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 64:
        # YAML's 0x/0o/0b integers have no length limit, and printing one of more
        # than 4300 digits is a ValueError
        return f"an integer of {value.bit_length()} bits"
    return repr(value)
