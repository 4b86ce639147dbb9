"""``--cache-to`` / ``--cache-from`` values, parsed at the edge into frozen values.

buildx's CSV syntax: ``type=local,dest=DIR,mode=max``, ``type=registry,ref=REF``,
``type=inline``, ``type=s3,bucket=B,region=R[,name=N1;N2]``; for ``--cache-from`` also a
bare ``REF`` (``type=registry,ref=REF``). The secrets of ``type=s3``
(``secret_access_key``, ``session_token``) never appear in an error message or a
value's ``repr``.
Light on purpose (the engine package re-exports these): compression options are
checked with the exporter's rules only when given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.core import Digest, UsageError
from dockyard.core.csvfields import csv_fields, key_values
from dockyard.registry import Reference

from ._sigv4 import AwsCredentials

if TYPE_CHECKING:
    from dockyard.exporter import CompressionOptions

__all__ = [
    "AzblobCacheExport",
    "AzblobCacheImport",
    "AzblobLocation",
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
    "S3CacheExport",
    "S3CacheImport",
    "S3Location",
    "cache_export_from_attrs",
    "cache_import_from_attrs",
    "each_cache_import",
    "parse_cache_export",
    "parse_cache_import",
    "redact",
    "redact_attrs",
    "secret_values",
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


DEFAULT_S3_NAME = "buildkit"
DEFAULT_TOUCH_REFRESH = 24 * 3600.0
DEFAULT_UPLOAD_PARALLELISM = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Location:
    """Where a ``type=s3`` cache lives, BuildKit's layout: each layer blob at
    ``PREFIX + BLOBS_PREFIX + DIGEST`` (``blobs/sha256:<hex>``), the cache config JSON at
    ``PREFIX + MANIFESTS_PREFIX + NAME`` for each of ``names`` (an import reads the first).
    ``endpoint_url`` (an S3-compatible service; ``use_path_style``: ``ENDPOINT/BUCKET/KEY``
    rather than ``BUCKET.ENDPOINT/KEY``); ``credentials`` from the attributes, ``None``:
    the environment's when the cache is used (``AWS_ACCESS_KEY_ID``...). Its ``repr``
    hides the secrets."""

    bucket: str
    region: str
    names: tuple[str, ...] = (DEFAULT_S3_NAME,)
    prefix: str = ""
    blobs_prefix: str = "blobs/"
    manifests_prefix: str = "manifests/"
    endpoint_url: str = ""
    use_path_style: bool = False
    credentials: AwsCredentials | None = None
    retry_max_attempts: int = 3
    disable_accept_encoding: bool = False

    def blob_key(self, digest: str) -> str:
        """The object key of a blob."""
        return f"{self.prefix}{self.blobs_prefix}{digest}"

    def manifest_key(self, name: str) -> str:
        """The object key of the cache config named ``name``."""
        return f"{self.prefix}{self.manifests_prefix}{name}"

    def describe(self, name: str | None = None) -> str:
        """``s3://BUCKET/KEY`` of the cache config ``name`` (the first one), for messages."""
        return f"s3://{self.bucket}/{self.manifest_key(name or self.names[0])}"


@dataclass(frozen=True, slots=True, kw_only=True)
class S3CacheExport:
    """``type=s3``: the layer blobs and the cache config written to an S3 bucket as
    BuildKit's s3 cache does. A blob already there is not uploaded again (a HEAD); one
    last written more than ``touch_refresh`` seconds ago (24 h) is copied onto itself
    so that an expiry rule keeps it. ``upload_parallelism`` blobs at once (4)."""

    location: S3Location
    mode: CacheMode = CacheMode.MIN
    compression: CompressionOptions | None = None
    ignore_error: bool = False
    upload_parallelism: int = DEFAULT_UPLOAD_PARALLELISM
    touch_refresh: float = DEFAULT_TOUCH_REFRESH


@dataclass(frozen=True, slots=True, kw_only=True)
class S3CacheImport:
    """``type=s3``: the cache config ``names[0]`` of the bucket, its blobs fetched
    when a step needs them."""

    location: S3Location


DEFAULT_AZBLOB_CONTAINER = "buildkit-cache"


