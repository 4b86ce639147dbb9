"""Caches shared through a real ``docker-registry``: ``type=registry`` (a cache manifest
pushed to a ref) and ``type=inline`` (the cache in a pushed image's config)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from dockyard.engine import parse_cache_export, parse_cache_import
from dockyard.exporter import INLINE_CACHE_KEY
from dockyard.oci import ImageManifest, MediaType
from dockyard.registry import RegistryClient
from dockyard.remotecache import CACHE_CONFIG_MEDIA_TYPE, CacheConfig, CacheLayer
from dockyard.testing.registry import RegistryProcess

from .conftest import build, write_context


async def test_registry_cache_on_an_empty_state_dir(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    ref = registry.ref("cache/app:buildcache")
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=registry,ref={ref},mode=max"),),
    )
    async with RegistryClient(config=registry.registry_config()) as client:
        fetched = await client.get_manifest(ref)
        manifest = fetched.manifest
        assert isinstance(manifest, ImageManifest)
        assert manifest.media_type == MediaType.OCI_MANIFEST
        assert manifest.config.media_type == CACHE_CONFIG_MEDIA_TYPE
        config = CacheConfig.parse(await client.get_blob(ref, manifest.config, limit=1 << 24))
        for layer in manifest.layers:
            assert await client.blob_exists(ref, layer)
    assert len([r for r in config.records if r.results]) >= 5

    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=registry,ref={ref}"),),
    )
    assert list(second.runs().values()) == [False, False], second.statuses()
    assert second.image == first.image
    assert not second.warnings()

    (context / "a.txt").write_text("a2")  # the first RUN reads it: both rerun
    third = await build(
        tmp_path / "c",
        registry,
        context,
        cache_from=(parse_cache_import(ref),),  # a bare reference is type=registry
    )
    assert list(third.runs().values()) == [True, True]

    missing = await build(
        tmp_path / "d",
        registry,
        context,
        cache_from=(parse_cache_import(registry.ref("cache/none:nothing")),),
    )
    assert list(missing.runs().values()) == [True, True]
    assert any("importing cache" in w for w in missing.warnings()), missing.warnings()


async def test_inline_cache_of_a_pushed_image(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    image = registry.ref("app/inline:1")
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export("type=inline"),),
        outputs=(f"type=image,name={image},push=true",),
    )
    async with RegistryClient(config=registry.registry_config()) as client:
        resolved = await client.resolve(image)
        obj = json.loads(resolved.config_bytes)
    # BuildKit's inline form: a list of records over the image's own layers
    inline = base64.b64decode(obj[INLINE_CACHE_KEY])
    assert isinstance(json.loads(inline), list)
    image_layers = [CacheLayer(blob=d.digest) for d in resolved.image_manifest.layers]
    config = CacheConfig.parse_inline(inline, image_layers)
    assert [r for r in config.records if r.results]

    again = registry.ref("app/inline:2")
    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(image),),
        outputs=(f"type=image,name={again},push=true",),
    )
    assert not any(second.runs().values()), second.statuses()
    assert not second.warnings()
    assert first.image != second.image  # the first one carries the inline cache
    async with RegistryClient(config=registry.registry_config()) as client:
        rebuilt = await client.resolve(again)
    assert rebuilt.image_manifest.layers == resolved.image_manifest.layers
    del obj[INLINE_CACHE_KEY]
    assert json.loads(rebuilt.config_bytes) == obj


async def _config(registry: RegistryProcess, ref: str) -> CacheConfig:
    async with RegistryClient(config=registry.registry_config()) as client:
        manifest = (await client.get_manifest(ref)).manifest
        assert isinstance(manifest, ImageManifest)
        return CacheConfig.parse(await client.get_blob(ref, manifest.config, limit=1 << 24))


async def test_importing_and_exporting_one_ref_keeps_every_result(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    """CI's pattern: ``--cache-from X --cache-to X,mode=max`` on fresh machines. A no-op
    build needs only the final result, yet what it exports again holds every step's."""
    context = write_context(tmp_path / "ctx", base)
    ref = registry.ref("cache/ci:main")
    cache_to = (parse_cache_export(f"type=registry,ref={ref},mode=max"),)
    cache_from = (parse_cache_import(ref),)
    await build(tmp_path / "a", registry, context, cache_to=cache_to)
    before = await _config(registry, ref)
    second = await build(
        tmp_path / "b", registry, context, cache_from=cache_from, cache_to=cache_to
    )
    assert not any(second.runs().values())
    assert second.image_layers == 5  # the final chain only was unpacked
    after = await _config(registry, ref)
    assert len([r for r in after.records if r.results]) == len(
        [r for r in before.records if r.results]
    )
    (context / "b.txt").write_text("b2")  # read by the second RUN only
    third = await build(tmp_path / "c", registry, context, cache_from=cache_from)
    assert [ran for _name, ran in sorted(third.runs().items())] == [False, True]
