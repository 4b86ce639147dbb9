"""Azure Storage *Shared Key* authorization (Blob service, version 2009-09-19 and later),
as Microsoft documents it ("Authorize with Shared Key").

Pure functions over text. The string to sign is the verb, then the values of
``Content-Encoding``, ``Content-Language``, ``Content-Length`` (empty when 0),
``Content-MD5``, ``Content-Type``, ``Date``, ``If-Modified-Since``, ``If-Match``,
``If-None-Match``, ``If-Unmodified-Since`` and ``Range``, each on its own line, then the
canonicalized headers (every ``x-ms-*`` header, its name lower-cased, sorted by name,
``name:value`` with the value's runs of white space folded to one space, one per line),
then the canonicalized resource: ``/ACCOUNT`` + the request path as sent (encoded), and
for each query parameter, sorted by its lower-cased name, a line ``name:v1,v2`` of its
decoded values (sorted). The signature is the base64 of the HMAC-SHA256 of that text,
keyed with the base64-decoded account key; the header is
``Authorization: SharedKey ACCOUNT:SIGNATURE``.

The key stays in :class:`AzureSharedKey` (its ``repr`` hides it); nothing here logs or
raises with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AzureSharedKey",
    "canonicalized_headers",
    "canonicalized_resource",
    "shared_key_authorization",
    "string_to_sign",
]

_STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AzureSharedKey:
    """A storage account's name and one of its access keys (base64, as the portal shows
    it). ``repr`` shows the account only."""

    account: str
    key: str = field(repr=False)

    def key_bytes(self) -> bytes:
        """The decoded key; ``ValueError`` (naming no part of it) when it is not base64."""
        try:
            return base64.b64decode(self.key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the account key is not base64") from None


def _fold(value: str) -> str:
    return " ".join(value.split())


def canonicalized_headers(headers: Sequence[tuple[str, str]]) -> str:
    """The ``x-ms-*`` headers, one ``name:value\\n`` line each, sorted by name (a name
    given twice: its values joined with commas, in order)."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        low = name.strip().lower()
        if low.startswith("x-ms-"):
            merged.setdefault(low, []).append(_fold(value))
    return "".join(f"{name}:{','.join(merged[name])}\n" for name in sorted(merged))


def canonicalized_resource(account: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    """``/ACCOUNT`` + ``path`` (as sent: percent-encoded), then ``\\nname:values`` for each
    query parameter (names lower-cased and sorted; decoded values sorted, joined with
    commas)."""
    out = f"/{account}{path or '/'}"
    merged: dict[str, list[str]] = {}
    for name, value in params:
        merged.setdefault(name.lower(), []).append(value)
    for name in sorted(merged):
        out += f"\n{name}:{','.join(sorted(merged[name]))}"
    return out


def string_to_sign(
    method: str,
    account: str,
    path: str,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
) -> str:
    """The text a request's Shared Key signature is made of (see the module docstring).
    ``headers`` are those the request will carry (names in any case)."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    standard = {name.strip().lower(): value for name, value in items}
    lines = [method.upper()]
    for name in _STANDARD_HEADERS:
        value = standard.get(name, "")
        if name == "content-length" and value.strip() == "0":
            value = ""  # version 2015-02-21 and later: a zero length is empty
        lines.append(value)
    return (
        "\n".join(lines)
        + "\n"
        + canonicalized_headers(items)
        + canonicalized_resource(account, path, params)
    )


def shared_key_authorization(
    credential: AzureSharedKey,
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
) -> str:
    """The ``Authorization`` header of a request (``headers`` must already hold
    ``x-ms-date`` and ``x-ms-version``)."""
    text = string_to_sign(method, credential.account, path, params, headers)
    digest = hmac.new(credential.key_bytes(), text.encode(), hashlib.sha256).digest()
    return f"SharedKey {credential.account}:{base64.b64encode(digest).decode()}"
