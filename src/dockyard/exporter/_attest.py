"""Attestations of exported results (BuildKit's attestation storage).

A build that asks for provenance (``--provenance``, ``--attest type=provenance``) hands
each export an :class:`Attestation` per platform: an in-toto predicate without subject.
The exporter makes the statement — its subjects are what it exported — and stores it
as BuildKit does:

- image outputs (``image``, ``registry``, ``oci``, ``docker``): the image becomes an
  index holding each image manifest and, after them, one *attestation manifest* per
  platform: a manifest whose layers are the statements (``application/vnd.in-toto+json``
  with the ``in-toto.io/predicate-type`` annotation), its index entry on platform
  ``unknown/unknown`` with ``vnd.docker.reference.type: attestation-manifest`` and
  ``vnd.docker.reference.digest`` naming the image manifest it attests. The subjects
  are the image's names as package URLs (``pkg:docker/...@tag?platform=...``) with the
  manifest's digest, ``_`` for an image without names;
- ``local`` and ``tar``: the statement as a file (``provenance.json``,
  ``sbom.spdx.json`` ...) beside the files (in each platform's directory), its subjects
  every regular file exported with its sha256.

An attestation may bring subjects of its own (an SBOM generator's statement that names
them): those are kept as they are, as BuildKit keeps a bundle's raw subjects.

:class:`ProvenanceOptions` is the provenance request (BuildKit's ``attest:provenance``
frontend attribute, parsed): ``mode`` ``min`` or ``max``, ``builder-id``,
``reproducible`` and ``version`` (the SLSA predicate: ``v0.2``, BuildKit's default, or
``v1``). :class:`SbomOptions` is the SBOM request (``attest:sbom``): the
``generator`` image (empty: Dockyard's built-in scanner) and the parameters passed to it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from dockyard.core import Digest, Platform, UsageError
from dockyard.core.csvfields import csv_fields, csv_record, key_values

if TYPE_CHECKING:
    from dockyard.content import ContentStore
    from dockyard.oci import Descriptor, ImageManifest
    from dockyard.registry import Reference

__all__ = [
    "ATTESTATION_MANIFEST",
    "INTOTO_MEDIA_TYPE",
    "INTOTO_STATEMENT",
    "PREDICATE_TYPE_ANNOTATION",
    "PROVENANCE_ATTR",
    "REFERENCE_DIGEST_ANNOTATION",
    "REFERENCE_TYPE_ANNOTATION",
    "SBOM_ATTR",
    "SBOM_BUILTIN",
    "SLSA_PROVENANCE_V02",
    "SLSA_PROVENANCE_V1",
    "SPDX_DOCUMENT",
    "Attestation",
    "AttestationManifest",
    "LatePredicate",
    "ProvenanceMode",
    "ProvenanceOptions",
    "ProvenanceVersion",
    "SbomOptions",
    "attest_type",
    "file_subjects",
    "image_purl",
    "image_subjects",
    "make_attestation_manifest",
    "parse_attest_flag",
    "parse_provenance_flag",
    "parse_sbom_attest",
    "parse_sbom_flag",
    "resolve_attestations",
    "statement",
]

SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
INTOTO_STATEMENT = "https://in-toto.io/Statement/v0.1"
INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE_ANNOTATION = "in-toto.io/predicate-type"
REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"
REFERENCE_DIGEST_ANNOTATION = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
PROVENANCE_ATTR = "attest:provenance"
"""The frontend attribute a provenance request travels in (BuildKit's key)."""
SBOM_ATTR = "attest:sbom"
"""The frontend attribute an SBOM request travels in (BuildKit's key)."""
SPDX_DOCUMENT = "https://spdx.dev/Document"
"""The predicate type of an SPDX SBOM statement (in-toto's)."""
SBOM_BUILTIN = "builtin"
"""``generator=builtin``: Dockyard's own scanner (the default, as no registry serves
BuildKit's ``docker/buildkit-syft-scanner`` here)."""

ProvenanceMode = Literal["min", "max"]
ProvenanceVersion = Literal["v0.2", "v1"]
_VERSIONS: dict[str, ProvenanceVersion] = {"v0.2": "v0.2", "0.2": "v0.2", "v1": "v1"}
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _bool(text: str, what: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"invalid {what} value {text!r} (expected true or false)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenanceOptions:
    """A provenance attestation request: ``mode`` (``min``: no build arguments, labels,
    secrets or SSH ids; ``max``: those too — but never a secret's value or a build
    argument whose name looks like a secret — and the build's LLB), ``builder_id``
    (the predicate's ``builder.id``), ``reproducible`` (``metadata.reproducible``) and
    ``version``: the SLSA predicate made, ``v0.2`` (BuildKit's default) or ``v1``."""

    mode: ProvenanceMode = "min"
    builder_id: str = ""
    reproducible: bool = False
    version: ProvenanceVersion = "v0.2"

    @property
    def predicate_type(self) -> str:
        """The in-toto predicate type of the statement :attr:`version` makes."""
        return SLSA_PROVENANCE_V1 if self.version == "v1" else SLSA_PROVENANCE_V02

    def to_attr(self) -> str:
        """The ``attest:provenance`` value (``mode=min,builder-id=...,version=v1``)."""
        fields = [f"mode={self.mode}"]
        if self.builder_id:
            fields.append(f"builder-id={self.builder_id}")
        if self.reproducible:
            fields.append("reproducible=true")
        if self.version != "v0.2":
            fields.append(f"version={self.version}")
        return csv_record(fields)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], what: str) -> ProvenanceOptions | None:
        """From the ``key=value`` fields of a request (``type`` already taken out);
        ``None`` for ``disabled=true``. Unknown keys are refused."""
        mode: ProvenanceMode = "min"
        builder_id = ""
        reproducible = False
        version: ProvenanceVersion = "v0.2"
        for key, value in fields.items():
            if key == "disabled":
                if _bool(value, f"{what} disabled"):
                    return None
            elif key == "mode":
                if value == "full":  # BuildKit's old name of max
                    value = "max"
                if value not in ("min", "max"):
                    raise UsageError(f"{what}: invalid mode {value!r} (expected min or max)")
                mode = "min" if value == "min" else "max"
            elif key == "builder-id":
                builder_id = value
            elif key == "reproducible":
                reproducible = _bool(value, f"{what} reproducible")
            elif key == "version":
                found = _VERSIONS.get(value)
                if found is None:
                    raise UsageError(
                        f"{what}: invalid provenance version {value!r} (expected v0.2 or v1)"
                    )
                version = found
            elif key == "inline-only":
                pass
            else:
                raise UsageError(f"{what}: unknown provenance option {key!r}")
        return cls(mode=mode, builder_id=builder_id, reproducible=reproducible, version=version)

    @classmethod
    def from_attr(cls, text: str) -> ProvenanceOptions | None:
        """Parse an ``attest:provenance`` value as a daemon receives it (an empty one
        asks for the default, ``mode=min``)."""
        return cls.from_fields(_csv_fields(text, PROVENANCE_ATTR), PROVENANCE_ATTR)