@dataclass(frozen=True, slots=True, kw_only=True)
class AzblobLocation:
    """Where a ``type=azblob`` cache lives, BuildKit's layout: in the container
    ``container`` of the storage account at ``account_url``, each layer blob at
    ``PREFIX/BLOBS_PREFIX/DIGEST`` (``blobs/sha256:<hex>``) and the cache config JSON at
    ``PREFIX/MANIFESTS_PREFIX/NAME`` for each of ``names`` (joined as paths, as Go's
    ``filepath.Join`` does: empty parts and doubled slashes dropped). ``account`` names
    the account the Shared Key signs for; ``key`` is its access key (``repr`` hides it)."""

    account_url: str
    account: str
    key: str = field(repr=False)
    container: str = DEFAULT_AZBLOB_CONTAINER
    names: tuple[str, ...] = (DEFAULT_S3_NAME,)
    prefix: str = ""
    blobs_prefix: str = "blobs"
    manifests_prefix: str = "manifests"

    def blob_key(self, digest: str) -> str:
        """The blob name of a layer blob."""
        return _path_join(self.prefix, self.blobs_prefix, digest)

    def manifest_key(self, name: str) -> str:
        """The blob name of the cache config named ``name``."""
        return _path_join(self.prefix, self.manifests_prefix, name)

    def describe(self, name: str | None = None) -> str:
        """``ACCOUNT_URL/CONTAINER/BLOB`` of the cache config ``name`` (the first one),
        for messages."""
        base = self.account_url.split("?", 1)[0].rstrip("/")
        return f"{base}/{self.container}/{self.manifest_key(name or self.names[0])}"


def _path_join(*parts: str) -> str:
    """The non-empty ``parts`` joined with ``/``, runs of ``/`` made one, no trailing
    ``/`` (Go's ``filepath.Join``; ``.``/``..`` segments are refused at parse time)."""
    return "/".join(piece for part in parts for piece in part.split("/") if piece)


@dataclass(frozen=True, slots=True, kw_only=True)
class AzblobCacheExport:
    """``type=azblob``: the layer blobs and the cache config written to an Azure Blob
    Storage container as BuildKit's azblob cache does (the container is created when
    missing; a blob already there is not uploaded again)."""

    location: AzblobLocation
    mode: CacheMode = CacheMode.MIN
    compression: CompressionOptions | None = None
    ignore_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AzblobCacheImport:
    """``type=azblob``: the cache configs of ``location.names``, each read as a cache of
    its own (BuildKit combines them; :func:`each_cache_import` splits them), their blobs
    fetched when a step needs them."""

    location: AzblobLocation


CacheExport = (
    LocalCacheExport
    | ClientCacheExport
    | RegistryCacheExport
    | InlineCacheExport
    | S3CacheExport
    | AzblobCacheExport
)
CacheImport = (
    LocalCacheImport | ClientCacheImport | RegistryCacheImport | S3CacheImport | AzblobCacheImport
)


def each_cache_import(imports: Sequence[CacheImport]) -> tuple[CacheImport, ...]:
    """``imports`` with a ``type=azblob`` one of several names made one import per name
    (BuildKit's azblob importer reads every name; the others read one)."""
    out: list[CacheImport] = []
    for spec in imports:
        if isinstance(spec, AzblobCacheImport) and len(spec.location.names) > 1:
            out += [
                AzblobCacheImport(location=dataclasses.replace(spec.location, names=(name,)))
                for name in spec.location.names
            ]
        else:
            out.append(spec)
    return tuple(out)


_SECRET_ATTRS = ("secret_access_key", "session_token")
# a value runs to the next ``key=`` field (a comma inside a secret is still the secret)
_SECRET_IN_TEXT = re.compile(
    r"(?i)\b(secret_access_key|session_token)\s*=\s*([^,]*(?:,[^,=]*(?=,|$))*)"
)


_SECRET_FIELD = re.compile(r"(?i)\b(secret_access_key|session_token)\s*=\s*[^,:\s'\"]*")


def _secrets_of_text(text: str) -> list[str]:
    out = []
    for match in _SECRET_IN_TEXT.finditer(text):
        value = match.group(2).strip()
        out += [value, value.strip('"')]
    return out


