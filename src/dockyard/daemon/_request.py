"""A ``SolveRequest`` off the wire, parsed at the edge into the engine's
:class:`~dockyard.engine.BuildRequest` (and refused with a
:class:`~dockyard.core.UsageError` naming what is wrong)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.core import Reporter, UsageError

if TYPE_CHECKING:
    from dockyard.api._gen import control_pb2 as pb
    from dockyard.engine import BuildRequest
    from dockyard.exporter import ExportOptions, ProvenanceOptions
    from dockyard.frontend import Frontends
    from dockyard.llbsolver import DebugShell
    from dockyard.remotecache import CacheExport, CacheImport
    from dockyard.session import SessionManager

__all__ = ["build_request", "exporter_response"]


def _export(kind: str, attrs: Mapping[str, str]) -> ExportOptions:
    from dockyard.exporter import LocalPath, Stdout, parse_exporter

    options = parse_exporter(kind, attrs)
    dest = getattr(options, "dest", None)
    if isinstance(dest, LocalPath | Stdout):
        where = "stdout" if isinstance(dest, Stdout) else f"{dest.path}"
        raise UsageError(
            f"output type={kind}: dest {where!r} is on the daemon's host; a daemon writes "
            "files to its client only (dest=session:NAME, an export target the client's "
            "session offers)"
        )
    return options


def _caches(message: pb.SolveRequest) -> tuple[tuple[CacheImport, ...], tuple[CacheExport, ...]]:
    """``--cache-from``/``--cache-to`` entries: registry and inline caches, and local
    ones the client offers as content stores of its session (``type=local,store=ID``,
    what ``dockyard --addr`` sends); a local one naming a directory (``src``/``dest``)
    would name one of the daemon's host and is refused."""
    from dockyard.engine import cache_export_from_attrs, cache_import_from_attrs

    for entry in (*message.cache.imports, *message.cache.exports):
        if entry.type.lower() == "local" and "store" not in {k.lower() for k in entry.attrs}:
            raise UsageError(
                "cache type=local names a directory on the daemon's host; a client offers "
                "its directory as a content store of its session instead (type=local,"
                "store=ID, as dockyard --addr does), or use type=registry (or type=inline)"
            )
    imports = tuple(cache_import_from_attrs(e.type, dict(e.attrs)) for e in message.cache.imports)
    exports = tuple(cache_export_from_attrs(e.type, dict(e.attrs)) for e in message.cache.exports)
    return imports, exports


def build_request(
    message: pb.SolveRequest,
    *,
    frontends: Frontends,
    reporter: Reporter,
    sessions: SessionManager | None = None,
) -> BuildRequest:
    """The build ``message`` asks for, its progress going to ``reporter``; a debug shell
    it asks for runs on the terminal its session (in ``sessions``) offers."""
    from dockyard.engine import BuildRequest, EngineConfig
    from dockyard.frontend import PYTHON_FRONTEND

    cache_imports, cache_exports = _caches(message)
    if message.frontend_inputs:
        raise UsageError("this daemon does not take frontend inputs yet")
    definition = None
    frontend = None
    options: object = None
    if message.frontend:
        if message.definition:
            raise UsageError("a build request names a frontend or carries a definition, not both")
        if message.frontend == PYTHON_FRONTEND:
            raise UsageError(
                "the python frontend runs a build file inside the engine's process; a daemon "
                "does not: marshal the build file's graph on the client and send the definition"
            )
        frontend = message.frontend
        options = frontends.get(frontend).parse_options(dict(message.frontend_attrs))
    elif message.definition:
        from dockyard.llb import Definition

        definition = Definition.load(message.definition)
    else:
        raise UsageError("an empty build request: no definition and no frontend")
    exports = tuple(_export(e.type, dict(e.attrs)) for e in message.exporters)
    provenance, attrs = _attestations(message)
    return BuildRequest(
        definition=definition,
        frontend=frontend,
        frontend_options=options,
        exports=exports,
        cache_imports=cache_imports,
        cache_exports=cache_exports,
        session_id=message.session or None,
        entitlements=EngineConfig.parse_entitlements(message.entitlements),
        reporter=reporter,
        name=message.ref,
        provenance=provenance,
        frontend_attrs=attrs,
        debug_shell=_debug_shell(message, sessions) if message.HasField("debug_shell") else None,
    )


def _debug_shell(message: pb.SolveRequest, sessions: SessionManager | None) -> DebugShell:
    """``--invoke``: a shell in this daemon's sandbox whose streams are the terminal of
    the build's own session — never another client's."""
    spec = message.debug_shell
    if not spec.args:
        raise UsageError("a debug shell (--invoke) needs a command")
    if not message.session or sessions is None:
        raise UsageError(
            "a debug shell (--invoke) runs on the terminal of the build's session: "
            "the request names no session"
        )
    from dockyard.llbsolver import DebugShell

    from ._shell import SessionConsole

    return DebugShell(
        args=tuple(spec.args),
        console=SessionConsole(sessions, message.session),
        on_error=spec.on_error,
        on_success=spec.on_success,
    )


def _attestations(message: pb.SolveRequest) -> tuple[ProvenanceOptions | None, dict[str, str]]:
    """The provenance asked for in the frontend attributes (BuildKit's
    ``attest:provenance``) and, when asked, the attributes it records. An SBOM
    (``attest:sbom``) is the frontend's to make (its options parse it); any other
    ``attest:`` kind is refused."""
    attrs = dict(message.frontend_attrs)
    kinds = sorted(k for k in attrs if k.startswith("attest:"))
    if not kinds:
        return None, {}
    from dockyard.exporter import PROVENANCE_ATTR, SBOM_ATTR, ProvenanceOptions

    for key in kinds:
        if key not in (PROVENANCE_ATTR, SBOM_ATTR):
            raise UsageError(
                f"unsupported attestation {key.removeprefix('attest:')!r} (this daemon "
                "makes provenance and sbom)"
            )
    if PROVENANCE_ATTR not in attrs:
        return None, {}
    provenance = ProvenanceOptions.from_attr(attrs[PROVENANCE_ATTR])
    return provenance, attrs if provenance is not None else {}


def exporter_response(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The exporters' metadata as the wire's string map: strings as they are, other
    values (descriptors ...) as JSON."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return out
