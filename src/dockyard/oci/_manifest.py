"""Image manifests and indexes (OCI, and Docker schema 2 manifests and manifest lists)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from dockyard.core import ContentError

from ._descriptor import Descriptor
from ._json import canonical_json, load_json_object
from ._mediatypes import MediaType
from ._values import Reader, empty_map, frozen_map

__all__ = ["ImageIndex", "ImageManifest", "Manifest", "manifest_media_type", "parse_manifest"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageManifest:
    """An image manifest: a config blob and an ordered list of layers.

    ``media_type`` is :data:`MediaType.OCI_MANIFEST` or :data:`MediaType.DOCKER_MANIFEST`;
    it is written into the document (the OCI spec makes that optional, Docker requires it).
    """

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = MediaType.OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=empty_map, hash=False)
    subject: Descriptor | None = None
    artifact_type: str = ""
    schema_version: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "annotations", frozen_map(self.annotations))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self, *, indent: int = 0) -> bytes:
        """The canonical encoding (see :func:`dockyard.oci.canonical_json`); ``indent=3``
        is what BuildKit writes for manifests and indexes."""
        return canonical_json(self.to_json(), indent=indent)

    @classmethod
    def from_json(cls, obj: Any, media_type: str = "") -> ImageManifest:
        r = Reader(obj, "image manifest")
        _check_schema_version(r)
        if not r.has("config"):
            raise r.fail("'config' is missing")
        layers = tuple(
            Descriptor.from_json(item, f"image manifest layer {i}")
            for i, item in enumerate(r.items("layers"))
        )
        subject = Descriptor.from_json(r.child("subject"), "subject") if r.has("subject") else None
        return cls(
            config=Descriptor.from_json(r.child("config"), "image manifest config"),
            layers=layers,
            media_type=r.text("mediaType") or media_type,
            annotations=r.text_map("annotations"),
            subject=subject,
            artifact_type=r.text("artifactType"),
            schema_version=r.integer("schemaVersion"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageIndex:
    """An OCI image index or a Docker manifest list: manifests, usually one per platform."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = MediaType.OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=empty_map, hash=False)
    subject: Descriptor | None = None
    artifact_type: str = ""
    schema_version: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifests", tuple(self.manifests))
        object.__setattr__(self, "annotations", frozen_map(self.annotations))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self, *, indent: int = 0) -> bytes:
        """The canonical encoding (see :func:`dockyard.oci.canonical_json`); ``indent=3``
        is what BuildKit writes for indexes."""
        return canonical_json(self.to_json(), indent=indent)

    @classmethod
    def from_json(cls, obj: Any, media_type: str = "") -> ImageIndex:
        r = Reader(obj, "image index")
        _check_schema_version(r)
        manifests = tuple(
            Descriptor.from_json(item, f"image index entry {i}")
            for i, item in enumerate(r.items("manifests"))
        )
        subject = Descriptor.from_json(r.child("subject"), "subject") if r.has("subject") else None
        return cls(
            manifests=manifests,
            media_type=r.text("mediaType") or media_type,
            annotations=r.text_map("annotations"),
            subject=subject,
            artifact_type=r.text("artifactType"),
            schema_version=r.integer("schemaVersion"),
        )


Manifest: TypeAlias = ImageManifest | ImageIndex


def _check_schema_version(r: Reader) -> None:
    version = r.integer("schemaVersion")
    if version == 1:
        raise r.fail("Docker image manifest schema 1 is deprecated and not supported")
    if version != 2:
        raise r.fail(f"unsupported schemaVersion {version}")


def manifest_media_type(obj: dict[str, Any], hint: str = "") -> str:
    """The media type of a parsed manifest document.

    The document's own ``mediaType`` wins; then ``hint`` (a Content-Type header or a
    descriptor's media type) when it names a manifest or index; else the shape decides
    (``manifests`` → OCI index, ``config`` → OCI manifest), as containerd does for
    OCI documents that omit the field.
    """
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    hint = hint.split(";", 1)[0].strip()
    if hint in MediaType.MANIFESTS or hint in MediaType.INDEXES or hint in MediaType.SCHEMA1:
        return hint
    if obj.get("schemaVersion") == 1:
        return MediaType.DOCKER_SCHEMA1_MANIFEST
    if "manifests" in obj:
        return MediaType.OCI_INDEX
    if "config" in obj or "layers" in obj:
        return MediaType.OCI_MANIFEST
    return hint


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    """Parse an image manifest or index from its bytes.

    ``media_type`` is what the transport said (Content-Type, a descriptor); see
    :func:`manifest_media_type`. Raises :class:`~dockyard.core.ContentError` for anything
    that is not a schema-2 manifest or index.
    """
    obj = load_json_object(data, "image manifest")
    kind = manifest_media_type(obj, media_type)
    if kind in MediaType.INDEXES:
        return ImageIndex.from_json(obj, kind)
    if kind in MediaType.MANIFESTS:
        return ImageManifest.from_json(obj, kind)
    if kind in MediaType.SCHEMA1:
        raise ContentError(
            "invalid image manifest: Docker image manifest schema 1 is deprecated and not "
            "supported; push the image again with a current client"
        )
    raise ContentError(f"invalid image manifest: unsupported media type {kind or 'unknown'!r}")