def secret_values(attrs: Mapping[str, str]) -> list[str]:
    """The values of the secret attributes of ``attrs`` (``secret_access_key``,
    ``session_token``)."""
    return [v for k, v in attrs.items() if k.lower() in _SECRET_ATTRS and v]


def redact_attrs(attrs: Mapping[str, str]) -> dict[str, str]:
    """``attrs`` with the values of its secret attributes replaced by ``***``."""
    return {k: "***" if k.lower() in _SECRET_ATTRS else v for k, v in attrs.items()}


def redact(text: str, *, source: str = "", secrets: Sequence[str] = ()) -> str:
    """``text`` with the values of ``secret_access_key=``/``session_token=`` fields
    replaced by ``***``, and every other occurrence of them, of those of ``source``
    (the flag value a message quotes) and of ``secrets``."""
    values = {v for v in (*secrets, *_secrets_of_text(source), *_secrets_of_text(text)) if v}
    out = text
    for value in sorted(values, key=len, reverse=True):
        out = out.replace(value, "***")
        for piece in value.split(","):  # a field of its own when the CSV split it
            if piece:
                out = out.replace(repr(piece), "'***'")
    return _SECRET_FIELD.sub(lambda m: f"{m.group(1)}=***", out)


@contextlib.contextmanager
def _scrubbed(text: str, attrs: Mapping[str, str] | None = None) -> Iterator[None]:
    """Errors raised in the block, with the secrets of ``text``/``attrs`` redacted."""
    try:
        yield
    except UsageError as exc:
        message = redact(exc.message, source=text, secrets=secret_values(attrs or {}))
        if message == exc.message:
            raise
        raise UsageError(message) from None


def _fields(flag: str, text: str) -> dict[str, str]:
    fields = csv_fields(text, flag)
    if not fields:
        raise UsageError(f"{flag}: empty value")
    if len(fields) == 1 and "=" not in fields[0]:
        # a bare reference, for both flags as buildx reads them (--cache-to app:cache)
        return {"type": "registry", "ref": fields[0]}
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
            f"{flag}: unknown compression {kind!r} (expected gzip, estargz, zstd or uncompressed)"
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
    with _scrubbed(text):
        attrs = _fields("--cache-to", text)
        kind = attrs.pop("type", "")
        _no_store("--cache-to", text, attrs)
        return cache_export_from_attrs(kind, attrs, text=text)


def _no_store(flag: str, text: str, attrs: Mapping[str, str]) -> None:
    # ``store`` names a client's content store: what a client sends, not a user's option
    if "store" in attrs:
        raise UsageError(f"{flag} {text}: unknown option store (type=local takes a directory)")


def cache_export_from_attrs(
    kind: str,
    attrs: Mapping[str, str],
    *,
    text: str = "",
    env: Mapping[str, str] | None = None,
) -> CacheExport:
    """A ``--cache-to`` from its type and attributes (BuildKit's ``CacheOptionsEntry``,
    as a daemon receives it); :class:`UsageError` for what they cannot mean. ``env``
    (the process environment) gives ``type=s3`` its ``AWS_BUCKET``/``AWS_REGION``
    defaults, as BuildKit reads them where the cache is written."""
    with _scrubbed(text, attrs):
        return _export_from_attrs(kind, attrs, text, env)


def _export_from_attrs(
    kind: str, attrs: Mapping[str, str], text: str, env: Mapping[str, str] | None
) -> CacheExport:
    flag = "--cache-to"
    attrs = {k.lower(): v for k, v in attrs.items()}
    kind = kind.lower()
    text = redact(text or _text(kind, attrs))
    if kind == "s3":
        location, extra = _s3_location(flag, attrs, env)
        mode, ignore = _common_export(flag, attrs)
        compression = _compression(flag, attrs)
        _reject_unknown(flag, kind, attrs)
        return S3CacheExport(
            location=location,
            mode=mode,
            compression=compression,
            ignore_error=ignore,
            upload_parallelism=extra.upload_parallelism,
            touch_refresh=extra.touch_refresh,
        )
    if kind == "azblob":
        azure = _azblob_location(flag, attrs, env)
        mode, ignore = _common_export(flag, attrs)
        compression = _compression(flag, attrs)
        _reject_unknown(flag, kind, attrs)
        return AzblobCacheExport(
            location=azure, mode=mode, compression=compression, ignore_error=ignore
        )
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
        raise UsageError(
            f"{flag} {text}: type= is required (local, registry, inline, s3 or azblob)"
        )
    raise UsageError(
        f"{flag} {text}: unknown cache type {kind!r} "
        "(expected local, registry, inline, s3 or azblob)"
    )


