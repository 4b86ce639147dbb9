"""``--cache-to type=local`` on one engine, ``--cache-from type=local`` on another with an
empty state directory: every step is a cache hit and the image is the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dockyard.core import UsageError
from dockyard.engine import parse_cache_export, parse_cache_import
from dockyard.remotecache import CACHE_CONFIG_MEDIA_TYPE, CacheConfig
from dockyard.testing.registry import RegistryProcess

from .conftest import build, write_context


def _manifest(cache: Path) -> dict[str, object]:
    index = json.loads((cache / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    digest = entry["digest"].removeprefix("sha256:")
    manifest: dict[str, object] = json.loads((cache / "blobs" / "sha256" / digest).read_text())
    return manifest


def _config(cache: Path) -> CacheConfig:
    manifest = _manifest(cache)
    config = manifest["config"]
    assert isinstance(config, dict)
    assert config["mediaType"] == CACHE_CONFIG_MEDIA_TYPE
    digest = str(config["digest"]).removeprefix("sha256:")
    return CacheConfig.parse((cache / "blobs" / "sha256" / digest).read_bytes())


async def test_max_cache_rebuilds_everything_on_an_empty_state_dir(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    cache = tmp_path / "cache"
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={cache},mode=max"),),
    )
    assert list(first.runs().values()) == [True, True]
    config = _config(cache)
    layered = [r for r in config.records if r.results]
    assert len(layered) >= 5  # base, both copies, both runs: every step has its result
    manifest = _manifest(cache)
    layers = manifest["layers"]
    assert isinstance(layers, list)
    for layer in layers:
        assert (cache / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")).is_file()

    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={cache}"),),
    )
    assert second.runs() == {name: False for name in first.runs()}, second.statuses()
    assert second.image == first.image
    assert not second.warnings()

    # one changed file: only what reads it runs again
    (context / "b.txt").write_text("b2")
    third = await build(
        tmp_path / "c",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={cache}"),),
    )
    assert [ran for _name, ran in sorted(third.runs().items())] == [False, True]
    assert third.image != first.image


async def test_min_cache_holds_the_final_result_only(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    cache = tmp_path / "cache"
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={cache}"),),
    )
    config = _config(cache)
    assert len([r for r in config.records if r.results]) == 1
    assert len(config.records) >= 5  # every key, linking to the final record
    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={cache}"),),
    )
    assert not any(second.runs().values()), second.statuses()
    # only the final step was needed: the steps before it neither ran nor loaded
    assert [s.cached for n, s in second.statuses().items() if " RUN " in n] == [False, True]
    assert second.image == first.image


async def test_exporting_again_keeps_a_valid_cache_and_the_same_config(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    cache = tmp_path / "cache"
    spec = (parse_cache_export(f"type=local,dest={cache},mode=max"),)
    await build(tmp_path / "a", registry, context, cache_to=spec)
    before = _manifest(cache)
    await build(tmp_path / "a", registry, context, cache_to=spec)  # a no-op rebuild
    assert _manifest(cache) == before


async def test_an_export_replaces_its_tag_and_keeps_the_other_index_entries(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    """As BuildKit's client updates index.json: the entry of the exported tag is
    replaced, entries of other tags (another cache, an image) stay."""
    context = write_context(tmp_path / "ctx", base)
    cache = tmp_path / "cache"
    await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={cache},mode=max,tag=other"),),
    )
    other = json.loads((cache / "index.json").read_text())["manifests"]
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in other] == ["other"]
    spec = (parse_cache_export(f"type=local,dest={cache},mode=min"),)
    await build(tmp_path / "a", registry, context, cache_to=spec)
    await build(tmp_path / "a", registry, context, cache_to=spec)  # same tag again
    entries = json.loads((cache / "index.json").read_text())["manifests"]
    names = [e["annotations"]["org.opencontainers.image.ref.name"] for e in entries]
    assert names == ["other", "latest"]
    assert entries[0] == other[0]
    assert json.loads((cache / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    latest = cache / "blobs" / "sha256" / entries[1]["digest"].removeprefix("sha256:")
    config = json.loads(latest.read_text())["config"]
    assert config["mediaType"] == CACHE_CONFIG_MEDIA_TYPE
    assert (cache / "blobs" / "sha256" / config["digest"].removeprefix("sha256:")).is_file()


async def test_missing_or_corrupt_blobs_warn_and_build_normally(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    cache = tmp_path / "cache"
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={cache}"),),
    )
    config = _config(cache)
    (record,) = [r for r in config.records if r.results]
    top = config.layers[record.results[0].layer]
    blob = cache / "blobs" / "sha256" / top.blob.hex

    broken = tmp_path / "broken"
    shutil.copytree(cache, broken)
    (broken / "blobs" / "sha256" / top.blob.hex).write_bytes(b"not the layer")
    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={broken}"),),
    )
    assert all(second.runs().values()), second.statuses()  # built normally
    assert any("could not be used" in w for w in second.warnings()), second.warnings()

    blob.unlink()
    third = await build(
        tmp_path / "c",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={cache}"),),
    )
    assert all(third.runs().values())
    assert any("could not be used" in w for w in third.warnings()), third.warnings()

    for bad in (tmp_path / "nowhere", context / "a.txt"):
        fourth = await build(
            tmp_path / f"d-{bad.name}",
            registry,
            context,
            cache_from=(parse_cache_import(f"type=local,src={bad}"),),
        )
        assert all(fourth.runs().values())
        assert any("importing cache" in w for w in fourth.warnings()), fourth.warnings()
    assert first.image


async def test_imported_layers_keep_their_times_so_the_image_is_the_same(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    """Without SOURCE_DATE_EPOCH an image's history takes its layers' times: imported
    layers keep the times they were built at (BuildKit's createdAt)."""
    context = write_context(tmp_path / "ctx", base)
    cache = tmp_path / "cache"
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={cache},mode=max"),),
        epoch=False,
    )
    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={cache}"),),
        epoch=False,
    )
    assert not any(second.runs().values())
    assert second.image == first.image


MULTISTAGE = """\
FROM {base} AS builder
COPY a.txt /a.txt
RUN cat /a.txt > /built && echo scratch > /big
FROM {base}
COPY --from=builder /built /built
RUN cat /built > /final
"""


async def test_a_no_op_build_pulls_the_final_layers_only(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    (context / "Dockerfile").write_text(MULTISTAGE.format(base=base))
    cache = tmp_path / "cache"
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={cache},mode=max"),),
    )
    assert first.image_layers == 1  # the base image, pulled
    second = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(f"type=local,src={cache}"),),
    )
    assert not any(second.runs().values())
    assert second.image == first.image
    # base + the final stage's COPY and RUN; the builder stage's layers stay in the cache
    assert second.image_layers == 3


async def test_an_export_error_fails_the_build_unless_ignore_error(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    a_file = context / "a.txt"
    with pytest.raises(UsageError, match="not a directory"):
        await build(
            tmp_path / "a",
            registry,
            context,
            cache_to=(parse_cache_export(f"type=local,dest={a_file}"),),
        )
    built = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(f"type=local,dest={a_file},ignore-error=true"),),
    )
    assert any("exporting cache failed" in w for w in built.warnings()), built.warnings()
    assert a_file.read_text() == "a1"
