"""``--cache-to`` / ``--cache-from`` values as buildx writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import Digest, UsageError
from dockyard.exporter import Compression
from dockyard.registry import Reference
from dockyard.remotecache import (
    CacheMode,
    InlineCacheExport,
    LocalCacheExport,
    LocalCacheImport,
    RegistryCacheExport,
    RegistryCacheImport,
    parse_cache_export,
    parse_cache_import,
)

DIGEST = "sha256:" + "ab" * 32


def test_local_export() -> None:
    assert parse_cache_export("type=local,dest=/c") == LocalCacheExport(dest=Path("/c"))
    spec = parse_cache_export(
        "type=local,dest=/c,mode=max,compression=zstd,compression-level=5,"
        "force-compression=true,tag=v1,ignore-error=true,oci-mediatypes=true,image-manifest=true"
    )
    assert isinstance(spec, LocalCacheExport)
    assert spec.mode is CacheMode.MAX
    assert spec.tag == "v1"
    assert spec.ignore_error
    assert spec.compression is not None
    assert spec.compression.type is Compression.ZSTD
    assert spec.compression.level == 5
    assert spec.compression.force


def test_registry_and_inline_exports() -> None:
    spec = parse_cache_export('"type=registry","ref=127.0.0.1:5000/app:cache",mode=max')
    assert spec == RegistryCacheExport(
        ref=Reference.parse("127.0.0.1:5000/app:cache"), mode=CacheMode.MAX
    )
    spec = parse_cache_export("type=registry,ref=r.example/app:c,registry.insecure=true")
    assert isinstance(spec, RegistryCacheExport)
    assert spec.insecure
    assert parse_cache_export("type=inline") == InlineCacheExport()


def test_a_bare_reference_exports_to_a_registry() -> None:
    # buildx reads both flags alike: --cache-to user/app:cache is type=registry (mode=min)
    expected = RegistryCacheExport(ref=Reference.parse("r.example/app:cache"))
    assert parse_cache_export("r.example/app:cache") == expected
    assert parse_cache_export("type=registry,ref=r.example/app:cache") == expected


def test_imports() -> None:
    assert parse_cache_import("type=local,src=/c") == LocalCacheImport(src=Path("/c"))
    assert parse_cache_import(f"type=local,src=/c,digest={DIGEST}") == LocalCacheImport(
        src=Path("/c"), digest=Digest.parse(DIGEST)
    )
    expected = RegistryCacheImport(ref=Reference.parse("r.example/app:cache"))
    assert parse_cache_import("type=registry,ref=r.example/app:cache") == expected
    assert parse_cache_import("r.example/app:cache") == expected  # a bare reference


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty value"),
        ("dest=/c", "type= is required"),
        ("type=local", "needs dest=DIR"),
        ("type=gha,url=http://c", "unknown cache type 'gha'"),
        ("type=local,dest=/c,mode=most", "mode='most'"),
        ("type=local,dest=/c,colour=blue", "unknown option(s) for type=local: colour"),
        ("type=local,dest=/c,dest=/d", "dest given twice"),
        ("type=local,dest=/c,compression=lz4", "unknown compression 'lz4'"),
        ("type=local,dest=/c,compression=gzip,compression-level=99", "out of range"),
        ("type=local,dest=/c,compression-level=x", "not a number"),
        ("type=local,dest=/c,ignore-error=maybe", "not a boolean"),
        ("type=local,dest=/c,image-manifest=false", "image-manifest=false is not supported"),
        ("type=registry", "needs ref="),
        ("type=registry,ref=Not A Ref", "invalid reference"),
        ("type=inline,mode=max", "mode=min only"),
    ],
)
def test_bad_exports(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cache_export(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=local", "needs src=DIR"),
        ("type=local,src=/c,digest=nope", "invalid digest"),
        ("type=inline", "unknown cache type 'inline'"),
        ("type=local,src=/c,mode=max", "unknown option"),
        ("a,b", "expected key=value"),
    ],
)
def test_bad_imports(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_cache_import(text)


def test_the_engine_reexports_the_values() -> None:
    import dockyard.engine
    import dockyard.remotecache

    for name in ("parse_cache_export", "parse_cache_import", "CacheExport", "CacheImport"):
        assert getattr(dockyard.engine, name) is getattr(dockyard.remotecache, name)


def test_from_type_and_attributes_as_a_daemon_receives_them() -> None:
    from dockyard.remotecache import cache_export_from_attrs, cache_import_from_attrs

    assert cache_export_from_attrs("local", {"dest": "/c", "mode": "max"}) == LocalCacheExport(
        dest=Path("/c"), mode=CacheMode.MAX
    )
    assert cache_import_from_attrs("registry", {"ref": "r.example/a:c"}) == RegistryCacheImport(
        ref=Reference.parse("r.example/a:c")
    )
    with pytest.raises(UsageError, match="unknown option"):
        cache_import_from_attrs("local", {"src": "/c", "x": "1"})
