"""Docker image references, normalized the way ``docker pull`` and BuildKit name them.

``busybox`` becomes ``docker.io/library/busybox:latest``; a reference with a digest keeps
it and gets no default tag. This is the subset of ``distribution/reference`` that the
``docker-image://`` identifier needs.
"""

from __future__ import annotations

import re

from dockyard.core import Digest, UsageError

__all__ = ["normalize_image_ref"]

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:localhost|(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    r"(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"


def normalize_image_ref(ref: str) -> str:
    """The fully qualified form of ``ref`` (domain, path, tag or digest).

    Raises :class:`UsageError` for a malformed reference.
    """
    text = ref.strip()
    if not text or text != ref:
        raise UsageError(f"invalid image reference {ref!r}")
    name, _, digest = text.partition("@")
    if digest:
        try:
            Digest.parse(digest)
        except ValueError as exc:
            raise UsageError(f"invalid image reference {ref!r}: {exc}") from exc
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise UsageError(f"invalid image reference {ref!r}: bad tag {tag!r}")
    domain, remainder = _split_domain(name)
    if not domain or not _DOMAIN.fullmatch(domain):
        raise UsageError(f"invalid image reference {ref!r}: bad registry {domain!r}")
    if not remainder or not all(_COMPONENT.fullmatch(c) for c in remainder.lower().split("/")):
        raise UsageError(f"invalid image reference {ref!r}: bad repository name {remainder!r}")
    if remainder != remainder.lower():
        raise UsageError(f"invalid image reference {ref!r}: repository name must be lowercase")
    out = f"{domain}/{remainder}"
    if tag:
        out += ":" + tag
    if digest:
        out += "@" + digest
    elif not tag:
        out += ":latest"
    return out


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder
