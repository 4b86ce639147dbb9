"""Making CDI edits to an OCI runtime spec (the JSON-able ``config.json`` data), as the
reference implementation does:

- ``env``: set in the process environment (an entry replaces one of the same key);
- ``deviceNodes``: a ``linux.devices`` entry at ``path`` (one already there is
  replaced) whose type and numbers come from the host's node at ``hostPath`` (default
  ``path``) when the spec does not give them, owned by the process's user unless
  ``uid``/``gid`` say otherwise; block and character devices also get a device cgroup
  rule allowing ``permissions`` (default ``rwm``);
- ``mounts``: OCI mounts (one at the same destination is replaced), after which all
  mounts are ordered by depth (parents before what is mounted inside them);
- ``hooks``: appended to the spec's hooks of that name;
- ``additionalGids``: added to the process's supplementary groups (0 is ignored);
- ``intelRdt``: sets ``linux.intelRdt`` (the last one wins).

``netDevices`` are refused: the runtimes Dockyard drives do not move network
interfaces, and a device silently missing would be worse than an error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Any

from dockyard.core import ExecError, NotFoundError

from .types import ContainerEdits, DeviceNode

__all__ = ["apply_edits", "destinations"]


def destinations(edits: Sequence[ContainerEdits]) -> list[str]:
    """The container paths the edits mount or create (for the mount-point stubs the
    runtime may leave in the root)."""
    out: list[str] = []
    for e in edits:
        out.extend(m.container_path for m in e.mounts)
        out.extend(n.path for n in e.device_nodes)
    return out


def apply_edits(spec: dict[str, Any], edits: Sequence[ContainerEdits]) -> None:
    """Make ``edits`` to ``spec`` in order (see the module docstring). Reads the host's
    device nodes (blocking). :class:`~dockyard.core.NotFoundError` for a host node that
    is missing, :class:`~dockyard.core.ExecError` for an edit the runtime cannot make."""
    if not edits:
        return
    process = spec.setdefault("process", {})
    user = process.setdefault("user", {})
    linux = spec.setdefault("linux", {})
    mounts_added = False
    env: dict[str, str] = {}  # key -> entry, in the order last set
    for e in edits:
        if e.net_devices:
            raise ExecError(
                f"CDI {e.origin}: netDevices are not supported (the OCI runtime cannot"
                " move network interfaces into a build step)"
            )
        for entry in e.env:
            key = entry.partition("=")[0]
            env.pop(key, None)
            env[key] = entry
        for node in e.device_nodes:
            _add_device(linux, user, node, e.origin)
        for mount in e.mounts:
            spec["mounts"] = [
                m for m in spec.get("mounts", []) if m.get("destination") != mount.container_path
            ]
            oci: dict[str, Any] = {
                "destination": mount.container_path,
                "source": mount.host_path,
                "options": list(mount.options),
            }
            if mount.type:
                oci["type"] = mount.type
            spec["mounts"].append(oci)
            mounts_added = True
        for hook in e.hooks:
            item: dict[str, Any] = {"path": hook.path}
            if hook.args:
                item["args"] = list(hook.args)
            if hook.env:
                item["env"] = list(hook.env)
            if hook.timeout is not None:
                item["timeout"] = hook.timeout
            spec.setdefault("hooks", {}).setdefault(hook.hook_name, []).append(item)
        for gid in e.additional_gids:
            groups = user.setdefault("additionalGids", [])
            if gid and gid not in groups:
                groups.append(gid)
        if e.intel_rdt is not None:
            rdt = e.intel_rdt
            value: dict[str, Any] = {}
            if rdt.clos_id:
                value["closID"] = rdt.clos_id
            if rdt.l3_cache_schema:
                value["l3CacheSchema"] = rdt.l3_cache_schema
            if rdt.mem_bw_schema:
                value["memBwSchema"] = rdt.mem_bw_schema
            if rdt.schemata:
                value["schemata"] = list(rdt.schemata)
            if rdt.enable_cmt:
                value["enableCMT"] = True
            if rdt.enable_mbm:
                value["enableMBM"] = True
            if rdt.enable_monitoring:
                value["enableMonitoring"] = True
            linux["intelRdt"] = value
    if env:
        _set_env(process, env)
    if mounts_added:
        # a stable sort by depth: a mount never hides one made inside it
        spec["mounts"].sort(key=lambda m: _depth(m["destination"]))


def _depth(path: str) -> int:
    return len([p for p in path.split("/") if p])


def _set_env(process: dict[str, Any], entries: dict[str, str]) -> None:
    """The process's environment with ``entries`` (by key) set: each replaces the
    entries of its key and comes after the rest, as setting them one by one would do —
    in one pass (a spec may list many thousands)."""
    kept = [e for e in process.get("env", []) if e.partition("=")[0] not in entries]
    process["env"] = [*kept, *entries.values()]


def _add_device(linux: dict[str, Any], user: dict[str, Any], node: DeviceNode, origin: str) -> None:
    kind, major, minor = _node_numbers(node, origin)
    device: dict[str, Any] = {"path": node.path, "type": kind}
    if kind != "p":
        device["major"] = major
        device["minor"] = minor
    if node.file_mode is not None:
        device["fileMode"] = node.file_mode
    uid = node.uid if node.uid is not None else user.get("uid", 0)
    gid = node.gid if node.gid is not None else user.get("gid", 0)
    if uid:
        device["uid"] = uid
    if gid:
        device["gid"] = gid
    devices = [d for d in linux.get("devices", []) if d.get("path") != node.path]
    devices.append(device)
    linux["devices"] = devices
    if kind in ("b", "c"):
        rules = linux.setdefault("resources", {}).setdefault("devices", [])
        rules.append(
            {
                "allow": True,
                "type": kind,
                "major": major,
                "minor": minor,
                "access": node.permissions or "rwm",
            }
        )


def _node_numbers(node: DeviceNode, origin: str) -> tuple[str, int, int]:
    """Type, major and minor: as given, or the host node's (the reference's rule: a
    type with a major number, or a fifo, needs no look-up)."""
    if node.type and (node.major != 0 or node.type == "p"):
        return node.type, node.major, node.minor
    host = node.host_path or node.path
    try:
        st = os.stat(host)
    except OSError as exc:
        raise NotFoundError(
            f"CDI {origin}: device node {host} for {node.path}: {exc.strerror or exc}"
        ) from exc
    if stat.S_ISCHR(st.st_mode):
        actual = "c"
    elif stat.S_ISBLK(st.st_mode):
        actual = "b"
    elif stat.S_ISFIFO(st.st_mode):
        actual = "p"
    else:
        raise ExecError(f"CDI {origin}: {host} (for {node.path}) is not a device node")
    if node.type and node.type != actual and not (node.type == "u" and actual == "c"):
        raise ExecError(
            f"CDI {origin}: device node {host} is of type {actual!r}, not {node.type!r}"
        )
    kind = node.type or actual
    if node.major == 0 and kind != "p":
        return kind, os.major(st.st_rdev), os.minor(st.st_rdev)
    return kind, node.major, node.minor
