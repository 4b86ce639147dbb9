"""``--cache-to`` / ``--cache-from`` values, parsed at the edge into frozen values.

buildx's CSV syntax: ``type=local,dest=DIR,mode=max``, ``type=registry,ref=REF``,
``type=inline``; for ``--cache-from`` also a bare ``REF`` (``type=registry,ref=REF``).
Light on purpose (the engine package re-exports these): compression options are
checked with the exporter's rules only when given.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import Digest, UsageError
from dockyard.core.csvfields import csv_fields, key_values
from dockyard.registry import Reference

if TYPE_CHECKING:
    from dockyard.exporter import CompressionOptions

__all__ = [
    "CacheExport",
    "CacheImport",
    "CacheMode",
    "ClientCacheExport",
    "ClientCacheImport",
    "InlineCacheExport",
    "LocalCacheExport",
    "LocalCacheImport",
    "RegistryCacheExport",
    "RegistryCacheImport",
    "cache_export_from_attrs",
    "cache_import_from_attrs",
    "parse_cache_export",
    "parse_cache_import",
]

DEFAULT_TAG = "latest"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class CacheMode(enum.Enum):
    """What a cache export holds: ``min`` the results of the build's final step (and
    the keys leading to them), ``max`` the results of every step."""

    MIN = "min"
    MAX = "max"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalCacheExport:
    """``type=local,dest=DIR``: an OCI image layout directory whose ``index.json`` names
    the cache manifest ``tag`` (``latest``). ``ignore_error``: a failed export only
    warns."""

    dest: Path
    mode: CacheMode = CacheMode.MIN
    compression: CompressionOptions | None = None
    tag: str = DEFAULT_TAG
    ignore_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryCacheExport:
    """``type=registry,ref=REF``: the cache manifest and its blobs pushed to ``ref``."""

    ref: Reference
    mode: CacheMode = CacheMode.MIN
    compression: CompressionOptions | None = None
    insecure: bool = False
    ignore_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCacheExport:
    """``type=local`` written through the build's session: the blobs go into the
    content store ``store`` the client offers (an OCI layout directory of the client's
    host), and the client names the cache manifest in its ``index.json`` with the tag it
    chose — what a daemon receives as ``type=local,store=ID`` from ``dockyard --addr``
    (``dest`` stays on the client)."""

    store: str
    mode: CacheMode = CacheMode.MIN
    compression: CompressionOptions | None = None
    ignore_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class InlineCacheExport:
    """``type=inline``: the cache config embedded in the exported image's config
    (``moby.buildkit.cache.v0``), its layers being the image's own (``mode=min``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalCacheImport:
    """``type=local,src=DIR``: the cache manifest named ``tag`` (or ``digest``) in the
    OCI layout ``src``."""

    src: Path
    tag: str = DEFAULT_TAG
    digest: Digest | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCacheImport:
    """``type=local`` read through the build's session: the cache manifest ``digest``
    in the content store ``store`` the client offers (the client resolved the tag in
    its own ``index.json``) — ``type=local,store=ID,digest=D`` on the wire."""

    store: str
    digest: Digest


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryCacheImport:
    """``type=registry,ref=REF`` (or a bare ``REF``): a cache manifest pushed by a
    registry export, or an image whose config carries an inline cache."""

    ref: Reference
    insecure: bool = False


CacheExport = LocalCacheExport | ClientCacheExport | RegistryCacheExport | InlineCacheExport
CacheImport = LocalCacheImport | ClientCacheImport | RegistryCacheImport


def _fields(flag: str, text: str) -> dict[str, str]:
    fields = csv_fields(text, flag)
    if not fields:
        raise UsageError(f"{flag}: empty value")
    if len(fields) == 1 and "=" not in fields[0] and flag == "--cache-from":
        return {"type": "registry", "ref": fields[0]}  # a bare reference
    return key_values(fields, f"{flag} {text}")


def _bool(flag: str, key: str, value: str) -> bool:
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{flag}: {key}={value!r} is not a boolean (true or false)")


