"""``type=s3`` cache values: BuildKit's attributes and defaults, the key layout, where
credentials come from, and secrets kept out of every message and ``repr``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.client import CacheSpec
from dockyard.core import UsageError
from dockyard.remotecache import (
    AwsCredentials,
    CacheMode,
    S3CacheExport,
    S3CacheImport,
    S3Location,
    cache_export_from_attrs,
    cache_import_from_attrs,
    parse_cache_export,
    parse_cache_import,
    redact,
    with_client_credentials,
)
from dockyard.remotecache._options import parse_duration

SECRET = "wJalrXUtnFEMI-K7MDENG-SECRET"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN"


def test_defaults_as_buildkit() -> None:
    value = parse_cache_export("type=s3,bucket=b,region=eu-west-1")
    assert value == S3CacheExport(location=S3Location(bucket="b", region="eu-west-1"))
    location = value.location
    assert location.names == ("buildkit",)
    assert (location.blobs_prefix, location.manifests_prefix, location.prefix) == (
        "blobs/",
        "manifests/",
        "",
    )
    assert value.upload_parallelism == 4
    assert value.touch_refresh == 24 * 3600
    assert value.mode is CacheMode.MIN
    assert location.credentials is None  # the environment's, when used


def test_every_attribute() -> None:
    value = parse_cache_export(
        "type=s3,bucket=bk,region=us-east-2,name=main;pr-1,prefix=team/,blobs_prefix=b/,"
        "manifests_prefix=m/,endpoint_url=http://127.0.0.1:9000,use_path_style=true,"
        f"access_key_id=AKID,secret_access_key={SECRET},session_token={TOKEN},mode=max,"
        "ignore-error=true,upload_parallelism=8,touch_refresh=1h30m,retry_max_attempts=5,"
        "retry_mode=adaptive,disable_accept_encoding=true"
    )
    assert isinstance(value, S3CacheExport)
    assert value.location == S3Location(
        bucket="bk",
        region="us-east-2",
        names=("main", "pr-1"),
        prefix="team/",
        blobs_prefix="b/",
        manifests_prefix="m/",
        endpoint_url="http://127.0.0.1:9000",
        use_path_style=True,
        credentials=AwsCredentials(
            access_key_id="AKID", secret_access_key=SECRET, session_token=TOKEN
        ),
        retry_max_attempts=5,
        disable_accept_encoding=True,
    )
    assert value.mode is CacheMode.MAX
    assert value.ignore_error
    assert value.upload_parallelism == 8
    assert value.touch_refresh == 5400
    assert SECRET not in repr(value)
    assert TOKEN not in repr(value)


def test_key_layout() -> None:
    location = S3Location(bucket="b", region="r", prefix="ci/", names=("one", "two"))
    digest = "sha256:" + "ab" * 32
    assert location.blob_key(digest) == f"ci/blobs/sha256:{'ab' * 32}"
    assert location.manifest_key("two") == "ci/manifests/two"
    assert location.describe() == "s3://b/ci/manifests/one"
    bare = S3Location(bucket="b", region="r", blobs_prefix="", manifests_prefix="")
    assert bare.blob_key(digest) == digest
    assert bare.manifest_key("buildkit") == "buildkit"


def test_bucket_and_region_from_the_environment() -> None:
    env = {"AWS_BUCKET": "envb", "AWS_REGION": "ap-south-1"}
    value = cache_import_from_attrs("s3", {}, env=env)
    assert value == S3CacheImport(location=S3Location(bucket="envb", region="ap-south-1"))
    with pytest.raises(UsageError, match=r"--cache-from: type=s3 needs region=REGION"):
        cache_import_from_attrs("s3", {"bucket": "b"}, env={})
    with pytest.raises(UsageError, match=r"--cache-to: type=s3 needs bucket=NAME"):
        cache_export_from_attrs("s3", {"region": "r"}, env={})


def test_import_takes_the_export_options_too() -> None:
    # the same value often serves --cache-from and --cache-to (BuildKit ignores the rest)
    value = parse_cache_import("type=s3,bucket=b,region=r,name=x,mode=max,ignore-error=true")
    assert value == S3CacheImport(location=S3Location(bucket="b", region="r", names=("x",)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=s3,bucket=b,region=r,upload_parallelism=0", "upload_parallelism='0' must be"),
        ("type=s3,bucket=b,region=r,upload_parallelism=x", "upload_parallelism='x' must be"),
        ("type=s3,bucket=b,region=r,touch_refresh=soon", "touch_refresh='soon' is not"),
        ("type=s3,bucket=b,region=r,use_path_style=maybe", "use_path_style='maybe'"),
        ("type=s3,bucket=b,region=r,retry_mode=eager", "retry_mode='eager'"),
        ("type=s3,bucket=b,region=r,name=a;;b", "empty name"),
        ("type=s3,bucket=b,region=r,colour=blue", "unknown option(s) for type=s3: colour"),
        ("type=s3,bucket=b,region=r,access_key_id=AK", "access_key_id without"),
        ("type=s3,bucket=b,region=r,mode=most", "mode='most'"),
    ],
)
def test_bad_values_name_the_flag(text: str, message: str) -> None:
    pattern = message.replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(UsageError, match=rf"^--cache-to.*{pattern}"):
        parse_cache_export(text)


@pytest.mark.parametrize(
    "text",
    [
        f"type=s3,bucket=b,region=r,secret_access_key={SECRET}",
        f"type=s3,bucket=b,region=r,access_key_id=AK,secret_access_key={SECRET},colour=blue",
        f"type=s3,bucket=b,region=r,access_key_id=AK,secret_access_key={SECRET},x",
        f"type=s3,bucket=b,region=r,access_key_id=AK,secret_access_key=ab,{SECRET}",
        f"type=s3,bucket=b,region=r,access_key_id=AK,secret_access_key={SECRET},session_token={TOKEN},upload_parallelism=-1",
        f"type=s3,bucket=b,region=r,session_token={TOKEN},access_key_id=AK",
        f"type=s3,bucket=b,region=r,access_key_id=AK,secret_access_key={SECRET},bucket=c",
    ],
)
def test_secrets_never_in_error_messages(text: str) -> None:
    for parse in (parse_cache_export, parse_cache_import):
        with pytest.raises(UsageError) as caught:
            parse(text)
        assert SECRET not in str(caught.value)
        assert TOKEN not in str(caught.value)
        assert "-K7MDENG-" not in str(caught.value)
    attrs = dict(f.split("=", 1) for f in text.split(",")[1:] if "=" in f)
    attrs["colour"] = "blue"
    with pytest.raises(UsageError) as caught:
        cache_export_from_attrs("s3", attrs)
    assert SECRET not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_client_spec_hides_secrets() -> None:
    text = f"type=s3,bucket=b,region=r,access_key_id=AK,secret_access_key={SECRET}"
    spec = CacheSpec.parse(text, export=True)
    assert spec.attrs["secret_access_key"] == SECRET  # sent to a daemon as BuildKit's are
    assert SECRET not in repr(spec)
    assert SECRET not in spec.redacted()
    assert "AK" in spec.redacted()
    with pytest.raises(UsageError) as caught:
        CacheSpec.parse(f"{text},stray", export=True)
    assert SECRET not in str(caught.value)


def test_redact() -> None:
    assert redact(f"x secret_access_key={SECRET},y=1") == "x secret_access_key=***,y=1"
    # a comma inside a value: the secret runs to the next key=value field
    assert redact(f"secret_access_key={SECRET},more,y=1") == "secret_access_key=***,y=1"
    assert redact(f"failed: '{SECRET}'", secrets=[SECRET]) == "failed: '***'"
    assert redact("nothing here") == "nothing here"


def test_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("500ms") == 0.5
    assert parse_duration("0") == 0
    for bad in ("", "1", "h", "1d", "1h x"):
        with pytest.raises(ValueError):
            parse_duration(bad)


async def test_a_client_adds_its_credentials_as_buildx_does(tmp_path: Path) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "ENVAK",
        "AWS_SECRET_ACCESS_KEY": "envsecret",
        "AWS_SESSION_TOKEN": "envtok",
        "HOME": str(tmp_path),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    attrs = {"bucket": "b", "region": "r"}
    assert await with_client_credentials(attrs, env) == {
        **attrs,
        "access_key_id": "ENVAK",
        "secret_access_key": "envsecret",
        "session_token": "envtok",
    }
    own = {**attrs, "access_key_id": "MINE", "secret_access_key": "mine"}
    assert await with_client_credentials(own, env) == own  # both given: nothing added
    half = {**attrs, "access_key_id": "MINE"}
    assert await with_client_credentials(half, env) == {
        **half,
        "secret_access_key": "envsecret",
        "session_token": "envtok",
    }
    nothing = {"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    assert await with_client_credentials(attrs, nothing) == attrs
