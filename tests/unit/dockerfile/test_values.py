"""Value formats inside instructions: durations, signals, ports, chmod, sizes."""

from __future__ import annotations

import time

import pytest

from dockyard.dockerfile import (
    BadValue,
    ChmodError,
    parse_checksum,
    parse_chmod,
    parse_duration,
    parse_ports,
    parse_signal,
)
from dockyard.dockerfile._mounts import MountError, parse_ram_size

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("0s", 0),
        ("5s", 5 * SECOND),
        ("1m30s", 90 * SECOND),
        ("1.5h", 5400 * SECOND),
        ("300ms", 300_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("7ns", 7),
        ("-2s", -2 * SECOND),
        ("+1h", 3600 * SECOND),
        (".5s", SECOND // 2),
        ("1.s", SECOND),
    ],
)
def test_parse_duration(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("5", "missing unit"),
        ("5d", 'unknown unit "d"'),
        ("s", "invalid duration"),
        ("-", "invalid duration"),
        ("1..5s", "missing unit"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(BadValue, match=message):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGTERM", 15), ("term", 15), ("KILL", 9), ("9", 9), ("SIGRTMIN+3", 37), ("RTMAX", 64)],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "SIGFOO", "", "SIG"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(BadValue, match="Invalid signal"):
        parse_signal(text)


def test_parse_ports() -> None:
    assert parse_ports(["80", "53/udp", "443/TCP", "8000-8002", "80/tcp"]) == (
        "80/tcp",
        "53/udp",
        "443/tcp",
        "8000/tcp",
        "8001/tcp",
        "8002/tcp",
    )
    for bad in ["http", "80/ftp", "99999", "10-5", "9" * 5000, "1-" + "9" * 5000, "\u0668\u0660"]:
        with pytest.raises(BadValue):
            parse_ports([bad])


def test_parse_ports_overlapping_ranges() -> None:
    assert parse_ports(["5-7", "1-3/udp", "2-9", "4", "3/udp"]) == (
        *(f"{p}/tcp" for p in range(5, 8)),
        *(f"{p}/udp" for p in range(1, 4)),
        *(f"{p}/tcp" for p in (2, 3, 4, 8, 9)),
    )
    started = time.perf_counter()
    # 60 million ports listed, 65 536 of them distinct: 13 s before
    ports = parse_ports([f"{i}-{i + 60_000}" for i in range(1000)])
    assert time.perf_counter() - started < 1.0
    assert len(ports) == 61_000


def test_parse_checksum() -> None:
    digest = "sha256:" + "a" * 64
    assert parse_checksum(digest) == digest
    for bad in ["sha256:abc", "md5:" + "a" * 32, "a" * 64, "sha256:" + "A" * 64]:
        with pytest.raises(BadValue):
            parse_checksum(bad)


@pytest.mark.parametrize(
    ("text", "mode", "is_dir", "result"),
    [
        ("0755", 0o600, False, 0o755),
        ("4755", 0o644, False, 0o4755),
        ("u+x", 0o644, False, 0o744),
        ("go-w", 0o666, False, 0o644),
        ("a=rX", 0o640, True, 0o555),
        ("a=rX", 0o640, False, 0o444),
        ("a=rX", 0o740, False, 0o555),
        ("u=rw,g=r,o=", 0o777, False, 0o640),
        ("+x", 0o600, False, 0o711),
        ("g=u", 0o750, False, 0o770),
        ("u+s,g+s", 0o755, False, 0o6755),
        ("+t", 0o777, True, 0o1777),
        ("o-rwx,u+w", 0o555, False, 0o750),
        ("u-x+w", 0o500, False, 0o600),
    ],
)
def test_chmod(text: str, mode: int, is_dir: bool, result: int) -> None:
    assert parse_chmod(text).apply(mode, is_dir=is_dir) == result


@pytest.mark.parametrize("text", ["", "9", "08", "77777", "u+q", "x+u", "u", "u+x,", "rwx"])
def test_chmod_rejects(text: str) -> None:
    with pytest.raises(ChmodError, match="invalid chmod parameter"):
        parse_chmod(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("1.5g", 3 << 29),
        ("2MiB", 2 << 20),
        ("10 kb", 10 << 10),
    ],
)
def test_ram_size(text: str, size: int) -> None:
    assert parse_ram_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lots",
        "1x",
        "-1m",
        "1.2.3m",
        "9" * 400,  # float infinity: was an OverflowError traceback
        "10000000p",  # past Go's int64
        "\u0661\u0660\u0662\u0664",  # Arabic-Indic digits: Go's ParseFloat takes ASCII only
    ],
)
def test_ram_size_rejects(text: str) -> None:
    with pytest.raises(MountError, match="invalid size"):
        parse_ram_size(text)