def parse_cache_import(text: str) -> CacheImport:
    """One ``--cache-from`` value; :class:`UsageError` for what it cannot mean."""
    with _scrubbed(text):
        attrs = _fields("--cache-from", text)
        kind = attrs.pop("type", "")
        _no_store("--cache-from", text, attrs)
        return cache_import_from_attrs(kind, attrs, text=text)


def cache_import_from_attrs(
    kind: str,
    attrs: Mapping[str, str],
    *,
    text: str = "",
    env: Mapping[str, str] | None = None,
) -> CacheImport:
    """A ``--cache-from`` from its type and attributes (BuildKit's
    ``CacheOptionsEntry``); :class:`UsageError` for what they cannot mean. ``env`` as
    for :func:`cache_export_from_attrs`."""
    with _scrubbed(text, attrs):
        return _import_from_attrs(kind, attrs, text, env)


def _import_from_attrs(
    kind: str, attrs: Mapping[str, str], text: str, env: Mapping[str, str] | None
) -> CacheImport:
    flag = "--cache-from"
    attrs = {k.lower(): v for k, v in attrs.items()}
    kind = kind.lower()
    text = redact(text or _text(kind, attrs))
    if kind in ("s3", "azblob"):
        if kind == "s3":
            result: CacheImport = S3CacheImport(location=_s3_location(flag, attrs, env)[0])
        else:
            result = AzblobCacheImport(location=_azblob_location(flag, attrs, env))
        # what an export takes is accepted and unused (the same value serves both flags)
        for key in _EXPORT_ONLY:
            attrs.pop(key, None)
        _reject_unknown(flag, kind, attrs)
        return result
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
        raise UsageError(f"{flag} {text}: type= is required (local, registry, s3 or azblob)")
    raise UsageError(
        f"{flag} {text}: unknown cache type {kind!r} (expected local, registry, s3 or azblob)"
    )


_EXPORT_ONLY = (
    "mode",
    "ignore-error",
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatypes",
    "image-manifest",
)


def _text(kind: str, attrs: Mapping[str, str]) -> str:
    return ",".join([f"type={kind}", *(f"{k}={v}" for k, v in attrs.items())])


@dataclass(frozen=True, slots=True, kw_only=True)
class _S3Extra:
    upload_parallelism: int
    touch_refresh: float


def parse_duration(text: str) -> float:
    """Seconds of a Go duration (``24h``, ``1h30m``, ``90s``, ``500ms``; ``0``);
    ``ValueError`` otherwise."""
    from dockyard.core.durations import parse_go_duration

    return parse_go_duration(text.strip()) / 1e9


_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _endpoint_has_userinfo(endpoint: str) -> bool:
    """Whether an ``endpoint_url`` names a user (``https://user:password@host``): never
    used (requests are signed) and a credential that would travel in reprs and logs."""
    netloc = endpoint.partition("://")[2] if "://" in endpoint else endpoint
    return "@" in netloc.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]


def _check_key_part(flag: str, key: str, value: str) -> None:
    """A prefix or name whose ``.``/``..`` path segments an HTTP client would fold away
    (the request would reach another object than the one named and signed)."""
    if any(part in (".", "..") for part in value.split("/")):
        raise UsageError(f"{flag}: {key}={value!r} holds a '.' or '..' path segment")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UsageError(f"{flag}: {key}= holds a control character")


