"""Dockerfile → LLB + image config: :func:`convert`, the last stage of the pipeline.

The steps, each in its own module:

1. arguments and directives (:mod:`._convert_args`): ``# syntax=`` is checked, the
   platform arguments and global ``ARG`` s evaluated, ``SOURCE_DATE_EPOCH`` read;
2. the stage graph (:mod:`._convert_stages`): stages, what ``FROM``/``--from``/``from=``
   name, the target and what it needs; base images resolved concurrently; ``ONBUILD``
   triggers of bases set up;
3. each needed stage converted in file order (:mod:`._convert_dispatch`, ``RUN`` in
   :mod:`._convert_run`, ``COPY``/``ADD`` in :mod:`._convert_copy`), building the LLB
   state and the image config (:mod:`._convert_image`);
4. the build context source made with the paths the build reads
   (:mod:`._convert_context`), the build checks run, the final image config completed.

Stages that do not depend on each other stay independent in the graph, so the solver
runs them in parallel; stages the target does not need are not converted at all.
Every error is a :class:`~dockyard.core.FrontendError` located at ``Dockerfile:LINE``
(a target that does not exist is a :class:`~dockyard.core.UsageError`), and nothing is
built when conversion fails.
"""

from __future__ import annotations

from collections.abc import Callable

from dockyard import llb, oci
from dockyard.core import Platform

from ._convert_args import (
    check_config,
    check_syntax,
    global_args,
    platform_args,
    proxy_env,
    source_date_epoch,
)
from ._convert_context import LateSource, main_context
from ._convert_dispatch import ConvertContext, StageDispatcher
from ._convert_image import add_labels, empty_image, normalize_platform, set_platform
from ._convert_options import (
    ConvertOptions,
    ConvertResult,
    ImageMetaResolver,
    StageResult,
    UnresolvedImages,
)
from ._convert_sbom import sbom_targets
from ._convert_stages import StageGraph, StageNode, build_graph, resolve
from ._dockerfile import Dockerfile
from ._lint import BaseImage, lint
from ._shell import expansion_budget

__all__ = ["convert"]

_EPOCH_ARG = "SOURCE_DATE_EPOCH"


async def convert(
    dockerfile: Dockerfile,
    options: ConvertOptions | None = None,
    resolver: ImageMetaResolver | None = None,
) -> ConvertResult:
    """Convert a parsed Dockerfile for one target platform.

    ``resolver`` supplies base image configs (default: :class:`UnresolvedImages`, which
    leaves them unknown). Raises :class:`~dockyard.core.FrontendError` (with the
    ``Dockerfile:LINE``) for any mistake in the file, including build-check violations
    under ``# check=error=true``, and passes on errors of the resolver located at the
    ``FROM`` that needed the image.
    """
    with expansion_budget():
        return await _convert(dockerfile, options, resolver)


async def _convert(
    dockerfile: Dockerfile,
    options: ConvertOptions | None,
    resolver: ImageMetaResolver | None,
) -> ConvertResult:
    options = options or ConvertOptions()
    resolver = resolver or UnresolvedImages()
    build_args = dict(options.build_args)
    check_syntax(dockerfile, build_args)
    checks = check_config(dockerfile, build_args)
    build_platform = options.build_platform
    target_platform = options.target_platform or build_platform
    target_stage = options.target or dockerfile.stages[-1].name or ""
    args = global_args(
        dockerfile,
        platform_args(build_platform, target_platform, target_stage, build_args),
        build_args,
    )
    epoch, epoch_text = source_date_epoch(build_args, args)
    if epoch_text is not None:
        if _EPOCH_ARG in build_args:
            build_args[_EPOCH_ARG] = epoch_text
        if _EPOCH_ARG in args:
            args[_EPOCH_ARG] = epoch_text

    source_map = llb.SourceMap(
        filename=dockerfile.filename, data=dockerfile.ast.source, language="Dockerfile"
    )
    graph = build_graph(dockerfile, options, args)
    reachable = await resolve(graph, options, resolver, source_map)

    late = LateSource()
    ctx = ConvertContext(
        options=options,
        source_map=source_map,
        escape=dockerfile.escape,
        global_args=args,
        build_args=build_args,
        build_context=llb.State(llb.Output(late)),
        proxy=proxy_env(build_args),
        epoch=epoch,
        target_platform=target_platform,
        context_paths=set(),
    )
    for node in reachable:
        if node.stage is not None and not node.dispatched:
            StageDispatcher(node, ctx).run()
    late.finish(
        main_context(
            options.context_name,
            session_id=options.session_id,
            excludes=options.dockerignore,
            paths=ctx.context_paths,
        )
    )

    report = lint(
        dockerfile,
        build_args=build_args,
        target=str(graph.target.index),
        config=checks,
        base_env=_base_env(graph),
        ignore=options.dockerignore,
    )
    error = report.error()
    if error is not None:
        raise error

    target = graph.target
    image = _final_image(target, options, target_platform)
    stages = {
        node.index: StageResult(
            index=node.index,
            name=node.display_name or (node.name or f"stage-{node.index}"),
            state=node.state or llb.scratch(),
            config=_stage_config(node, target_platform),
        )
        for node in reachable
        if node.stage is not None
    }
    return ConvertResult(
        state=target.state or llb.scratch(),
        image_config=image,
        base_image_config=target.base_image,
        warnings=report.warnings,
        stages=stages,
        platform=target_platform,
        epoch=epoch,
        source_map=source_map,
        sbom_targets=sbom_targets(
            target, reachable, global_args=args, build_context=ctx.build_context
        ),
    )


def _final_image(
    target: StageNode, options: ConvertOptions, target_platform: Platform
) -> oci.ImageConfig:
    image = target.image_config() or empty_image(target.platform or target_platform)
    if options.labels:
        image = add_labels(image, options.labels)
    if options.target_platform is not None:
        image = set_platform(image, options.target_platform)
    return normalize_platform(image)


def _stage_config(node: StageNode, target_platform: Platform) -> Callable[[], oci.ImageConfig]:
    draft, image, platform = node.draft, node.image, node.platform or target_platform

    def config() -> oci.ImageConfig:
        if draft is not None:
            return draft.image()
        return image or empty_image(platform)

    return config


def _base_env(graph: StageGraph) -> Callable[[str], BaseImage | None]:
    """What the build checks may assume about each external base image (its ``ENV`` and
    ``SHELL``), keyed by the base name as written after expansion."""
    known: dict[str, BaseImage] = {}
    for node in graph.stages:
        if node.base is not None or node.replaced or node.base_image is None:
            continue
        config = node.base_image.config
        env: dict[str, str] = {}
        for entry in config.env:
            key, _, value = entry.partition("=")
            env[key] = value
        mismatch = None
        image, expected = node.base_image, node.platform
        if expected is not None and image.os and image.architecture:
            actual = Platform.of(image.os, image.architecture, image.variant)
            if actual != Platform.of(expected.os, expected.architecture, expected.variant):
                mismatch = (str(actual), str(expected))
        known[node.base_name] = BaseImage(env=env, shell=config.shell, platform_mismatch=mismatch)
    return known.get
