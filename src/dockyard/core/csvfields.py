"""Flag values made of comma-separated ``key=value`` fields, read as buildx reads them.

``--output``, ``--cache-to``/``--cache-from``, ``--provenance`` and ``--attest`` take a
CSV record: a field holding a comma is quoted (``"name=a,b"``), and empty fields are
ignored. :func:`csv_fields` splits a value into its fields; :func:`key_values` reads them
as ``key=value`` pairs (keys case-insensitive); :func:`csv_record` writes fields back
as one value (what a client sends a daemon). Every mistake is a
:class:`~dockyard.core.UsageError` naming the flag.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ._errors import UsageError

__all__ = ["csv_fields", "csv_record", "key_values"]


def csv_fields(text: str, what: str) -> list[str]:
    """The non-empty fields of ``text``, stripped of surrounding blanks (``what`` names
    the flag in errors)."""
    import csv  # loaded by the flags that need it, not with core

    try:
        rows = list(csv.reader([text]))
    except csv.Error as exc:
        raise UsageError(f"{what}: invalid value {text!r}: {exc}") from None
    return [field.strip() for field in (rows[0] if rows else []) if field.strip()]


def key_values(fields: Iterable[str], what: str, *, joined: Collection[str] = ()) -> dict[str, str]:
    """``key=value`` ``fields`` as a mapping: keys lower-cased, keys and values stripped.

    A field without ``=`` or a key given twice is an error, except that the values of a
    key in ``joined`` (``name`` of ``--output``: several names) are joined with commas.
    """
    out: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{what}: invalid field {item!r} (expected key=value)")
        key, value = key.strip().lower(), value.strip()
        if key in out:
            if key not in joined:
                raise UsageError(f"{what}: {key} given twice")
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
