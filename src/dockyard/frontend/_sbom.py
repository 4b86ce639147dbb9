"""The Dockerfile frontend's SBOM scan (``attest:sbom``), as BuildKit's makes it.

With a generator image, the scan is a build step: the image's entrypoint and command
run (as root, network off, ``/tmp`` a tmpfs) with the result mounted read-only at
``/run/src/core/sbom`` (``$BUILDKIT_SCAN_SOURCE``), each extra target (the build context,
stages — ``BUILDKIT_SBOM_SCAN_CONTEXT`` / ``BUILDKIT_SBOM_SCAN_STAGE``) at
``/run/src/extras/sbom-NAME`` (``$BUILDKIT_SCAN_SOURCE_EXTRAS`` is ``/run/src/extras``
when there is one), and an empty ``/run/out/`` (``$BUILDKIT_SCAN_DESTINATION``) whose
files are the statements; the request's other fields are ``BUILDKIT_SCAN_<KEY>`` (upper case, ``-`` and ``.`` as ``_``). Without
one, the engine's built-in scanner reads the result and the extra targets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.core import UsageError

from .types import FrontendContext, SbomScan

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.dockerfile import ConvertResult, ImageMetaResolver, ResolvedImage
    from dockyard.exporter import SbomOptions

__all__ = ["sbom_scan"]

_SRC = "/run/src/"
_OUT = "/run/out/"
_CORE = "sbom"


async def sbom_scan(
    ctx: FrontendContext,
    options: SbomOptions,
    result: ConvertResult,
    *,
    images: ImageMetaResolver,
    resolve_mode: llb.ResolveMode,
) -> SbomScan:
    """How to make the SBOMs of the conversion ``result`` (see the module docstring)."""
    from dockyard import llb

    platform = result.platform
    if options.builtin:
        return SbomScan(
            targets={
                f"{_CORE}-{name}": state.marshal(platform=platform)
                for name, state in result.sbom_targets.items()
            }
        )
    args, found = await _generator(ctx, options.generator, images, resolve_mode)
    env = {
        "BUILDKIT_SCAN_DESTINATION": _OUT,
        "BUILDKIT_SCAN_SOURCE": f"{_SRC}core/{_CORE}",
    }
    if result.sbom_targets:
        env["BUILDKIT_SCAN_SOURCE_EXTRAS"] = f"{_SRC}extras"
    for key, value in options.params.items():
        env["BUILDKIT_SCAN_" + key.upper().replace("-", "_").replace(".", "_")] = value
    image = llb.image(
        found.ref, platform=ctx.build_platform, name=f"[internal] load {options.generator}"
    )
    if found.config is not None:
        image = image.with_image_config(found.config)
    mounts: list[llb.MountSpec] = [
        llb.TmpfsMount("/tmp"),
        llb.BindMount(f"{_SRC}core/{_CORE}", result.state, readonly=True),
    ]
    mounts += [
        llb.BindMount(f"{_SRC}extras/{_CORE}-{name}", state, readonly=True)
        for name, state in result.sbom_targets.items()
    ]
    mounts.append(llb.BindMount(_OUT, llb.scratch()))
    run = image.run(
        args,
        env=env,
        user="0:0",
        network=llb.NetMode.NONE,
        mounts=mounts,
        name=f"[{platform}] generating sbom using {options.generator}",
    )
    output = run.get_mount(_OUT)
    return SbomScan(generator=options.generator, output=output.marshal(platform=platform))


async def _generator(
    ctx: FrontendContext, generator: str, images: ImageMetaResolver, mode: llb.ResolveMode
) -> tuple[list[str], ResolvedImage]:
    """The generator's command (entrypoint and cmd of its config) and where it was
    found; a :class:`~dockyard.core.UsageError` when it has no command."""
    from dockyard import llb, oci

    ref = llb.normalize_image_ref(generator)
    found = await images.resolve(ref, platform=ctx.build_platform, resolve_mode=mode)
    args: list[str] = []
    if found.config is not None:
        image = oci.ImageConfig.parse(found.config)
        args = [*image.config.entrypoint, *image.config.cmd]
    if not args:
        raise UsageError(f"SBOM generator {generator} does not have a cmd")
    return args, found
