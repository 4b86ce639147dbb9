"""Content descriptors and the platform object of the image spec."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.core import Digest, Platform

from ._json import canonical_json
from ._values import Reader, empty_map, frozen_map

__all__ = ["Descriptor", "platform_from_json", "platform_to_json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """Points at a blob: its media type, digest and size, plus optional details.

    ``platform`` is kept as written (not normalized) so that an index re-encodes to the
    same bytes; matching normalizes (see :func:`dockyard.oci.select_platform`).
    """

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=empty_map, hash=False)
    data: bytes | None = None
    platform: Platform | None = None
    artifact_type: str = ""

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"descriptor of {self.digest}: negative size {self.size}")
        object.__setattr__(self, "digest", Digest.parse(self.digest))
        object.__setattr__(self, "annotations", frozen_map(self.annotations))

    @classmethod
    def of(cls, media_type: str, content: bytes, /, **details: Any) -> Descriptor:
        """The descriptor of ``content`` (sha256) with ``media_type``; ``details`` are the
        other fields (``platform=``, ``annotations=``, ``data=`` to embed it)."""
        return cls(
            media_type=media_type,
            digest=Digest.from_bytes(content),
            size=len(content),
            **details,
        )

    def to_json(self) -> dict[str, Any]:
        """Fields in the order of the image-spec's Go struct; empty ones omitted."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest)}
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            out["data"] = base64.b64encode(self.data).decode("ascii")
        if self.platform is not None:
            out["platform"] = platform_to_json(self.platform)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def to_bytes(self, *, indent: int = 0) -> bytes:
        """The canonical encoding (see :func:`dockyard.oci.canonical_json`)."""
        return canonical_json(self.to_json(), indent=indent)

    @classmethod
    def from_json(cls, obj: Any, what: str = "descriptor") -> Descriptor:
        """Read a descriptor object; :class:`~dockyard.core.ContentError` if malformed."""
        r = Reader(obj, what)
        size = r.integer("size", -1)
        if size < 0:
            raise r.fail("'size' is missing or negative")
        data = None
        if r.has("data"):
            try:
                data = base64.b64decode(r.text("data"), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise r.fail("'data' is not valid base64") from exc
        platform = None
        if r.has("platform"):
            platform = platform_from_json(r.child("platform"), f"{what} platform")
        return cls(
            media_type=r.text("mediaType"),
            digest=r.digest("digest"),
            size=size,
            urls=r.texts("urls"),
            annotations=r.text_map("annotations"),
            data=data,
            platform=platform,
            artifact_type=r.text("artifactType"),
        )


def platform_to_json(platform: Platform) -> dict[str, Any]:
    out: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os}
    if platform.os_version:
        out["os.version"] = platform.os_version
    if platform.os_features:
        out["os.features"] = list(platform.os_features)
    if platform.variant:
        out["variant"] = platform.variant
    return out


def platform_from_json(obj: Any, what: str = "platform") -> Platform:
    """Read a platform object as written (no normalization)."""
    r = Reader(obj, what)
    return Platform(
        os=r.text("os"),
        architecture=r.text("architecture"),
        variant=r.text("variant"),
        os_version=r.text("os.version"),
        os_features=r.texts("os.features"),
    )