def _csv_fields(text: str, what: str) -> dict[str, str]:
    return key_values(csv_fields(text, what), what)


def parse_provenance_flag(value: str) -> ProvenanceOptions | None:
    """``--provenance`` as buildx reads it: a boolean (``true``: ``mode=min``) or
    ``key=value`` fields (``mode=max``, ``builder-id=...``, ``disabled=true``);
    ``None``: no provenance."""
    text = value.strip()
    if text in _TRUE:
        return ProvenanceOptions()
    if text in _FALSE:
        return None
    return ProvenanceOptions.from_fields(_csv_fields(text, "--provenance"), "--provenance")


def attest_type(value: str) -> str:
    """The ``type`` of an ``--attest`` value (``provenance`` or ``sbom``; another or none
    is a :class:`~dockyard.core.UsageError`)."""
    kind = _csv_fields(value, "--attest").get("type", "")
    if not kind:
        raise UsageError(f"--attest {value}: type= is required (type=provenance or type=sbom)")
    if kind not in ("provenance", "sbom"):
        raise UsageError(
            f"--attest {value}: unsupported attestation type {kind!r} (Dockyard makes "
            "type=provenance and type=sbom)"
        )
    return kind


def parse_attest_flag(value: str) -> ProvenanceOptions | None:
    """``--attest type=provenance[,mode=min|max,...]`` (another type is refused: see
    :func:`attest_type` and :func:`parse_sbom_attest`)."""
    fields = _csv_fields(value, "--attest")
    kind = fields.pop("type", "")
    if not kind:
        raise UsageError(f"--attest {value}: type= is required (type=provenance)")
    if kind != "provenance":
        raise UsageError(f"--attest {value}: not a provenance attestation (type={kind})")
    return ProvenanceOptions.from_fields(fields, "--attest")