def _object_keys(
    flag: str, attrs: dict[str, str], prefix: str, *, blobs: str, manifests: str
) -> tuple[tuple[str, ...], str, str]:
    """``name`` (``;``-separated; ``buildkit``), ``blobs_prefix`` and ``manifests_prefix``
    of an object-store cache (popped from ``attrs``; ``blobs``/``manifests`` their
    defaults), each checked with ``prefix`` by :func:`_check_key_part`."""
    names: tuple[str, ...] = (DEFAULT_S3_NAME,)
    if "name" in attrs:
        names = tuple(n.strip() for n in attrs.pop("name").split(";"))
        if not all(names):
            raise UsageError(f"{flag}: name= holds an empty name (names are separated by ;)")
    blobs_prefix = attrs.pop("blobs_prefix", blobs)
    manifests_prefix = attrs.pop("manifests_prefix", manifests)
    for key, value in (
        ("prefix", prefix),
        ("blobs_prefix", blobs_prefix),
        ("manifests_prefix", manifests_prefix),
        *(("name", n) for n in names),
    ):
        _check_key_part(flag, key, value)
    return names, blobs_prefix, manifests_prefix


def _positive(flag: str, key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise UsageError(f"{flag}: {key}={value!r} must be a positive integer")
    return number


def _s3_location(
    flag: str, attrs: dict[str, str], env: Mapping[str, str] | None
) -> tuple[S3Location, _S3Extra]:
    """The ``type=s3`` attributes BuildKit's s3 cache reads (popped from ``attrs``)."""
    env = os.environ if env is None else env
    bucket = attrs.pop("bucket", None)
    if bucket is None:
        bucket = env.get("AWS_BUCKET")
    if not bucket:
        raise UsageError(f"{flag}: type=s3 needs bucket=NAME (or $AWS_BUCKET)")
    region = attrs.pop("region", None)
    if region is None:
        region = env.get("AWS_REGION")
    if not region:
        raise UsageError(f"{flag}: type=s3 needs region=REGION (or $AWS_REGION)")
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(
            f"{flag}: bucket={bucket!r} is not a bucket name (letters, digits, '.', '-', '_')"
        )
    if not _REGION.fullmatch(region):
        raise UsageError(f"{flag}: region={region!r} is not a region name")
    prefix = attrs.pop("prefix", "")
    names, blobs_prefix, manifests_prefix = _object_keys(
        flag, attrs, prefix, blobs="blobs/", manifests="manifests/"
    )
    endpoint = attrs.pop("endpoint_url", "")
    if _endpoint_has_userinfo(endpoint):
        raise UsageError(
            f"{flag}: endpoint_url holds a user name or password (S3 requests are signed "
            "with access_key_id/secret_access_key; give the endpoint without user@)"
        )
    path_style = _bool(flag, "use_path_style", attrs.pop("use_path_style", "false"))
    key = attrs.pop("access_key_id", "")
    secret = attrs.pop("secret_access_key", "")
    token = attrs.pop("session_token", "")
    credentials: AwsCredentials | None = None
    if key and secret:
        credentials = AwsCredentials(
            access_key_id=key, secret_access_key=secret, session_token=token
        )
    elif key:
        raise UsageError(f"{flag}: type=s3 has access_key_id without secret_access_key")
    elif secret:
        raise UsageError(f"{flag}: type=s3 has secret_access_key without access_key_id")
    parallelism = DEFAULT_UPLOAD_PARALLELISM
    if "upload_parallelism" in attrs:
        parallelism = _positive(flag, "upload_parallelism", attrs.pop("upload_parallelism"))
    refresh = DEFAULT_TOUCH_REFRESH
    if "touch_refresh" in attrs:
        value = attrs.pop("touch_refresh")
        try:
            refresh = parse_duration(value)
        except ValueError:
            raise UsageError(
                f"{flag}: touch_refresh={value!r} is not a duration (such as 24h, 30m or 90s)"
            ) from None
    attempts = 3
    if "retry_max_attempts" in attrs:
        attempts = _positive(flag, "retry_max_attempts", attrs.pop("retry_max_attempts"))
    mode = attrs.pop("retry_mode", "standard")
    if mode not in ("standard", "adaptive"):
        raise UsageError(f"{flag}: retry_mode={mode!r} (expected standard or adaptive)")
    no_encoding = _bool(
        flag, "disable_accept_encoding", attrs.pop("disable_accept_encoding", "false")
    )
    location = S3Location(
        bucket=bucket,
        region=region,
        names=names,
        prefix=prefix,
        blobs_prefix=blobs_prefix,
        manifests_prefix=manifests_prefix,
        endpoint_url=endpoint,
        use_path_style=path_style,
        credentials=credentials,
        retry_max_attempts=attempts,
        disable_accept_encoding=no_encoding,
    )
    return location, _S3Extra(upload_parallelism=parallelism, touch_refresh=refresh)


# Azure's rules: 3-63 lower-case letters, digits and single hyphens, not at either end
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


def _setting(attrs: dict[str, str], key: str, env: Mapping[str, str], variable: str) -> str | None:
    """An attribute (popped; given, even empty, it wins), else an environment variable, as
    BuildKit's azblob cache reads them."""
    if key in attrs:
        return attrs.pop(key)
    return env.get(variable)


def _account_of_url(host: str, rest: str) -> str:
    """The account an ``account_url`` names: its host's first label
    (``ACCOUNT.blob.core.windows.net``), or for an IP address or ``localhost`` (an
    emulator's ``http://127.0.0.1:10000/ACCOUNT``) its path's first segment, as the Azure
    SDKs read such URLs (BuildKit takes the first label, ``127``, there)."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
        ip_style = True
    except ValueError:
        ip_style = host.lower() == "localhost"
    if ip_style:
        path = rest.partition("/")[2]
        return path.split("/", 1)[0]
    return host.split(".", 1)[0]


def _azblob_location(
    flag: str, attrs: dict[str, str], env: Mapping[str, str] | None
) -> AzblobLocation:
    """The ``type=azblob`` attributes BuildKit's azblob cache reads (popped from
    ``attrs``), with its ``BUILDKIT_AZURE_STORAGE_*`` environment defaults."""
    env = os.environ if env is None else env
    url = _setting(attrs, "account_url", env, "BUILDKIT_AZURE_STORAGE_ACCOUNT_URL")
    if not url:
        raise UsageError(
            f"{flag}: type=azblob needs account_url=URL (or $BUILDKIT_AZURE_STORAGE_ACCOUNT_URL)"
        )
    if _endpoint_has_userinfo(url):
        raise UsageError(
            f"{flag}: account_url holds a user name or password (requests are signed with "
            "the account key; give the URL without user@)"
        )
    # checked first: the other messages quote the URL, and a SAS token's signature
    # would be in it
    if "?" in url or "#" in url:
        raise UsageError(
            f"{flag}: account_url holds a query or fragment (a SAS token is not supported; "
            "give secret_access_key)"
        )
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit(":", 1)[0].strip("[]")
    if scheme.lower() not in ("http", "https") or not host:
        raise UsageError(f"{flag}: account_url={url!r} is not an http(s) URL")
    account = _setting(attrs, "account_name", env, "BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME")
    if account is None:
        account = _account_of_url(host, rest)
    if not account:
        raise UsageError(f"{flag}: type=azblob has no account name (give account_name=NAME)")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", account):
        raise UsageError(f"{flag}: account_name={account!r} is not a storage account name")
    container = _setting(attrs, "container", env, "BUILDKIT_AZURE_STORAGE_CONTAINER")
    if container is None:
        container = DEFAULT_AZBLOB_CONTAINER
    if not _CONTAINER.fullmatch(container):
        raise UsageError(
            f"{flag}: container={container!r} is not a container name (3-63 lower-case "
            "letters, digits and single hyphens)"
        )
    prefix = _setting(attrs, "prefix", env, "BUILDKIT_AZURE_STORAGE_PREFIX") or ""
    names, blobs_prefix, manifests_prefix = _object_keys(
        flag, attrs, prefix, blobs="blobs", manifests="manifests"
    )
    for key, value in (
        ("prefix", prefix),
        ("blobs_prefix", blobs_prefix),
        ("manifests_prefix", manifests_prefix),
    ):
        if value.startswith("/"):  # the first part of a blob name joined as Go joins
            raise UsageError(f"{flag}: {key}={value!r} starts with '/'")
    secret = attrs.pop("secret_access_key", "")
    if not secret:
        raise UsageError(
            f"{flag}: type=azblob needs the storage account's access key in "
            "secret_access_key (BuildKit's fallback without one, Microsoft Entra ID "
            "credentials, is not supported)"
        )
    return AzblobLocation(
        account_url=url,
        account=account,
        key=secret,
        container=container,
        names=names,
        prefix=prefix,
        blobs_prefix=blobs_prefix,
        manifests_prefix=manifests_prefix,
    )
