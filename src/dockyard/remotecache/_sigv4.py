"""AWS Signature Version 4 (header form), as the AWS SDKs sign S3 requests.

Pure functions over text: the canonical request, the string to sign, the signing key
and the ``Authorization`` header. :func:`sign` takes the request as it will be sent
(method, the canonical URI — already percent-encoded, S3 style: once, never
normalized —, query pairs, headers, the payload hash) and returns the headers to add.
Checked against AWS's published test vectors (``tests/data/sigv4/``).

Secrets stay in :class:`AwsCredentials` (its ``repr`` hides them); nothing here logs or
raises with them.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "UNSIGNED_PAYLOAD",
    "AwsCredentials",
    "Signed",
    "canonical_query",
    "canonical_request",
    "sign",
    "signing_key",
    "uri_encode",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True, slots=True, kw_only=True)
class AwsCredentials:
    """An access key and its secret (and a session token for temporary credentials,
    ``expires_at`` their expiry in epoch seconds). ``repr`` shows the access key id and
    the expiry only."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)
    expires_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """One signature and what it was made from (the intermediate texts are for tests
    and for comparing with a server's ``SignatureDoesNotMatch`` answer)."""

    canonical_request: str
    string_to_sign: str
    signature: str
    headers: Mapping[str, str]  # to add to the request: authorization, x-amz-date, ...


def uri_encode(text: str, *, slash: bool = True) -> str:
    """Percent-encode ``text`` (UTF-8) as SigV4 wants it: every byte but the unreserved
    ones, upper-case hex; ``slash=False`` keeps ``/`` (an object key in a path)."""
    out: list[str] = []
    for byte in text.encode():
        if byte in _UNRESERVED or (byte == 0x2F and not slash):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def canonical_query(params: Sequence[tuple[str, str]]) -> str:
    """The canonical query string: names and values encoded, sorted by name then
    value (a name without a value gets an empty one)."""
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _header_value(value: str) -> str:
    return " ".join(value.split())  # trimmed, inner runs of blanks one space


def canonical_request(
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    payload_hash: str,
) -> tuple[str, str]:
    """``(canonical request, signed headers)``. ``path`` is the canonical URI as sent
    (percent-encoded); ``headers`` may repeat a name (values joined with commas, in
    order)."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.strip().lower(), []).append(_header_value(value))
    names = sorted(merged)
    lines = "".join(f"{name}:{','.join(merged[name])}\n" for name in names)
    signed = ";".join(names)
    text = "\n".join(
        [method.upper(), path or "/", canonical_query(params), lines, signed, payload_hash]
    )
    return text, signed


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """The key of one day, region and service, derived from the secret."""
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    *,
    payload_hash: str,
    credentials: AwsCredentials,
    region: str,
    service: str,
    when: datetime.datetime,
    content_sha256: bool = True,
) -> Signed:
    """Sign one request. ``headers`` must hold ``host`` (and whatever else is to be
    signed); ``x-amz-date``, ``x-amz-security-token`` (with a session token) and, with
    ``content_sha256`` (S3 wants it), ``x-amz-content-sha256`` are added and signed."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    moment = when.astimezone(datetime.UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    added: dict[str, str] = {}
    present = {name.lower() for name, _ in items}
    if "x-amz-date" not in present:
        added["x-amz-date"] = stamp
    if credentials.session_token and "x-amz-security-token" not in present:
        added["x-amz-security-token"] = credentials.session_token
    if content_sha256 and "x-amz-content-sha256" not in present:
        added["x-amz-content-sha256"] = payload_hash
    creq, signed_headers = canonical_request(
        method, path, params, [*items, *added.items()], payload_hash
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(credentials.secret_access_key, day, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return Signed(
        canonical_request=creq, string_to_sign=to_sign, signature=signature, headers=added
    )
