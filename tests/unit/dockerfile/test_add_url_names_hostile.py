"""ADD of a URL names its file from the decoded URL path (575575e): whatever the path
decodes to (``%2F``, ``%2E%2E``, ``%00``, a newline), the download is written under one
plain name inside its own snapshot (security audit 2, row 57)."""

from __future__ import annotations

import pytest

from dockyard.dockerfile._convert_copy import _url_filename
from dockyard.source import HttpSpec


@pytest.mark.parametrize(
    "url",
    [
        "http://h/x/%2E%2E",
        "http://h/%2e%2e/",
        "http://h/x/..",
        "http://h/..%2F..%2Fetc%2Fpasswd",
        "http://h/a%2F..%2F..",
        "http://h/a/%2F",
        "http://h/%2F%2F%2F",
        "http://h/a%00b",
        "http://h/a%0Ab",
        "http://h/a%5C..%5C..",
    ],
)
def test_a_decoded_name_stays_one_plain_name(url: str) -> None:
    asked = _url_filename(url)
    assert "/" not in asked
    written = HttpSpec.create(url, filename=asked).name_for(None)
    assert "/" not in written
    assert written not in ("", ".", "..")
    if "\0" in asked:  # refused when the file is made (as Go's open refuses it)
        assert "\0" in written
    else:  # the name, or "download" for one that is no plain name (``..``, ``a\\..``)
        assert written in (asked, "download")