@dataclass(frozen=True, slots=True, kw_only=True)
class SbomOptions:
    """An SBOM attestation request: ``generator`` is the scanner image run by BuildKit's
    SBOM generator protocol (empty, or :data:`SBOM_BUILTIN`: Dockyard's built-in
    scanner of package databases); ``params`` are extra ``key=value`` fields (keys lower
    case), given to a generator image as ``BUILDKIT_SCAN_<KEY>`` environment variables."""

    generator: str = ""
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        generator = self.generator.strip()
        if generator == SBOM_BUILTIN:
            generator = ""
        object.__setattr__(self, "generator", generator)
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(self.params.items()))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SbomOptions):
            return NotImplemented
        return self.generator == other.generator and dict(self.params) == dict(other.params)

    def __hash__(self) -> int:
        return hash((self.generator, tuple(self.params.items())))

    @property
    def builtin(self) -> bool:
        """Whether the built-in scanner makes the SBOM (no generator image)."""
        return not self.generator

    def to_attr(self) -> str:
        """The ``attest:sbom`` value (``generator=IMAGE,...``; empty for the built-in
        scanner without parameters)."""
        fields = [f"generator={self.generator}"] if self.generator else []
        fields += [f"{k}={v}" for k, v in self.params.items()]
        return csv_record(fields)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], what: str) -> SbomOptions | None:
        """From the ``key=value`` fields of a request (``type`` already taken out);
        ``None`` for ``disabled=true``. Keys other than ``generator`` and ``disabled``
        are the generator's parameters."""
        generator = ""
        params: dict[str, str] = {}
        for key, value in fields.items():
            if key == "disabled":
                if _bool(value, f"{what} disabled"):
                    return None
            elif key == "generator":
                if not value:
                    raise UsageError(f"{what}: generator= names no image")
                generator = value
            else:
                if not key.replace("-", "_").replace(".", "_").isidentifier():
                    raise UsageError(f"{what}: invalid SBOM parameter name {key!r}")
                params[key] = value
        return cls(generator=generator, params=params)

    @classmethod
    def from_attr(cls, text: str) -> SbomOptions | None:
        """Parse an ``attest:sbom`` value as a daemon receives it (empty: the default
        generator)."""
        text = text.strip()
        if text in _TRUE:
            return cls()
        if text in _FALSE:
            return None
        return cls.from_fields(_csv_fields(text, SBOM_ATTR), SBOM_ATTR)


def parse_sbom_flag(value: str) -> SbomOptions | None:
    """``--sbom`` as buildx reads it: a boolean (``true``: the default generator) or
    ``key=value`` fields (``generator=IMAGE``, ``disabled=true``); ``None``: no SBOM."""
    text = value.strip()
    if text in _TRUE:
        return SbomOptions()
    if text in _FALSE:
        return None
    return SbomOptions.from_fields(_csv_fields(text, "--sbom"), "--sbom")


def parse_sbom_attest(value: str) -> SbomOptions | None:
    """``--attest type=sbom[,generator=IMAGE][,disabled=true]``."""
    fields = _csv_fields(value, "--attest")
    kind = fields.pop("type", "")
    if kind != "sbom":
        raise UsageError(f"--attest {value}: not an SBOM attestation (type={kind or '?'})")
    return SbomOptions.from_fields(fields, "--attest")


@dataclass(frozen=True, slots=True, kw_only=True)
class Attestation:
    """One in-toto attestation: ``predicate_type`` and the ``predicate`` (a JSON object
    in Go field order, maps sorted); ``path`` is the file name it gets in a
    ``local``/``tar`` export. ``subjects`` ``None`` (the usual): the exporter makes them
    (what it exported); otherwise they are the statement's own (an SBOM generator's raw
    subjects), kept as they are. ``late``, when set, makes the predicate the exporter
    writes, called as it writes the statement — after an image's layers are made
    (BuildKit's ``ContentFunc``: max-mode provenance lists the layers of its steps);
    ``predicate`` is then what is known before the export."""

    predicate_type: str
    predicate: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    path: str = "provenance.json"
    subjects: tuple[Mapping[str, Any], ...] | None = None
    late: LatePredicate | None = field(default=None, compare=False, repr=False)


LatePredicate = Callable[[], Awaitable[Mapping[str, Any]]]
"""Makes an attestation's predicate when its statement is written (see
:attr:`Attestation.late`)."""


async def resolve_attestations(attestations: Sequence[Attestation]) -> tuple[Attestation, ...]:
    """``attestations`` with each :attr:`~Attestation.late` predicate made now."""
    import dataclasses

    out: list[Attestation] = []
    for attestation in attestations:
        if attestation.late is not None:
            predicate = await attestation.late()
            attestation = dataclasses.replace(attestation, predicate=predicate, late=None)
        out.append(attestation)
    return tuple(out)


