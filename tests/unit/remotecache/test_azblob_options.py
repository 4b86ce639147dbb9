"""``type=azblob`` cache values: BuildKit's attributes, environment defaults and blob
layout (Go's ``filepath.Join``), the account name, one import per name, and the key kept
out of every message and ``repr``."""

from __future__ import annotations

import pytest

from dockyard.client import CacheSpec
from dockyard.core import UsageError
from dockyard.remotecache import (
    AzblobCacheExport,
    AzblobCacheImport,
    AzblobLocation,
    CacheMode,
    LocalCacheImport,
    cache_export_from_attrs,
    cache_import_from_attrs,
    each_cache_import,
    parse_cache_export,
    parse_cache_import,
)

KEY = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cy0wMTIzNDU2Nzg5"
URL = "https://myacct.blob.core.windows.net"
BASE = f"type=azblob,account_url={URL},secret_access_key={KEY}"


def test_defaults_as_buildkit() -> None:
    value = parse_cache_export(BASE)
    assert value == AzblobCacheExport(
        location=AzblobLocation(account_url=URL, account="myacct", key=KEY)
    )
    location = value.location
    assert location.container == "buildkit-cache"
    assert location.names == ("buildkit",)
    assert location.blob_key("sha256:ab") == "blobs/sha256:ab"
    assert location.manifest_key("buildkit") == "manifests/buildkit"
    assert value.mode is CacheMode.MIN
    assert not value.ignore_error
    assert location.describe() == f"{URL}/buildkit-cache/manifests/buildkit"


def test_every_attribute() -> None:
    value = parse_cache_export(
        f"{BASE},account_name=other,container=team-cache,name=main;pr-1,prefix=ci/,"
        "blobs_prefix=b,manifests_prefix=m/,mode=max,ignore-error=true,compression=zstd"
    )
    assert isinstance(value, AzblobCacheExport)
    assert value.location == AzblobLocation(
        account_url=URL,
        account="other",
        key=KEY,
        container="team-cache",
        names=("main", "pr-1"),
        prefix="ci/",
        blobs_prefix="b",
        manifests_prefix="m/",
    )
    assert value.mode is CacheMode.MAX
    assert value.ignore_error
    assert value.compression is not None


@pytest.mark.parametrize(
    ("prefix", "blobs", "manifests", "blob", "manifest"),
    [
        ("", "blobs", "manifests", "blobs/sha256:x", "manifests/n"),
        ("ci", "blobs", "manifests", "ci/blobs/sha256:x", "ci/manifests/n"),
        ("ci/", "blobs/", "manifests/", "ci/blobs/sha256:x", "ci/manifests/n"),
        ("a//b/", "", "m", "a/b/sha256:x", "a/b/m/n"),
    ],
)
def test_blob_names_are_joined_as_go_does(
    prefix: str, blobs: str, manifests: str, blob: str, manifest: str
) -> None:
    location = AzblobLocation(
        account_url=URL,
        account="a",
        key=KEY,
        prefix=prefix,
        blobs_prefix=blobs,
        manifests_prefix=manifests,
    )
    assert location.blob_key("sha256:x") == blob
    assert location.manifest_key("n") == manifest


