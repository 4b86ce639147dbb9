"""Conversions a remote build needs: a Dockerfile build's options as BuildKit's frontend
attributes (what ``dockyard.frontend.DockerfileOptions.from_attrs`` reads back), and
exports whose destinations are on this host turned into targets the session offers
(``dest=session:NAME``: the daemon streams the files back)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.core import UsageError, jsontext

if TYPE_CHECKING:
    from dockyard.exporter import ExportOptions
    from dockyard.frontend import DockerfileOptions
    from dockyard.session import ExportTarget

__all__ = ["decode_exporter_response", "dockerfile_attrs", "remote_exports"]

_RESULT_PREFIX = "result."


def dockerfile_attrs(options: DockerfileOptions) -> dict[str, str]:
    """``options`` as ``dockerfile.v0`` frontend attributes (BuildKit's keys)."""
    out: dict[str, str] = {"filename": options.filename}
    if options.dockerfile_dir != "dockerfile":
        out["dockerfilekey"] = options.dockerfile_dir
    if options.context_dir != "context":
        out["contextkey"] = options.context_dir
    if options.target:
        out["target"] = options.target
    for key, value in options.build_args.items():
        out[f"build-arg:{key}"] = value
    for key, value in options.labels.items():
        out[f"label:{key}"] = value
    for key, value in options.named_contexts.items():
        out[f"context:{key}"] = value
    if options.target_platforms:  # one, or BuildKit's comma-separated list
        from dockyard.frontend import format_platforms

        out["platform"] = format_platforms(options.target_platforms)
    if options.check:
        out["requestid"] = "frontend.lint"
    elif options.subrequest is not None:
        out["requestid"] = f"frontend.{options.subrequest}"
    if options.no_cache:
        out["no-cache"] = ""
    elif options.no_cache_stages:
        out["no-cache"] = ",".join(sorted(options.no_cache_stages))
    if options.pull:
        out["image-resolve-mode"] = "pull"
    if options.network.value != "default":
        out["force-network-mode"] = options.network.value
    if options.hostname:
        out["hostname"] = options.hostname
    if options.extra_hosts:
        out["add-hosts"] = ",".join(f"{h.host}={h.ip}" for h in options.extra_hosts)
    if options.ulimits:
        out["ulimit"] = ",".join(str(u) for u in options.ulimits)
    if options.shm_size:
        out["shm-size"] = str(options.shm_size)
    if options.cgroup_parent:
        out["cgroup-parent"] = options.cgroup_parent
    if options.sbom is not None:  # BuildKit's attest:sbom
        from dockyard.exporter import SBOM_ATTR

        out[SBOM_ATTR] = options.sbom.to_attr()
    return out


def remote_exports(
    exports: tuple[ExportOptions, ...],
) -> tuple[tuple[ExportOptions, ...], dict[str, ExportTarget]]:
    """The exports as a daemon takes them, and the session's export targets they name.

    A directory (``type=local``) becomes a directory target the daemon syncs into; a
    file or ``-`` (tarballs) a file target it streams into. Image exports stay as they
    are (they go to the daemon's image store and registries). An OCI or docker layout
    written as a directory (``tar=false``) cannot travel: a
    :class:`~dockyard.core.UsageError`.
    """
    from dockyard.exporter import ClientTarget, ImageExport, LocalExport, LocalPath, Stdout
    from dockyard.session import DirectoryTarget, FileTarget

    out: list[ExportOptions] = []
    targets: dict[str, ExportTarget] = {}
    for index, export in enumerate(exports):
        if isinstance(export, ImageExport):
            out.append(export)
            continue
        dest = export.dest
        if isinstance(dest, ClientTarget):
            out.append(export)
            continue
        name = f"output-{index}"
        if isinstance(export, LocalExport):
            if not isinstance(dest, LocalPath):
                raise UsageError("output type=local needs a directory as dest")
            targets[name] = DirectoryTarget(path=Path(dest.path).absolute())
        elif getattr(export, "tar", True) is False:
            raise UsageError(
                f"output type={export.type_name} with tar=false writes a directory on the "
                "engine's host: a daemon cannot do that for its client (use a tarball)"
            )
        elif isinstance(dest, Stdout):
            targets[name] = FileTarget(fd=1)
        else:
            targets[name] = FileTarget(path=Path(dest.path).absolute())
        out.append(dataclasses.replace(export, dest=ClientTarget(name=name)))
    return tuple(out), targets


def decode_exporter_response(response: Mapping[str, str]) -> dict[str, Any]:
    """The daemon's string map back into the exporters' metadata: values that were not
    strings travel as JSON (objects and lists), and are decoded again — except a
    subrequest's answer (``result.json`` ...), a document kept as the frontend wrote
    it."""
    out: dict[str, Any] = {}
    for key, value in response.items():
        if value[:1] in ("{", "[") and not key.startswith(_RESULT_PREFIX):
            try:
                out[key] = jsontext.loads(value)
                continue
            except ValueError:
                pass
        out[key] = value
    return out
