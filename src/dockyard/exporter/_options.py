"""Exporter options: frozen values per exporter, parsed at the edge.

:func:`parse_output` reads a ``--output`` spec as buildx does (CSV ``key=value`` fields;
``-o DIR`` is ``type=local,dest=DIR``; ``-o -`` is ``type=tar,dest=-``);
:func:`parse_exporter` reads a type plus BuildKit-style attributes (what a daemon
receives on the wire), and each option value's ``to_attrs()`` gives them back. Bad input
raises :class:`~dockyard.core.UsageError` naming the key.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from dockyard.core import Platform, UsageError
from dockyard.core.csvfields import csv_fields, key_values, redact
from dockyard.registry import InvalidReferenceError, Reference

__all__ = [
    "Annotation",
    "AnnotationKind",
    "ClientTarget",
    "Compression",
    "CompressionOptions",
    "Dest",
    "DockerExport",
    "ExportOptions",
    "ImageExport",
    "ImageOptions",
    "LocalExport",
    "LocalPath",
    "OciExport",
    "Stdout",
    "TarExport",
    "parse_annotation",
    "parse_exporter",
    "parse_output",
]


# -- destinations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalPath:
    """A path on the engine's host, written by the engine (embedded builds)."""

    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Stdout:
    """The engine process's standard output (``dest=-`` of an embedded build)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTarget:
    """An export target the client offers through its session (by name): what a client
    of a remote engine substitutes for a path before sending the options."""

    name: str


Dest: TypeAlias = LocalPath | Stdout | ClientTarget


def _dest_attr(dest: Dest) -> str:
    if isinstance(dest, LocalPath):
        return str(dest.path)
    if isinstance(dest, Stdout):
        return "-"
    return "session:" + dest.name


def _parse_dest(value: str, kind: str) -> Dest:
    if not value:
        raise UsageError(f"output type {kind} needs dest=")
    if value == "-":
        return Stdout()
    if value.startswith("session:") and len(value) > len("session:"):
        return ClientTarget(name=value[len("session:") :])
    return LocalPath(path=Path(value))


# -- compression -------------------------------------------------------------------------


class Compression(enum.Enum):
    GZIP = "gzip"
    ZSTD = "zstd"
    UNCOMPRESSED = "uncompressed"
    #: gzip laid out as eStargz (seekable: a member per file chunk, a TOC, a footer);
    #: its media type is gzip's
    ESTARGZ = "estargz"

    @property
    def media_compression(self) -> str:
        """The compression its media type names (``gzip`` for eStargz)."""
        return "gzip" if self is Compression.ESTARGZ else self.value

    @property
    def oci_only(self) -> bool:
        """Whether its layers need OCI media types (eStargz: its descriptor annotations,
        which Docker's media types drop; zstd: Docker's have no zstd type)."""
        return self in (Compression.ZSTD, Compression.ESTARGZ)


_LEVELS = {Compression.GZIP: (0, 9), Compression.ZSTD: (1, 22), Compression.ESTARGZ: (0, 9)}
DEFAULT_LEVELS = {Compression.GZIP: 6, Compression.ZSTD: 3, Compression.ESTARGZ: 6}


@dataclass(frozen=True, slots=True, kw_only=True)
class CompressionOptions:
    """How new layer blobs are compressed.

    ``level`` ``None`` is the type's default (gzip and estargz 6, zstd 3). ``force``
    recompresses layers that already have a blob in another compression (a pulled base
    image's gzip layers for a zstd or estargz export); without it such blobs are reused
    as BuildKit does.
    """

    type: Compression = Compression.GZIP
    level: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.level is not None:
            bounds = _LEVELS.get(self.type)
            if bounds is None:
                raise UsageError("compression-level needs compression=gzip, estargz or zstd")
            low, high = bounds
            if not low <= self.level <= high:
                raise UsageError(
                    f"compression-level {self.level} is out of range for {self.type.value} "
                    f"({low}-{high})"
                )

    @property
    def effective_level(self) -> int:
        if self.level is not None:
            return self.level
        return DEFAULT_LEVELS.get(self.type, 0)

    def variant(self, epoch: int | None = None) -> str:
        """The name of the blob variant this makes (see :class:`dockyard.cache.LayerBlob`):
        ``gzip``, ``zstd-19``, ``gzip;epoch=1700000000``..."""
        text = self.type.value
        if self.level is not None and self.level != DEFAULT_LEVELS.get(self.type):
            text += f"-{self.level}"
        if epoch is not None:
            text += f";epoch={epoch}"
        return text


# -- annotations -------------------------------------------------------------------------


class AnnotationKind(enum.Enum):
    """Where an annotation goes (BuildKit's ``annotation-<kind>.key=value``)."""

    MANIFEST = "manifest"
    MANIFEST_DESCRIPTOR = "manifest-descriptor"
    INDEX = "index"
    INDEX_DESCRIPTOR = "index-descriptor"


@dataclass(frozen=True, slots=True, kw_only=True)
class Annotation:
    """One annotation; ``platform`` limits it to that platform's manifest."""

    kind: AnnotationKind
    key: str
    value: str
    platform: Platform | None = None

    def attr(self) -> tuple[str, str]:
        prefix = (
            "annotation"
            if self.kind is AnnotationKind.MANIFEST
            else f"annotation-{self.kind.value}"
        )
        if self.platform is not None:
            prefix += f"[{self.platform}]"
        return f"{prefix}.{self.key}", self.value


_ANNOTATION = re.compile(r"^annotation(?:-([a-z-]+))?(?:\[([^\]]*)\])?\.(.+)$")


def _parse_annotation(key: str, value: str) -> Annotation:
    match = _ANNOTATION.match(key)
    if match is None:
        raise UsageError(f"invalid annotation option {key!r} (expected annotation.KEY=VALUE)")
    kind_text, platform_text, name = match.groups()
    try:
        kind = AnnotationKind(kind_text or "manifest")
    except ValueError:
        known = ", ".join(f"annotation-{k.value}" for k in AnnotationKind)
        raise UsageError(
            f"invalid annotation option {key!r} (prefixes: annotation, {known})"
        ) from None
    platform = _qualifier(platform_text, f"invalid annotation option {key!r}")
    return Annotation(kind=kind, key=name, value=value, platform=platform)


def _qualifier(text: str | None, where: str) -> Platform | None:
    """The platform of an annotation's ``[PLATFORM]`` (``None``: none given); a bad one
    is a :class:`~dockyard.core.UsageError` starting with ``where``."""
    if text is None:
        return None
    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


_FLAG_TYPE = re.compile(r"^([a-z-]+)(?:\[([^\]]*)\])?$")


def parse_annotation(text: str) -> tuple[Annotation, ...]:
    """One ``--annotation`` value, as buildx reads it: ``KEY=VALUE`` (on the image
    manifests) or ``TYPES:KEY=VALUE`` where ``TYPES`` is a comma list of ``manifest``,
    ``manifest-descriptor``, ``index`` and ``index-descriptor``, each optionally
    limited to one platform (``manifest[linux/amd64]:KEY=VALUE``). One annotation per
    type; a :class:`~dockyard.core.UsageError` naming the flag for a bad value."""
    head, sep, value = text.partition("=")
    if not sep or not head.strip():
        raise UsageError(f"--annotation {text!r}: expected [TYPE:]KEY=VALUE")
    types, colon, key = head.partition(":")
    if not colon:
        types, key = "manifest", types
    key = key.strip()
    if not key:
        raise UsageError(f"--annotation {text!r}: the key is empty")
    out: list[Annotation] = []
    for item in _type_items(types):
        match = _FLAG_TYPE.match(item)
        if match is None:
            raise UsageError(f"--annotation {text!r}: invalid type {item!r}")
        kind_text, platform_text = match.groups()
        try:
            kind = AnnotationKind(kind_text)
        except ValueError:
            known = ", ".join(k.value for k in AnnotationKind)
            raise UsageError(
                f"--annotation {text!r}: unknown type {kind_text!r} (expected {known})"
            ) from None
        platform = _qualifier(platform_text, f"--annotation {text!r}")
        annotation = Annotation(kind=kind, key=key, value=value, platform=platform)
        if annotation not in out:
            out.append(annotation)
    return tuple(out)


def _type_items(types: str) -> list[str]:
    """``TYPES`` split at the commas outside brackets (a platform holds none, but a
    wrong one should be named whole)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(types):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(types[start:i].strip())
            start = i + 1
    items.append(types[start:].strip())
    return items


# -- option values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageOptions:
    """What the image-making exporters (``image``, ``oci``, ``docker``) share.

    ``names``: canonical references (``docker.io/library/app:latest``).
    ``oci_mediatypes``: OCI media types for manifest, config and layers (``None``: the
    exporter's default, Docker types for ``image``/``docker``, OCI for ``oci``; zstd
    and estargz layers force OCI types, and estargz with an explicit
    ``oci-mediatypes=false`` is refused as BuildKit does). ``rewrite_timestamp``: clamp
    file times inside new layers to the ``SOURCE_DATE_EPOCH``. ``source_date_epoch``:
    overrides the build's.
    """

    names: tuple[Reference, ...] = ()
    compression: CompressionOptions = field(default_factory=CompressionOptions)
    oci_mediatypes: bool | None = None
    annotations: tuple[Annotation, ...] = ()
    rewrite_timestamp: bool = False
    source_date_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.compression.type is Compression.ESTARGZ and self.oci_mediatypes is False:
            raise UsageError(
                'exporter option "compression=estargz" conflicts with "oci-mediatypes=false"'
                " (eStargz needs its layer annotations, which Docker media types cannot carry)"
            )

    def use_oci(self, default: bool) -> bool:
        if self.compression.type.oci_only:
            return True
        if any(
            a.kind is not AnnotationKind.MANIFEST for a in self.annotations
        ):  # BuildKit switches to OCI types for descriptor/index annotations
            return True
        return default if self.oci_mediatypes is None else self.oci_mediatypes

    def annotations_for(
        self, kind: AnnotationKind, platform: Platform | None = None
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        for a in self.annotations:
            if a.kind is not kind:
                continue
            if a.platform is not None and (
                platform is None or not _same_platform(a.platform, platform)
            ):
                continue
            out[a.key] = a.value
        return out

    def attrs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.names:
            out["name"] = ",".join(str(n) for n in self.names)
        if self.compression != CompressionOptions():
            out["compression"] = self.compression.type.value
            if self.compression.level is not None:
                out["compression-level"] = str(self.compression.level)
            if self.compression.force:
                out["force-compression"] = "true"
        if self.oci_mediatypes is not None:
            out["oci-mediatypes"] = _bool_text(self.oci_mediatypes)
        for a in self.annotations:
            k, v = a.attr()
            out[k] = v
        if self.rewrite_timestamp:
            out["rewrite-timestamp"] = "true"
        if self.source_date_epoch is not None:
            out["source-date-epoch"] = str(self.source_date_epoch)
        return out


def _same_platform(a: Platform, b: Platform) -> bool:
    return Platform.of(a.os, a.architecture, a.variant) == Platform.of(
        b.os, b.architecture, b.variant
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalExport:
    """``type=local``: the result's files into a directory (merged with what is there).

    ``platform_split``: a multi-platform build's files go to a sub-directory per
    platform (``linux_amd64`` ...; ``None`` is BuildKit's default, true) or, with
    ``False``, all into the directory itself."""

    dest: Dest
    source_date_epoch: int | None = None
    platform_split: bool | None = None

    type_name = "local"

    def to_attrs(self) -> dict[str, str]:
        out = {"dest": _dest_attr(self.dest)}
        if self.source_date_epoch is not None:
            out["source-date-epoch"] = str(self.source_date_epoch)
        if self.platform_split is not None:
            out["platform-split"] = _bool_text(self.platform_split)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TarExport:
    """``type=tar``: the result's files as one tar stream (to a file or stdout)."""

    dest: Dest
    source_date_epoch: int | None = None

    type_name = "tar"

    def to_attrs(self) -> dict[str, str]:
        out = {"dest": _dest_attr(self.dest)}
        if self.source_date_epoch is not None:
            out["source-date-epoch"] = str(self.source_date_epoch)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageExport:
    """``type=image`` (``type=registry`` is the same with ``push``): an image in the
    local store under each name, pushed to its registry with ``push``.

    ``push_by_digest``: push the manifest by digest only (no tag). ``insecure``: the
    registries may use plain HTTP or unverified TLS. ``store``: keep the image in the
    local store (dangling when it has no name). ``name_canonical``: also store
    ``name@digest``. ``dangling_name_prefix``: store ``prefix@digest`` too (when
    ``names`` is empty only, with ``dangling_empty_only``).
    """

    image: ImageOptions = field(default_factory=ImageOptions)
    push: bool = False
    push_by_digest: bool = False
    insecure: bool = False
    store: bool = True
    name_canonical: bool = False
    dangling_name_prefix: str = ""
    dangling_empty_only: bool = False

    type_name = "image"

    def to_attrs(self) -> dict[str, str]:
        out = self.image.attrs()
        for key, value, default in (
            ("push", self.push, False),
            ("push-by-digest", self.push_by_digest, False),
            ("registry.insecure", self.insecure, False),
            ("store", self.store, True),
            ("name-canonical", self.name_canonical, False),
            ("danging-name-empty-only", self.dangling_empty_only, False),
        ):
            if value != default:
                out[key] = _bool_text(value)
        if self.dangling_name_prefix:
            out["dangling-name-prefix"] = self.dangling_name_prefix
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class OciExport:
    """``type=oci``: an OCI image layout tarball (``tar=False``: a layout directory)."""

    dest: Dest
    image: ImageOptions = field(default_factory=ImageOptions)
    tar: bool = True

    type_name = "oci"

    def to_attrs(self) -> dict[str, str]:
        out = {"dest": _dest_attr(self.dest), **self.image.attrs()}
        if not self.tar:
            out["tar"] = "false"
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DockerExport:
    """``type=docker``: a tarball ``docker load`` accepts (``manifest.json`` and
    ``repositories`` beside an OCI layout); ``tar=False`` writes it as a directory."""

    dest: Dest
    image: ImageOptions = field(default_factory=ImageOptions)
    tar: bool = True

    type_name = "docker"

    def to_attrs(self) -> dict[str, str]:
        out = {"dest": _dest_attr(self.dest), **self.image.attrs()}
        if not self.tar:
            out["tar"] = "false"
        return out


ExportOptions: TypeAlias = LocalExport | TarExport | ImageExport | OciExport | DockerExport


# -- parsing -----------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _parse_bool(key: str, value: str, *, empty: bool | None = True) -> bool:
    """Go's ``strconv.ParseBool``; an empty value means ``empty`` (BuildKit's
    ``parseBoolWithDefault``)."""
    if value == "" and empty is not None:
        return empty
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"invalid value {value!r} for {key} (expected true or false)")


def _parse_int(key: str, value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise UsageError(f"invalid value {value!r} for {key} (expected an integer)") from None


def _parse_epoch(value: str) -> int:
    epoch = _parse_int("source-date-epoch", value)
    if epoch < 0:
        raise UsageError(f"invalid source-date-epoch {value!r} (seconds since 1970)")
    return epoch


def _parse_names(value: str) -> tuple[Reference, ...]:
    out: list[Reference] = []
    for text in value.split(","):
        text = text.strip()
        if not text:
            continue
        try:
            ref = Reference.parse(text)
        except InvalidReferenceError as exc:
            raise UsageError(f"invalid image name {text!r}: {exc}") from exc
        if ref.digest is not None:
            raise UsageError(f"invalid image name {text!r}: a name to export cannot have a digest")
        if ref not in out:
            out.append(ref)
    return tuple(out)


class _Attrs:
    """Takes attributes one by one; whatever is left at the end is an error."""

    def __init__(self, kind: str, attrs: Mapping[str, str]) -> None:
        self.kind = kind
        self.left = dict(attrs)

    def pop(self, key: str) -> str | None:
        return self.left.pop(key, None)

    def finish(self) -> None:
        if self.left:
            names = ", ".join(sorted(self.left))
            raise UsageError(f"unknown option(s) for output type {self.kind}: {names}")


def _image_options(a: _Attrs) -> ImageOptions:
    names = _parse_names(a.pop("name") or "")
    compression_text = a.pop("compression")
    level_text = a.pop("compression-level")
    force_text = a.pop("force-compression")
    try:
        ctype = Compression(compression_text) if compression_text else Compression.GZIP
    except ValueError:
        raise UsageError(
            f"unsupported compression {compression_text!r} (gzip, estargz, zstd or uncompressed)"
        ) from None
    compression = CompressionOptions(
        type=ctype,
        level=_parse_int("compression-level", level_text) if level_text else None,
        force=_parse_bool("force-compression", force_text) if force_text is not None else False,
    )
    oci_text = a.pop("oci-mediatypes")
    rewrite_text = a.pop("rewrite-timestamp")
    epoch_text = a.pop("source-date-epoch")
    annotations = []
    for key in sorted(k for k in a.left if k.startswith("annotation")):
        annotations.append(_parse_annotation(key, a.left.pop(key)))
    for ignored in ("buildinfo", "buildinfo-attrs", "unpack", "attestation-inline"):
        a.pop(ignored)  # accepted for compatibility; no effect here
    return ImageOptions(
        names=names,
        compression=compression,
        oci_mediatypes=_parse_bool("oci-mediatypes", oci_text) if oci_text is not None else None,
        annotations=tuple(annotations),
        rewrite_timestamp=_parse_bool("rewrite-timestamp", rewrite_text)
        if rewrite_text is not None
        else False,
        source_date_epoch=_parse_epoch(epoch_text) if epoch_text else None,
    )


def _flag(a: _Attrs, key: str, default: bool) -> bool:
    text = a.pop(key)
    return default if text is None else _parse_bool(key, text)


def parse_exporter(kind: str, attrs: Mapping[str, str]) -> ExportOptions:
    """The options of exporter ``kind`` (``local``, ``tar``, ``image``, ``registry``,
    ``oci``, ``docker``) from BuildKit-style attributes; :class:`UsageError` for an
    unknown type, an unknown key or a bad value."""
    kind = kind.strip().lower()
    a = _Attrs(kind, attrs)
    result: ExportOptions
    if kind in ("local", "tar"):
        dest = _parse_dest(a.pop("dest") or "", kind)
        epoch_text = a.pop("source-date-epoch")
        epoch = _parse_epoch(epoch_text) if epoch_text else None
        split_text = a.pop("platform-split")
        split = _parse_bool("platform-split", split_text) if split_text is not None else None
        if kind == "local":
            if isinstance(dest, Stdout):
                raise UsageError("output type local cannot write to stdout (use type=tar,dest=-)")
            result = LocalExport(dest=dest, source_date_epoch=epoch, platform_split=split)
        else:
            result = TarExport(dest=dest, source_date_epoch=epoch)
    elif kind in ("image", "registry"):
        push_text = a.pop("push")
        push = _parse_bool("push", push_text) if push_text is not None else kind == "registry"
        result = ImageExport(
            push=push,
            push_by_digest=_flag(a, "push-by-digest", False),
            insecure=_flag(a, "registry.insecure", False),
            store=_flag(a, "store", True),
            name_canonical=_flag(a, "name-canonical", False),
            dangling_name_prefix=a.pop("dangling-name-prefix") or "",
            dangling_empty_only=_flag(a, "danging-name-empty-only", False)
            or _flag(a, "dangling-name-empty-only", False),
            image=_image_options(a),
        )
        if (result.push or kind == "registry") and not result.image.names:
            raise UsageError("pushing an image needs name=")
    elif kind in ("oci", "docker"):
        dest = _parse_dest(a.pop("dest") or "", kind)
        tar = _flag(a, "tar", True)
        if not tar and not isinstance(dest, LocalPath):
            raise UsageError(f"output type {kind} with tar=false needs a directory as dest")
        image = _image_options(a)
        if kind == "oci":
            result = OciExport(dest=dest, image=image, tar=tar)
        else:
            result = DockerExport(dest=dest, image=image, tar=tar)
    else:
        raise UsageError(
            f"unknown output type {kind!r} (local, tar, image, registry, oci or docker)"
        )
    a.finish()
    return result


def parse_output(spec: str) -> ExportOptions:
    """One ``--output`` value: ``type=image,name=app,push=true`` (CSV; quote a field
    holding commas: ``"name=a,b"``), ``DIR`` (``type=local,dest=DIR``) or ``-``
    (``type=tar`` to stdout). Its errors show no secret the value holds."""
    try:
        return _parse_output(spec)
    except UsageError as exc:
        message = redact(exc.message, spec)
        if message == exc.message:
            raise
        raise UsageError(message) from None


def _parse_output(spec: str) -> ExportOptions:
    text = spec.strip()
    if not text:
        raise UsageError("empty --output value")
    if "=" not in text:
        if text == "-":
            return TarExport(dest=Stdout())
        return LocalExport(dest=LocalPath(path=Path(text)))
    attrs = key_values(csv_fields(text, "--output"), f"--output {spec}", joined=("name",))
    kind = attrs.pop("type", "")
    if not kind:
        if "dest" in attrs:
            kind = "local"
        else:
            raise UsageError(
                f"output {spec!r} needs type= (local, tar, image, registry, oci, docker)"
            )
    return parse_exporter(kind, attrs)