def test_the_account_name() -> None:
    def account(url: str, extra: str = "") -> str:
        value = parse_cache_import(f"type=azblob,account_url={url},secret_access_key={KEY}{extra}")
        assert isinstance(value, AzblobCacheImport)
        return value.location.account

    assert account("https://acct1.blob.core.windows.net/") == "acct1"
    assert account("https://acct1.blob.core.windows.net", ",account_name=x2") == "x2"
    # an emulator's address: the account is the path's first segment (the SDKs' rule)
    assert account("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert account("http://localhost:10000/dev2/") == "dev2"
    assert account("http://[::1]:10000/dev3") == "dev3"


def test_environment_defaults_as_buildkit_reads_them() -> None:
    env = {
        "BUILDKIT_AZURE_STORAGE_ACCOUNT_URL": URL,
        "BUILDKIT_AZURE_STORAGE_ACCOUNT_NAME": "envacct",
        "BUILDKIT_AZURE_STORAGE_CONTAINER": "env-cache",
        "BUILDKIT_AZURE_STORAGE_PREFIX": "envp/",
    }
    value = cache_export_from_attrs("azblob", {"secret_access_key": KEY}, env=env)
    assert isinstance(value, AzblobCacheExport)
    location = value.location
    assert (location.account_url, location.account, location.container, location.prefix) == (
        URL,
        "envacct",
        "env-cache",
        "envp/",
    )
    # an attribute wins, even empty
    value = cache_export_from_attrs(
        "azblob", {"secret_access_key": KEY, "prefix": "", "container": "mine"}, env=env
    )
    assert isinstance(value, AzblobCacheExport)
    assert (value.location.prefix, value.location.container) == ("", "mine")


def test_import_takes_the_export_options_and_reads_each_name() -> None:
    value = parse_cache_import(f"{BASE},mode=max,ignore-error=true,name=a;b")
    assert isinstance(value, AzblobCacheImport)
    local = LocalCacheImport(src=__import__("pathlib").Path("/x"))
    split = each_cache_import([value, local])
    assert [s.location.names for s in split if isinstance(s, AzblobCacheImport)] == [
        ("a",),
        ("b",),
    ]
    assert split[-1] is local
    assert each_cache_import([parse_cache_import(BASE)]) == (parse_cache_import(BASE),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"type=azblob,secret_access_key={KEY}", "needs account_url=URL"),
        (f"type=azblob,account_url={URL}", "access key in secret_access_key (BuildKit's fallback"),
        (f"type=azblob,account_url=ftp://h/,secret_access_key={KEY}", "not an http(s) URL"),
        (f"type=azblob,account_url=https://u:p@h/,secret_access_key={KEY}", "user name"),
        (f"type=azblob,account_url={URL}/?sv=1&sig=x,secret_access_key={KEY}", "SAS token"),
        (f"{BASE},container=Bad_Name", "not a container name"),
        (f"{BASE},container=a--b", "not a container name"),
        (f"{BASE},name=a;;b", "empty name"),
        (f"{BASE},name=../x", "'..'"),
        (f"{BASE},prefix=/abs", "starts with '/'"),
        (f"{BASE},account_name=bad_name", "not a storage account name"),
        (f"{BASE},colour=blue", "unknown option(s) for type=azblob: colour"),
        (f"{BASE},mode=most", "mode='most'"),
        ("type=azure", "unknown cache type 'azure'"),
    ],
)
def test_bad_values_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_cache_export(text)
    assert str(caught.value).startswith("--cache-to")
    assert message in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        f"{BASE},colour=blue",
        f"{BASE},x",
        f"type=azblob,account_url={URL},secret_access_key=ab,{KEY}",
        f"{BASE},container=NO",
        f"{BASE},account_url={URL}",
    ],
)
def test_the_key_is_never_in_error_messages(text: str) -> None:
    for parse in (parse_cache_export, parse_cache_import):
        with pytest.raises(UsageError) as caught:
            parse(text)
        assert KEY not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        cache_import_from_attrs(
            "azblob", {"account_url": URL, "secret_access_key": KEY, "colour": "blue"}
        )
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "acct.blob.core.windows.net/?sv=2024&sig=SAS-SIGNATURE",  # no scheme
        "ftp://acct.blob.core.windows.net/?sig=SAS-SIGNATURE",
        "https://?sig=SAS-SIGNATURE",
    ],
)
def test_a_sas_token_in_a_bad_url_is_never_quoted(url: str) -> None:
    # the scheme was checked first and its message quoted the whole URL, SAS signature
    # included
    with pytest.raises(UsageError) as caught:
        parse_cache_export(f"type=azblob,account_url={url},secret_access_key={KEY}")
    assert "SAS-SIGNATURE" not in str(caught.value)


def test_reprs_hide_the_key() -> None:
    value = parse_cache_export(BASE)
    assert KEY not in repr(value)
    spec = CacheSpec.parse(BASE, export=True)
    assert spec.attrs["secret_access_key"] == KEY  # sent to a daemon as buildx sends it
    assert KEY not in repr(spec)
    assert KEY not in spec.redacted()
