"""Choosing the manifest for a platform out of an index, the way containerd does."""

from __future__ import annotations

from dockyard.core import NotFoundError, Platform

from ._descriptor import Descriptor
from ._manifest import ImageIndex

__all__ = ["platform_candidates", "select_platform"]

_ATTESTATION = "attestation-manifest"
_REFERENCE_TYPE = "vnd.docker.reference.type"


def _normalized(platform: Platform) -> Platform:
    return Platform.of(platform.os, platform.architecture, platform.variant)


def _variant_number(variant: str) -> int | None:
    text = variant.removeprefix("v")
    return int(text) if text.isdigit() else None


def platform_candidates(platform: Platform, *, strict: bool = False) -> tuple[Platform, ...]:
    """The platforms an image may be built for to run on ``platform``, best first.

    Like containerd's ``platforms.Only``: ``amd64/v3`` also takes ``v2``, ``v1`` and
    ``386``; ``arm/v7`` takes ``v6`` and ``v5``; ``arm64`` takes ``arm/v8`` down to
    ``arm/v5``. ``strict`` keeps only the platform itself (``OnlyStrict``). All are
    normalized (``arm64/v8`` is ``arm64``, ``arm`` is ``arm/v7``).
    """
    own = _normalized(platform)
    if strict:
        return (own,)
    out = [own]

    def add(architecture: str, variant: str = "") -> None:
        candidate = Platform.of(own.os, architecture, variant)
        if candidate not in out:
            out.append(candidate)

    if own.architecture == "amd64":
        level = _variant_number(own.variant)
        if level is not None:
            for lower in range(level - 1, 0, -1):
                add("amd64", f"v{lower}")
        add("386")
    elif own.architecture == "arm":
        level = _variant_number(own.variant)
        if level is not None:
            for lower in range(level - 1, 4, -1):
                add("arm", f"v{lower}")
    elif own.architecture == "arm64":
        variant = own.variant or "v8"
        major, _, minor = variant.removeprefix("v").partition(".")
        if major in ("8", "9") and (not minor or minor.isdigit()):
            top = int(minor or 0)
            for m in range(top - 1, -1, -1):
                add("arm64", f"v{major}.{m}" if m else f"v{major}")
            if major == "9":
                for m in range(min(top + 5, 9), -1, -1):
                    add("arm64", f"v8.{m}" if m else "v8")
            for arm in (8, 7, 6, 5):
                add("arm", f"v{arm}")
    return tuple(out)


def _is_attestation(desc: Descriptor) -> bool:
    if desc.annotations.get(_REFERENCE_TYPE) == _ATTESTATION:
        return True
    return desc.platform is not None and desc.platform.os == "unknown"


def select_platform(
    index: ImageIndex, platform: Platform, *, strict: bool = False, name: str = "image"
) -> Descriptor:
    """The entry of ``index`` that best runs on ``platform`` (see :func:`platform_candidates`).

    Attestation manifests (``unknown/unknown``) are never chosen. Among equally good
    entries the first in the index wins. An index whose only image entry has no platform
    yields that entry (OCI layouts written by some tools); the caller checks its config.
    Raises :class:`~dockyard.core.NotFoundError` naming ``name`` and what is available.
    """
    candidates = platform_candidates(platform, strict=strict)
    rank = {candidate: i for i, candidate in enumerate(candidates)}
    best: tuple[int, Descriptor] | None = None
    untagged: list[Descriptor] = []
    for entry in index.manifests:
        if _is_attestation(entry):
            continue
        if entry.platform is None:
            untagged.append(entry)
            continue
        position = rank.get(_normalized(entry.platform))
        if position is not None and (best is None or position < best[0]):
            best = (position, entry)
    if best is not None:
        return best[1]
    tagged = [e for e in index.manifests if e.platform is not None and not _is_attestation(e)]
    if not tagged and len(untagged) == 1:
        return untagged[0]
    available = ", ".join(str(_normalized(e.platform)) for e in tagged if e.platform) or "none"
    raise NotFoundError(
        f"no image for platform {_normalized(platform)} in {name} (available: {available})"
    )