def statement(attestation: Attestation, subjects: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The in-toto statement of ``attestation`` about ``subjects`` (``{"name": ...,
    "digest": {"sha256": ...}}`` objects; the attestation's own subjects instead when
    it has them), in in-toto-golang's field order."""
    own = attestation.subjects
    return {
        "_type": INTOTO_STATEMENT,
        "predicateType": attestation.predicate_type,
        "subject": [dict(s) for s in (own if own is not None else subjects)],
        "predicate": attestation.predicate,
    }


def _digest_map(digest: Digest) -> dict[str, str]:
    return {digest.algorithm: digest.hex}


def _escape_path(text: str) -> str:
    # Go's url.PathEscape: unreserved characters and the sub-delims a path segment keeps
    return quote(text, safe="-._~!$&'()*+,;=:@")


def image_purl(name: Reference, platform: Platform | None) -> str:
    """The package URL of an image reference as BuildKit writes it
    (``pkg:docker/alpine@3.17?platform=linux%2Famd64``): the familiar name split into
    namespace and name, the tag (``latest`` when none) as version, a digest as version
    when there is no tag or as a ``digest`` qualifier beside one."""
    parts = name.familiar_name.split("/")
    namespace, short = parts[:-1], parts[-1]
    version = name.tag
    qualifiers: list[tuple[str, str]] = []
    if name.digest is not None:
        if version:
            qualifiers.append(("digest", str(name.digest)))
        else:
            version = str(name.digest)
    elif not version:
        version = "latest"
    if platform is not None:
        qualifiers.append(("platform", str(platform)))
    out = "pkg:docker/"
    if namespace:
        out += "/".join(_escape_path(p) for p in namespace) + "/"
    out += _escape_path(short)
    if version:
        out += "@" + _escape_path(version)
    if qualifiers:
        qualifiers.sort()
        out += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in qualifiers)
    return out


def image_subjects(
    names: Sequence[Reference], digest: Digest, platform: Platform | None
) -> list[dict[str, Any]]:
    """The subjects of an image's statement: one per name (its package URL with the
    image's platform), or ``_`` for an image without names; each with the manifest's
    digest."""
    if not names:
        return [{"name": "_", "digest": _digest_map(digest)}]
    out: list[dict[str, Any]] = []
    for name in names:
        purl = image_purl(name, platform)
        if not any(s["name"] == purl for s in out):
            out.append({"name": purl, "digest": _digest_map(digest)})
    return out


def _regular_files(root: str, rel: str = "") -> Iterator[tuple[str, str]]:
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            yield from _regular_files(root, path)
        elif stat.S_ISREG(st.st_mode):
            yield path, os.path.join(root, path)


def file_subjects(root: str | None) -> list[dict[str, Any]]:
    """The subjects of a ``local``/``tar`` export's statement: every regular file
    under ``root`` (relative slash-separated path, lexical order) with its sha256
    (blocking: run it in a thread)."""
    import hashlib

    if root is None:
        return []
    out: list[dict[str, Any]] = []
    for rel, path in _regular_files(root):
        digest = hashlib.sha256()
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
        finally:
            os.close(fd)
        out.append({"name": rel, "digest": {"sha256": digest.hexdigest()}})
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationManifest:
    """An attestation manifest written to the content store: its manifest (bytes and
    the index entry pointing at it), the config and the statement blobs."""

    manifest: ImageManifest
    manifest_bytes: bytes
    descriptor: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]


UNKNOWN_PLATFORM = Platform(os="unknown", architecture="unknown")


async def make_attestation_manifest(
    attestations: Sequence[Attestation],
    *,
    target: Descriptor,
    names: Sequence[Reference],
    content: ContentStore,
    lease: str,
    oci: bool,
) -> AttestationManifest:
    """Write the statements of ``attestations`` about the image manifest ``target``
    (subjects: :func:`image_subjects` on its platform) and the attestation manifest
    holding them; the returned descriptor is its index entry (platform
    ``unknown/unknown``, the reference annotations)."""
    from dockyard.oci import Descriptor, ImageManifest, MediaType, canonical_json

    layers: list[Descriptor] = []
    subjects = image_subjects(names, target.digest, target.platform)
    for attestation in await resolve_attestations(attestations):
        data = canonical_json(statement(attestation, subjects))
        await content.write_blob(data, lease=lease)
        layers.append(
            Descriptor.of(
                INTOTO_MEDIA_TYPE,
                data,
                annotations={PREDICATE_TYPE_ANNOTATION: attestation.predicate_type},
            )
        )
    config_obj = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
    }
    config_bytes = canonical_json(config_obj)
    config = Descriptor.of(MediaType.OCI_CONFIG if oci else MediaType.DOCKER_CONFIG, config_bytes)
    await content.write_blob(config_bytes, lease=lease)
    manifest = ImageManifest(
        config=config,
        layers=tuple(layers),
        media_type=MediaType.OCI_MANIFEST if oci else MediaType.DOCKER_MANIFEST,
    )
    manifest_bytes = manifest.to_bytes(indent=3)
    await content.write_blob(manifest_bytes, lease=lease)
    descriptor = Descriptor.of(
        manifest.media_type,
        manifest_bytes,
        annotations={
            REFERENCE_DIGEST_ANNOTATION: str(target.digest),
            REFERENCE_TYPE_ANNOTATION: ATTESTATION_MANIFEST,
        },
        platform=UNKNOWN_PLATFORM,
    )
    return AttestationManifest(
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        descriptor=descriptor,
        config=config,
        layers=tuple(layers),
    )
