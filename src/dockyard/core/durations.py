"""Go's duration strings (``time.ParseDuration``): ``1m30s``, ``500ms``, ``1.5h``, ``-2h``.

One reader for every place a duration is written the way BuildKit and docker write them
(``HEALTHCHECK --interval``, ``prune --keep-duration``, the daemon's GC config, the S3
cache's ``touch_refresh``); each caller turns it into its own unit and error class.
Imported on its own (``from dockyard.core.durations import ...``): standard library only.
"""

from __future__ import annotations

import re

__all__ = ["parse_go_duration"]

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5
    "μs": 1_000,  # U+03BC
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DAY = 86_400_000_000_000
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_go_duration(text: str, *, days: bool = False) -> int:
    """``text`` in nanoseconds, as Go's ``time.ParseDuration`` reads it (``days``: also
    the unit ``d``, 24 h, which docker's and BuildKit's configs accept but Go does not).
    A ``ValueError`` with Go's message otherwise."""
    original = text
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    sign = 1
    if text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        assert match is not None  # every group may be empty
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise ValueError(f'time: invalid duration "{original}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{original}"')
        scale = _DAY if days and unit == "d" else _UNITS.get(unit)
        if scale is None:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{original}"')
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        pos = match.end()
    if total > (1 << 63) - 1:
        raise ValueError(f'time: invalid duration "{original}"')
    return sign * total
