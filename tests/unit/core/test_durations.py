"""Go's duration strings, read once for every flag and config that takes them."""

from __future__ import annotations

import pytest

from dockyard.core.durations import parse_go_duration

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1h30m", 5400 * S),
        ("1.5h", 5400 * S),
        ("500ms", S // 2),
        (".5s", S // 2),
        ("-2m", -120 * S),
        ("1µs", 1000),
        ("1μs", 1000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("10", 'time: missing unit in duration "10"'),
        ("2d", 'time: unknown unit "d" in duration "2d"'),
        ("h", 'time: invalid duration "h"'),
        ("99999999999h", 'time: invalid duration "99999999999h"'),
    ],
)
def test_go_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_go_duration(text)
    assert str(caught.value) == message


def test_days_where_a_config_takes_them() -> None:
    assert parse_go_duration("2d", days=True) == 2 * 86_400 * S
    assert parse_go_duration("1.5d12h", days=True) == 2 * 86_400 * S