def _reference(flag: str, value: str) -> Reference:
    if not value:
        raise UsageError(f"{flag}: type=registry needs ref=REFERENCE")
    try:
        return Reference.parse(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: invalid reference {value!r}: {exc}") from None


def _reject_unknown(flag: str, kind: str, attrs: dict[str, str]) -> None:
    if attrs:
        keys = ", ".join(sorted(attrs))
        raise UsageError(f"{flag}: unknown option(s) for type={kind}: {keys}")


def _compression(flag: str, attrs: dict[str, str]) -> CompressionOptions | None:
    kind = attrs.pop("compression", None)
    level = attrs.pop("compression-level", None)
    force = attrs.pop("force-compression", None)
    if kind is None and level is None and force is None:
        return None
    from dockyard.exporter import Compression, CompressionOptions

    try:
        ctype = Compression(kind or "gzip")
    except ValueError:
        raise UsageError(
            f"{flag}: unknown compression {kind!r} (expected gzip, zstd or uncompressed)"
        ) from None
    number: int | None = None
    if level is not None:
        try:
            number = int(level)
        except ValueError:
            raise UsageError(f"{flag}: compression-level={level!r} is not a number") from None
    return CompressionOptions(
        type=ctype,
        level=number,
        force=_bool(flag, "force-compression", force) if force is not None else False,
    )


def _mode(flag: str, attrs: dict[str, str]) -> CacheMode:
    value = attrs.pop("mode", "min") or "min"
    try:
        return CacheMode(value.lower())
    except ValueError:
        raise UsageError(f"{flag}: mode={value!r} (expected min or max)") from None


def _common_export(flag: str, attrs: dict[str, str]) -> tuple[CacheMode, bool]:
    mode = _mode(flag, attrs)
    ignore = _bool(flag, "ignore-error", attrs.pop("ignore-error", "false"))
    # BuildKit's media-type switches: this cache is always an OCI image manifest
    for key in ("oci-mediatypes", "image-manifest"):
        value = attrs.pop(key, None)
        if value is not None and not _bool(flag, key, value):
            raise UsageError(f"{flag}: {key}=false is not supported (caches use OCI manifests)")
    return mode, ignore


def parse_cache_export(text: str) -> CacheExport:
    """One ``--cache-to`` value; :class:`UsageError` for what it cannot mean."""
    attrs = _fields("--cache-to", text)
    kind = attrs.pop("type", "")
    _no_store("--cache-to", text, attrs)
    return cache_export_from_attrs(kind, attrs, text=text)


def _no_store(flag: str, text: str, attrs: Mapping[str, str]) -> None:
    # ``store`` names a client's content store: what a client sends, not a user's option
    if "store" in attrs:
        raise UsageError(f"{flag} {text}: unknown option store (type=local takes a directory)")


def cache_export_from_attrs(kind: str, attrs: Mapping[str, str], *, text: str = "") -> CacheExport:
    """A ``--cache-to`` from its type and attributes (BuildKit's ``CacheOptionsEntry``,
    as a daemon receives it); :class:`UsageError` for what they cannot mean."""
    flag = "--cache-to"
    attrs = {k.lower(): v for k, v in attrs.items()}
    kind = kind.lower()
    text = text or ",".join([f"type={kind}", *(f"{k}={v}" for k, v in attrs.items())])
    if kind == "local":
        dest = attrs.pop("dest", "")
        store = attrs.pop("store", "")
        if store:
            if dest:
                raise UsageError(f"{flag} {text}: type=local takes dest=DIR or store=ID, not both")
            mode, ignore = _common_export(flag, attrs)
            compression = _compression(flag, attrs)
            _reject_unknown(flag, kind, attrs)
            return ClientCacheExport(
                store=store, mode=mode, compression=compression, ignore_error=ignore
            )
        if not dest:
            raise UsageError(f"{flag} {text}: type=local needs dest=DIR")
        mode, ignore = _common_export(flag, attrs)
        compression = _compression(flag, attrs)
        tag = attrs.pop("tag", DEFAULT_TAG) or DEFAULT_TAG
        _reject_unknown(flag, kind, attrs)
        return LocalCacheExport(
            dest=Path(dest), mode=mode, compression=compression, tag=tag, ignore_error=ignore
        )
    if kind == "registry":
        ref = _reference(flag, attrs.pop("ref", ""))
        mode, ignore = _common_export(flag, attrs)
        compression = _compression(flag, attrs)
        insecure = _bool(flag, "registry.insecure", attrs.pop("registry.insecure", "false"))
        _reject_unknown(flag, kind, attrs)
        return RegistryCacheExport(
            ref=ref, mode=mode, compression=compression, insecure=insecure, ignore_error=ignore
        )
    if kind == "inline":
        mode = _mode(flag, attrs)
        if mode is not CacheMode.MIN:
            raise UsageError(f"{flag}: type=inline supports mode=min only")
        _reject_unknown(flag, kind, attrs)
        return InlineCacheExport()
    if not kind:
        raise UsageError(f"{flag} {text}: type= is required (local, registry or inline)")
    raise UsageError(
        f"{flag} {text}: unknown cache type {kind!r} (expected local, registry or inline)"
    )


def parse_cache_import(text: str) -> CacheImport:
    """One ``--cache-from`` value; :class:`UsageError` for what it cannot mean."""
    attrs = _fields("--cache-from", text)
    kind = attrs.pop("type", "")
    _no_store("--cache-from", text, attrs)
    return cache_import_from_attrs(kind, attrs, text=text)


def cache_import_from_attrs(kind: str, attrs: Mapping[str, str], *, text: str = "") -> CacheImport:
    """A ``--cache-from`` from its type and attributes (BuildKit's
    ``CacheOptionsEntry``); :class:`UsageError` for what they cannot mean."""
    flag = "--cache-from"
    attrs = {k.lower(): v for k, v in attrs.items()}
    kind = kind.lower()
    text = text or ",".join([f"type={kind}", *(f"{k}={v}" for k, v in attrs.items())])
    if kind == "local":
        src = attrs.pop("src", "")
        store = attrs.pop("store", "")
        if store and src:
            raise UsageError(f"{flag} {text}: type=local takes src=DIR or store=ID, not both")
        if not src and not store:
            raise UsageError(f"{flag} {text}: type=local needs src=DIR")
        tag = attrs.pop("tag", DEFAULT_TAG) or DEFAULT_TAG
        digest_text = attrs.pop("digest", "")
        digest: Digest | None = None
        if digest_text:
            try:
                digest = Digest.parse(digest_text)
            except ValueError as exc:
                raise UsageError(f"{flag}: invalid digest {digest_text!r}: {exc}") from None
        _reject_unknown(flag, kind, attrs)
        if store:
            if digest is None:
                raise UsageError(f"{flag} {text}: type=local,store=ID needs digest=DIGEST")
            return ClientCacheImport(store=store, digest=digest)
        return LocalCacheImport(src=Path(src), tag=tag, digest=digest)
    if kind == "registry":
        ref = _reference(flag, attrs.pop("ref", ""))
        insecure = _bool(flag, "registry.insecure", attrs.pop("registry.insecure", "false"))
        _reject_unknown(flag, kind, attrs)
        return RegistryCacheImport(ref=ref, insecure=insecure)
    if not kind:
        raise UsageError(f"{flag} {text}: type= is required (local or registry)")
    raise UsageError(f"{flag} {text}: unknown cache type {kind!r} (expected local or registry)")
