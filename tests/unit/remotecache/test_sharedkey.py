"""The Shared Key signer against Microsoft's documented rules ("Authorize with Shared
Key", Blob service 2009-09-19 and later): the string to sign's fixed lines, the
canonicalized headers and resource (the documentation's own examples), and the
signature's form."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from dockyard.remotecache import AzureSharedKey
from dockyard.remotecache._sharedkey import (
    canonicalized_headers,
    canonicalized_resource,
    shared_key_authorization,
    string_to_sign,
)

KEY = base64.b64encode(b"an account key of sixty-four bytes, as Azure's are, for tests!!!").decode()


def test_the_documented_get_container_metadata_example() -> None:
    # the documentation's string to sign for a Get Container Metadata of version
    # 2009-09-19 (timeout=20), eleven empty standard header lines, then the
    # canonicalized headers and resource
    headers = {"x-ms-date": "Sun, 11 Oct 2009 21:49:13 GMT", "x-ms-version": "2009-09-19"}
    params = [("restype", "container"), ("comp", "metadata"), ("timeout", "20")]
    expected = (
        "GET\n" + "\n" * 11 + "x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\n"
        "x-ms-version:2009-09-19\n"
        "/myaccount/myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20"
    )
    assert string_to_sign("GET", "myaccount", "/myaccount/mycontainer", params, headers) == (
        expected
    )


def test_canonicalized_resource_examples() -> None:
    # the documentation's examples: parameters by lower-cased name, sorted, values of a
    # repeated name sorted and joined with commas; the path as sent
    assert (
        canonicalized_resource(
            "myaccount", "/mycontainer", [("restype", "container"), ("comp", "metadata")]
        )
        == "/myaccount/mycontainer\ncomp:metadata\nrestype:container"
    )
    assert canonicalized_resource(
        "myaccount",
        "/mycontainer",
        [
            ("restype", "container"),
            ("comp", "list"),
            ("include", "snapshots"),
            ("include", "metadata"),
            ("include", "uncommittedblobs"),
        ],
    ) == ("/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots,uncommittedblobs\n"
          "restype:container")  # fmt: skip
    # the emulator's path style: the account both in front and as the path's first part
    assert (
        canonicalized_resource("devstoreaccount1", "/devstoreaccount1/mycontainer/a%3Ab", [])
        == "/devstoreaccount1/devstoreaccount1/mycontainer/a%3Ab"
    )
    assert canonicalized_resource("a", "/c/b", [("COMP", "Block")]) == "/a/c/b\ncomp:Block"
    assert canonicalized_resource("a", "", []) == "/a/"


def test_canonicalized_headers() -> None:
    # x-ms-* only, names lower-cased and sorted, values with folded white space
    text = canonicalized_headers(
        [
            ("X-MS-Version", "2021-12-02"),
            ("Content-Type", "text/plain"),
            ("x-ms-meta-b", "  two   words  "),
            ("x-ms-date", "Sat, 28 Nov 2026 21:00:00 GMT"),
            ("x-ms-meta-a", "1"),
            ("x-ms-meta-a", "2"),
        ]
    )
    assert text == (
        "x-ms-date:Sat, 28 Nov 2026 21:00:00 GMT\n"
        "x-ms-meta-a:1,2\n"
        "x-ms-meta-b:two words\n"
        "x-ms-version:2021-12-02\n"
    )


def test_standard_headers_in_their_order_and_a_zero_length_empty() -> None:
    headers = {
        "Range": "bytes=0-9",
        "Content-Type": "application/octet-stream",
        "Content-Length": "11",
        "Content-MD5": "md5",
        "If-None-Match": "*",
        "Content-Encoding": "gzip",
        "Content-Language": "en",
        "If-Match": "etag",
        "If-Modified-Since": "ims",
        "If-Unmodified-Since": "ius",
        "Date": "date",
        "x-ms-version": "v",
    }
    lines = string_to_sign("PUT", "acct", "/c/b", [], headers).split("\n")
    assert lines[:12] == [
        "PUT",
        "gzip",
        "en",
        "11",
        "md5",
        "application/octet-stream",
        "date",
        "ims",
        "etag",
        "*",
        "ius",
        "bytes=0-9",
    ]
    assert lines[12:] == ["x-ms-version:v", "/acct/c/b"]
    # version 2015-02-21 and later: a Content-Length of 0 is an empty line
    zero = string_to_sign("PUT", "acct", "/c/b", [], {"Content-Length": "0"}).split("\n")
    assert zero[3] == ""


def test_the_signature_and_header() -> None:
    credential = AzureSharedKey(account="acct", key=KEY)
    headers = {"x-ms-date": "Sat, 28 Nov 2026 21:00:00 GMT", "x-ms-version": "2021-12-02"}
    header = shared_key_authorization(credential, "HEAD", "/c/b", [], headers)
    text = string_to_sign("HEAD", "acct", "/c/b", [], headers)
    mac = hmac.new(base64.b64decode(KEY), text.encode(), hashlib.sha256).digest()
    assert header == f"SharedKey acct:{base64.b64encode(mac).decode()}"
    # a known answer, computed apart from this code (openssl dgst -sha256 -mac HMAC over
    # the string to sign written out by hand)
    assert header == "SharedKey acct:9gNeGLcSbIJqR4d51AyiuXSgGgc9tdej8Qv2HNs2tFg="


def test_the_key_is_never_shown() -> None:
    credential = AzureSharedKey(account="acct", key=KEY)
    assert KEY not in repr(credential)
    bad = AzureSharedKey(account="acct", key="not base64 !!")
    with pytest.raises(ValueError) as caught:
        bad.key_bytes()
    assert "not base64" in str(caught.value)
    assert "!!" not in str(caught.value)
