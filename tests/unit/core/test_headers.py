"""Numbers in HTTP headers from registries and object stores (found by fuzzing: a
Content-Length of 5000 digits was int()'s ValueError traceback, '٣' was read as 3)."""

from __future__ import annotations

import pytest

from dockyard.core.headers import header_int


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("1234", 1234),
        (str((1 << 63) - 1), (1 << 63) - 1),
        (str(1 << 63), None),
        ("9" * 5000, None),
        ("\u0663", None),
        ("\uff11", None),
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1_0", None),
        ("", None),
        (None, None),
    ],
)
def test_header_int(text: str | None, value: int | None) -> None:
    assert header_int(text) == value


def test_a_direct_answer_with_a_huge_length_has_none() -> None:
    from dockyard.registry._direct import _content_length, _parse_head

    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    _, code, _, headers = _parse_head(head)
    assert code == 200
    assert _content_length(headers) is None
