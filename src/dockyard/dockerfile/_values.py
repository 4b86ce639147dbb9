"""Values inside instructions with formats of their own: Go durations (``HEALTHCHECK``),
signals (``STOPSIGNAL``), port specs (``EXPOSE``), digests (``ADD --checksum``)."""

from __future__ import annotations

import re

__all__ = [
    "BadValue",
    "parse_add_checksum",
    "parse_checksum",
    "parse_duration",
    "parse_ports",
    "parse_signal",
]


class BadValue(ValueError):
    """A malformed value; the message says what was expected."""


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` (``1m30s``, ``500ms``, ``1.5h``) in nanoseconds."""
    from dockyard.core.durations import parse_go_duration

    try:
        return parse_go_duration(text)
    except ValueError as exc:
        raise BadValue(str(exc)) from None


_SIGNALS = {
    "ABRT": 6,
    "ALRM": 14,
    "BUS": 7,
    "CHLD": 17,
    "CLD": 17,
    "CONT": 18,
    "FPE": 8,
    "HUP": 1,
    "ILL": 4,
    "INT": 2,
    "IO": 29,
    "IOT": 6,
    "KILL": 9,
    "PIPE": 13,
    "POLL": 29,
    "PROF": 27,
    "PWR": 30,
    "QUIT": 3,
    "SEGV": 11,
    "STKFLT": 16,
    "STOP": 19,
    "SYS": 31,
    "TERM": 15,
    "TRAP": 5,
    "TSTP": 20,
    "TTIN": 21,
    "TTOU": 22,
    "URG": 23,
    "USR1": 10,
    "USR2": 12,
    "VTALRM": 26,
    "WINCH": 28,
    "XCPU": 24,
    "XFSZ": 25,
    "RTMIN": 34,
    "RTMAX": 64,
}
for _i in range(1, 16):
    _SIGNALS[f"RTMIN+{_i}"] = 34 + _i
    _SIGNALS[f"RTMAX-{_i}"] = 64 - _i


def parse_signal(text: str) -> int:
    """A signal name (``SIGTERM``, ``TERM``, ``RTMIN+3``) or number, as moby does."""
    try:
        number = int(text, 10)
    except ValueError:
        number = None
    if number is not None and text.lstrip("+-").isdigit():
        if number == 0:
            raise BadValue(f"Invalid signal: {text}")
        return number
    upper = text.upper()
    signal = _SIGNALS.get(upper.removeprefix("SIG"))
    if signal is None:
        raise BadValue(f"Invalid signal: {text} (use a name like SIGTERM or a number)")
    return signal


_PORT_RE = re.compile(
    r"(?:(?:\[?([0-9a-fA-F:.]*)\]?):)?(?:(\d*(?:-\d*)?):)?(\d+(?:-\d+)?)(?:/(\w+))?\Z",
    re.ASCII,  # Go's strconv: '٨٠' is not port 80
)


def _port_range(text: str, spec: str) -> tuple[int, int]:
    start_text, _, end_text = text.partition("-")
    if len(start_text) > 5 or len(end_text) > 5:
        # int() refuses 4300 digits with a ValueError of its own (a traceback)
        raise BadValue(f"invalid port range: {text[:20]}... in {spec[:40]!r}...")
    start = int(start_text)
    end = int(end_text) if end_text else start
    if start > 65535 or end > 65535 or end < start:
        raise BadValue(f"invalid port range: {text} in {spec!r}")
    return start, end


def parse_ports(specs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``EXPOSE`` words as image-config keys (``80/tcp``, ``53/udp``), in order, without
    duplicates; ranges (``8000-8002``) expand to one key per port."""
    out: list[str] = []
    seen: dict[str, bytearray] = {}
    for spec in specs:
        match = _PORT_RE.match(spec)
        if match is None:
            raise BadValue(
                f"invalid port specification: {spec!r} (use PORT, PORT/PROTO or START-END/PROTO)"
            )
        proto = (match.group(4) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise BadValue(f"invalid proto: {match.group(4)} in {spec!r} (use tcp, udp or sctp)")
        start, end = _port_range(match.group(3), spec)
        # the ports of the range not listed yet, found by bytes.find: a thousand ranges
        # of 60 000 ports (12 KB of Dockerfile) were 60 million dict lookups (13 s)
        listed = seen.setdefault(proto, bytearray(65536))
        first = listed.find(0, start, end + 1)
        while first != -1:
            stop = listed.find(1, first, end + 1)
            if stop == -1:
                stop = end + 1
            out.extend(f"{port}/{proto}" for port in range(first, stop))
            listed[first:stop] = b"\x01" * (stop - first)
            first = listed.find(0, stop, end + 1)
    return tuple(out)


_COMMIT_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")


def parse_add_checksum(text: str) -> str:
    """``ADD --checksum``: a digest (http sources) or a full git commit hash, 40 or 64
    hex digits (git sources); which one fits the source is checked by the converter."""
    if _COMMIT_RE.match(text):
        return text
    return parse_checksum(text)


_DIGEST_RE = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)\Z")
_DIGEST_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


def parse_checksum(text: str) -> str:
    """An ``algorithm:hex`` digest (sha256, sha384, sha512)."""
    match = _DIGEST_RE.match(text)
    if match is None or len(match.group(2)) != _DIGEST_LENGTH[match.group(1)]:
        raise BadValue(f"invalid checksum digest format: {text!r} (use sha256:<64 hex digits>)")
    return text
