"""The SigV4 signer against AWS's published test vectors (``tests/data/sigv4``)."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.remotecache import AwsCredentials
from dockyard.remotecache._sigv4 import canonical_query, sign, signing_key, uri_encode

DATA = Path(__file__).resolve().parents[2] / "data" / "sigv4" / "vectors.json"
_DOC = json.loads(DATA.read_text())
VECTORS: list[dict[str, Any]] = _DOC["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_published_vector(vector: dict[str, Any]) -> None:
    suite = _DOC["suites"][vector["suite"]]
    when = datetime.datetime.strptime(suite["date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    credentials = AwsCredentials(
        access_key_id=suite["access_key_id"],
        secret_access_key=suite["secret_access_key"],
        session_token=vector.get("session_token", ""),
    )
    signed = sign(
        vector["method"],
        vector["path"],
        [(k, v) for k, v in vector["query"]],
        [(k, v) for k, v in vector["headers"]],
        payload_hash=hashlib.sha256(vector["body"].encode()).hexdigest(),
        credentials=credentials,
        region=suite["region"],
        service=suite["service"],
        when=when,
        content_sha256=suite["x_amz_content_sha256"],
    )
    if "canonical_request" in vector:
        assert signed.canonical_request == vector["canonical_request"]
    if "string_to_sign" in vector:
        assert signed.string_to_sign == vector["string_to_sign"]
    assert signed.signature == vector["signature"]
    scope = f"{suite['date'][:8]}/{suite['region']}/{suite['service']}/aws4_request"
    assert signed.headers["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={suite['access_key_id']}/{scope}, "
        f"SignedHeaders={vector['signed_headers']}, Signature={vector['signature']}"
    )
    if vector.get("session_token"):
        assert signed.headers["x-amz-security-token"] == vector["session_token"]


def test_signing_key_of_the_documented_example() -> None:
    # AWS's "Deriving the signing key" example (iam, us-east-1, 2015-08-30)
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_uri_encoding() -> None:
    assert uri_encode("blobs/sha256:ab", slash=False) == "blobs/sha256%3Aab"
    assert uri_encode("a b/c+d") == "a%20b%2Fc%2Bd"
    assert uri_encode("-_.~") == "-_.~"
    assert uri_encode("\u00e9") == "%C3%A9"
    assert canonical_query([("uploadId", "x+y/z="), ("partNumber", "2")]) == (
        "partNumber=2&uploadId=x%2By%2Fz%3D"
    )
    assert canonical_query([("uploads", "")]) == "uploads="


def test_credentials_repr_hides_the_secrets() -> None:
    creds = AwsCredentials(access_key_id="AKID", secret_access_key="s3cr3t", session_token="tok")
    assert "s3cr3t" not in repr(creds)
    assert "tok" not in repr(creds)
    assert "AKID" in repr(creds)
