"""Layer 7: where LLB meets the solver.

:func:`load` turns a :class:`dockyard.llb.Definition` into :class:`dockyard.solver.Vertex`
objects whose ops run on a :class:`Worker`; :class:`LlbSolver` solves Definitions in
solver jobs carrying a build's :class:`JobOptions` (session, secrets, SSH agents,
entitlements). The op implementations:

- **source** — delegated to the :class:`SourceResolver` registered for the identifier's
  scheme (``docker-image``, ``local``, ``oci-layout`` ...);
- **exec** — a process under the worker's executor on writable refs, with bind, cache,
  tmpfs, secret and SSH mounts; an :class:`~dockyard.core.ExecError` names the command,
  its exit status and the last lines of its output;
- **file** — chains of copy, mkdir, mkfile, rm and symlink actions with BuildKit's
  semantics (every path resolved inside its root), copy sources keyed by content;
- **merge** and **diff** — composite refs from the cache manager.

The refs come from a :class:`RefStore`: :class:`CacheRefs` adapts the cache manager.
Seams and job values are in :mod:`dockyard.llbsolver.types`. An engine assembles::

    cache = await CacheManager.open(state_dir)
    worker = Worker(
        refs=CacheRefs(cache),
        executor=OciExecutor(state_dir / "executor"),
        sources={"docker-image": images, "local": contexts, "oci-layout": layouts},
        mount_dir=cache.mount_dir,
    )
    solver = Solver(result_storage=cache, key_storage=SqliteCacheKeyStorage(...))
    llbsolver = LlbSolver(worker, solver)
    ref = await llbsolver.solve(definition, options=JobOptions(secrets=handle.secrets))
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

if TYPE_CHECKING:
    from ._cacherefs import CacheRefs
    from ._load import EntitlementError, load
    from ._provenance import (
        BUILDKIT_BUILD_TYPE,
        BUILDKIT_BUILD_TYPE_V1,
        CONTEXT_DIGEST_ATTR,
        ProvenanceCapture,
        capture_provenance,
        invocation_id,
        provenance_predicate,
        secret_looking,
        slsa1_predicate,
        step_layers,
    )
    from ._solve import JobOptions, LlbSolver
    from ._source import source_scheme
    from .types import (
        DEBUG_SHELL,
        ENTITLEMENTS,
        RANDOM_KEY_PREFIX,
        SECRETS,
        SESSION_ID,
        SSH_AGENTS,
        ContentSelector,
        CopyHistory,
        DebugShell,
        Entitlement,
        ImmutableRef,
        LocalConsole,
        MutableRef,
        PreviousCopy,
        RefStore,
        ShellConsole,
        ShellStreams,
        SourceInstance,
        SourceRequest,
        SourceResolver,
        Worker,
    )

# Names load with their modules on first use: the engine's configuration or a job's
# values do not load the op implementations, the cache adapter or the solver.
_LAZY = {
    "CacheRefs": "._cacherefs",
    "EntitlementError": "._load",
    "load": "._load",
    "BUILDKIT_BUILD_TYPE": "._provenance",
    "BUILDKIT_BUILD_TYPE_V1": "._provenance",
    "CONTEXT_DIGEST_ATTR": "._provenance",
    "ProvenanceCapture": "._provenance",
    "capture_provenance": "._provenance",
    "invocation_id": "._provenance",
    "provenance_predicate": "._provenance",
    "secret_looking": "._provenance",
    "slsa1_predicate": "._provenance",
    "step_layers": "._provenance",
    "JobOptions": "._solve",
    "LlbSolver": "._solve",
    "source_scheme": "._source",
    "DEBUG_SHELL": ".types",
    "DebugShell": ".types",
    "ENTITLEMENTS": ".types",
    "RANDOM_KEY_PREFIX": ".types",
    "SECRETS": ".types",
    "SESSION_ID": ".types",
    "SSH_AGENTS": ".types",
    "ContentSelector": ".types",
    "CopyHistory": ".types",
    "Entitlement": ".types",
    "ImmutableRef": ".types",
    "LocalConsole": ".types",
    "MutableRef": ".types",
    "PreviousCopy": ".types",
    "RefStore": ".types",
    "ShellConsole": ".types",
    "ShellStreams": ".types",
    "SourceInstance": ".types",
    "SourceRequest": ".types",
    "SourceResolver": ".types",
    "Worker": ".types",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "BUILDKIT_BUILD_TYPE",
    "BUILDKIT_BUILD_TYPE_V1",
    "CONTEXT_DIGEST_ATTR",
    "DEBUG_SHELL",
    "ENTITLEMENTS",
    "RANDOM_KEY_PREFIX",
    "SECRETS",
    "SESSION_ID",
    "SSH_AGENTS",
    "CacheRefs",
    "ContentSelector",
    "CopyHistory",
    "DebugShell",
    "Entitlement",
    "EntitlementError",
    "ImmutableRef",
    "JobOptions",
    "LlbSolver",
    "LocalConsole",
    "MutableRef",
    "PreviousCopy",
    "ProvenanceCapture",
    "RefStore",
    "ShellConsole",
    "ShellStreams",
    "SourceInstance",
    "SourceRequest",
    "SourceResolver",
    "Worker",
    "capture_provenance",
    "invocation_id",
    "load",
    "provenance_predicate",
    "secret_looking",
    "slsa1_predicate",
    "source_scheme",
    "step_layers",
]
