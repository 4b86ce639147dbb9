"""What an SBOM scans besides the result: BuildKit's ``BUILDKIT_SBOM_SCAN_CONTEXT`` and
``BUILDKIT_SBOM_SCAN_STAGE`` arguments.

Each converted stage looks the two names up as BuildKit's Dockerfile frontend does: the
global value (a meta ``ARG`` before the first ``FROM``, replaced by a ``--build-arg`` of
that name), then the stage's own ``ARG`` (inherited ones included; a later one wins; one
without a value counts for nothing). A value is ``true``/``false`` (Go's boolean words) or
a comma-separated list of the stage names it enables. A ``--build-arg`` alone enables
nothing: it only replaces the value of an ``ARG`` the Dockerfile declares.

The target's ``BUILDKIT_SBOM_SCAN_CONTEXT`` adds the build context (as the build reads
it) under the name ``context``; every stage the target needs (not the target itself)
whose ``BUILDKIT_SBOM_SCAN_STAGE`` is on adds its final filesystem under its name
(``stage-N`` when unnamed). The values never become environment variables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dockyard import llb

from ._convert_stages import SCAN_CONTEXT_ARG, SCAN_STAGE_ARG, StageNode

__all__ = ["SCAN_CONTEXT_ARG", "SCAN_STAGE_ARG", "enabled_for_stage", "sbom_targets"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def enabled_for_stage(stage: str, value: str) -> bool:
    """BuildKit's ``isEnabledForStage``: a boolean word, or a comma-separated list of
    stage names that includes ``stage``."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return stage in value.split(",")


def _stage_name(node: StageNode) -> str:
    return node.name or f"stage-{node.index}"


def _enabled(node: StageNode, arg: str, global_args: Mapping[str, str]) -> bool:
    stage = _stage_name(node)
    enabled = False
    if arg in global_args:
        enabled = enabled_for_stage(stage, global_args[arg])
    value = node.scan_args.get(arg)
    if value is not None:
        enabled = enabled_for_stage(stage, value)
    return enabled


def sbom_targets(
    target: StageNode,
    reachable: Iterable[StageNode],
    *,
    global_args: Mapping[str, str],
    build_context: llb.State,
) -> dict[str, llb.State]:
    """The extra SBOM scan targets of a conversion, by name, in name order (see the
    module docstring)."""
    out: dict[str, llb.State] = {}
    if target.stage is not None and _enabled(target, SCAN_CONTEXT_ARG, global_args):
        out["context"] = build_context
    for node in reachable:
        if node is target or node.stage is None or node.replaced or not node.dispatched:
            continue
        if _enabled(node, SCAN_STAGE_ARG, global_args):
            out[_stage_name(node)] = node.state or llb.scratch()
    return dict(sorted(out.items()))
