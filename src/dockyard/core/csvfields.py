"""Flag values made of comma-separated ``key=value`` fields, read as buildx reads them.

``--output``, ``--cache-to``/``--cache-from``, ``--provenance`` and ``--attest`` take a
CSV record: a field holding a comma is quoted (``"name=a,b"``), and empty fields are
ignored. :func:`csv_fields` splits a value into its fields; :func:`key_values` reads them
as ``key=value`` pairs (keys case-insensitive); :func:`csv_record` writes fields back
as one value (what a client sends a daemon). Every mistake is a
:class:`~dockyard.core.UsageError` naming the flag.

Such a value may hold a secret (``--cache-to type=s3,secret_access_key=...``, a
``password=``, a URL's ``user:password@``): the errors here never show one, and
:func:`redact` does the same for a caller's own messages quoting the value.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from ._errors import UsageError

__all__ = ["csv_fields", "csv_record", "is_secret_key", "key_values", "redact"]

_SECRET_KEY = re.compile(r"secret|passw(or)?d|token|credential|private|api[-_]?key", re.I)
_SECRET_FIELD = re.compile(
    r"([A-Za-z0-9_.\-]*(?:secret|passw(?:or)?d|token|credential|private|api[-_]?key)"
    r"[A-Za-z0-9_.\-]*)=(?!\*\*\*)[^,\s'\"]*",
    re.I,
)
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]*@")
_HIDDEN = "***"


def is_secret_key(key: str) -> bool:
    """Whether the field ``key`` names a secret (a password, token, secret key ...)."""
    return _SECRET_KEY.search(key) is not None


def _secret_values(fields: Iterable[str]) -> list[str]:
    """The values of the secret keys among ``fields``, and the fields that follow one
    without ``=`` (pieces an unquoted comma split off it)."""
    out: list[str] = []
    after_secret = False
    for item in fields:
        key, sep, value = item.partition("=")
        if sep:
            after_secret = is_secret_key(key)
            if after_secret and value.strip():
                out.append(value.strip())
        elif after_secret and item.strip():
            out.append(item.strip())
    return out


def _secrets_of(source: str) -> list[str]:
    import csv

    try:
        rows = list(csv.reader([source]))
    except csv.Error:  # a broken record: all after a secret key's = counts as secret
        return [
            source[m.end() :]
            for m in re.finditer(r"[^,\s'\"]*=", source)
            if is_secret_key(m.group()[:-1])
        ]
    return _secret_values(rows[0] if rows else [])


def redact(message: str, source: str = "", *, secrets: Iterable[str] = ()) -> str:
    """``message`` (an error quoting the flag value ``source``) with every secret of
    ``source`` and ``secrets`` replaced by ``***``, the value of every secret-looking
    ``key=`` field too, and the password of every URL."""
    values = {v for v in (*secrets, *_secrets_of(source)) if v}
    for value in sorted(values, key=len, reverse=True):
        for form in (value, value.replace('"', '""'), repr(value)[1:-1]):
            message = message.replace(form, _HIDDEN)
    message = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{_HIDDEN}@", message)
    return _SECRET_FIELD.sub(lambda m: f"{m.group(1)}={_HIDDEN}", message)


def csv_fields(text: str, what: str) -> list[str]:
    """The non-empty fields of ``text``, stripped of surrounding blanks (``what`` names
    the flag in errors)."""
    import csv  # loaded by the flags that need it, not with core

    try:
        rows = list(csv.reader([text]))
    except csv.Error as exc:
        raise UsageError(f"{what}: invalid value {redact(text, text)!r}: {exc}") from None
    return [field.strip() for field in (rows[0] if rows else []) if field.strip()]


def key_values(fields: Iterable[str], what: str, *, joined: Collection[str] = ()) -> dict[str, str]:
    """``key=value`` ``fields`` as a mapping: keys lower-cased, keys and values stripped.

    A field without ``=`` or a key given twice is an error, except that the values of a
    key in ``joined`` (``name`` of ``--output``: several names) are joined with commas.
    ``what`` may quote the whole value: no error shows a secret it holds.
    """
    fields = list(fields)
    out: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(
                redact(
                    f"{what}: invalid field {item!r} (expected key=value); quote a field "
                    'whose value holds a comma: "key=a,b"',
                    secrets=_secret_values(fields),
                )
            )
        key, value = key.strip().lower(), value.strip()
        if key in out:
            if key not in joined:
                raise UsageError(
                    redact(f"{what}: {key} given twice", secrets=_secret_values(fields))
                )
            value = f"{out[key]},{value}"
        out[key] = value
    return out


def csv_record(fields: Iterable[str]) -> str:
    """``fields`` as one CSV record (quoted where a field holds a comma or a quote), the
    inverse of :func:`csv_fields`."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()
