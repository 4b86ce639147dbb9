"""``type=azblob`` caches against Azurite (Microsoft's Azure Storage emulator) on
loopback, which checks Shared Key signatures: a build exports its cache in BuildKit's
layout and a fresh state directory imports it (every step cached), under several names;
a missing name and a dead endpoint with ``ignore-error=true`` are warnings; a wrong key is
refused without being shown; and once through ``dockyardd`` with the key from the client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.client import Client
from dockyard.core import AuthError, Digest, DockyardError
from dockyard.engine import parse_cache_export, parse_cache_import
from dockyard.remotecache import CacheConfig
from dockyard.testing.registry import RegistryProcess
from tests.integration.cli.conftest import _no_daemon_from_the_environment
from tests.integration.daemon.conftest import (
    DaemonProcess,
    daemon,
    daemon_config,
    running,
    socket_dir,
)

from .azurite import ACCOUNT, Azurite, start_azurite
from .conftest import build, write_context

__all__ = ["_no_daemon_from_the_environment", "daemon", "daemon_config", "running", "socket_dir"]

WRONG_KEY = "d3Jvbmcta2V5LW9mLXRoZS1yaWdodC1sZW5ndGgtZm9yLWF6dXJl"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with start_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


def dead_endpoint() -> str:
    """An address on loopback where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def objects(azurite: Azurite, container: str) -> dict[str, bytes]:
    """Every blob of ``container`` (List Blobs), with its content."""
    async with azurite.client(container) as client:
        return {
            info.name: await client.get_bytes(info.name, limit=64 << 20) or b""
            for info in await client.list_blobs()
        }


async def test_export_then_import_on_an_empty_state_dir(
    tmp_path: Path, registry: RegistryProcess, base: str, azurite: Azurite
) -> None:
    container = "cache-roundtrip"  # missing: the export creates it, as BuildKit's does
    context = write_context(tmp_path / "ctx", base)
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(
            parse_cache_export(
                azurite.attrs(
                    container, f",account_name={ACCOUNT},mode=max,name=main;second,prefix=ci/"
                )
            ),
        ),
    )
    assert not first.warnings()
    blobs = await objects(azurite, container)
    # BuildKit's layout (Go's filepath.Join of prefix, manifests/blobs and the name):
    # the cache config JSON itself, each blob holding exactly its digest's bytes
    assert {k for k in blobs if k.startswith("ci/manifests/")} == {
        "ci/manifests/main",
        "ci/manifests/second",
    }
    assert blobs["ci/manifests/main"] == blobs["ci/manifests/second"]
    document = json.loads(blobs["ci/manifests/main"])
    assert "layers" in document
    assert "records" in document
    config = CacheConfig.parse(blobs["ci/manifests/main"])
    assert len([r for r in config.records if r.results]) >= 5  # mode=max: every step
    for layer in config.layers:
        assert layer.diff_id is not None
        assert layer.media_type
        blob = blobs[f"ci/blobs/{layer.blob}"]
        assert len(blob) == layer.size
        assert Digest.from_bytes(blob) == layer.blob
    assert set(blobs) == {f"ci/blobs/{layer.blob}" for layer in config.layers} | {
        "ci/manifests/main",
        "ci/manifests/second",
    }  # nothing else

    for name in ("main", "second", "nothing;second"):
        again = await build(
            tmp_path / f"b-{name.replace(';', '-')}",
            registry,
            context,
            cache_from=(parse_cache_import(azurite.attrs(container, f",name={name},prefix=ci")),),
        )
        assert list(again.runs().values()) == [False, False], again.statuses()
        assert all(s.cached for s in again.statuses().values() if " RUN " in f" {s.name} ")
        assert again.image == first.image
        if name == "nothing;second":  # each name read: the missing one a warning
            assert any("ci/manifests/nothing" in w for w in again.warnings()), again.warnings()
        else:
            assert not again.warnings()

    (context / "b.txt").write_text("b2")  # the second RUN reads it: it runs again
    changed = await build(
        tmp_path / "c",
        registry,
        context,
        cache_from=(parse_cache_import(azurite.attrs(container, ",name=main,prefix=ci/")),),
    )
    assert list(changed.runs().values()) == [False, True]

    missing = await build(
        tmp_path / "d",
        registry,
        context,
        cache_from=(parse_cache_import(azurite.attrs(container, ",name=nothing,prefix=ci/")),),
    )
    assert list(missing.runs().values()) == [True, True]
    assert any("importing cache" in w for w in missing.warnings()), missing.warnings()


async def test_blobs_present_are_not_uploaded_again(
    tmp_path: Path, registry: RegistryProcess, base: str, azurite: Azurite
) -> None:
    container = "cache-again"
    context = write_context(tmp_path / "ctx", base)
    spec = azurite.attrs(container, ",mode=max")
    await build(tmp_path / "a", registry, context, cache_to=(parse_cache_export(spec),))
    async with azurite.client(container) as client:
        before = {b.name: b for b in await client.list_blobs()}
    assert "manifests/buildkit" in before  # the default name, under blobs/ and manifests/
    assert any(name.startswith("blobs/sha256:") for name in before)
    await asyncio.sleep(1.1)  # Last-Modified has whole seconds
    await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(spec),),
        cache_to=(parse_cache_export(spec),),
    )
    async with azurite.client(container) as client:
        after = {b.name: b for b in await client.list_blobs()}
    assert set(after) == set(before)
    for name, info in after.items():
        if name.startswith("blobs/"):
            assert info.last_modified == before[name].last_modified, name  # not rewritten
    assert after["manifests/buildkit"].last_modified > before["manifests/buildkit"].last_modified


async def test_a_dead_endpoint_with_ignore_error_is_a_warning(
    tmp_path: Path, registry: RegistryProcess, base: str, azurite: Azurite
) -> None:
    context = write_context(tmp_path / "ctx", base)
    attrs = f"type=azblob,account_url={dead_endpoint()}/{ACCOUNT},secret_access_key={azurite.key}"
    built = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(attrs + ",ignore-error=true"),),
        cache_from=(parse_cache_import(attrs),),
    )
    warnings = built.warnings()
    assert any("exporting cache failed" in w and "cannot reach" in w for w in warnings), warnings
    assert any("importing cache" in w for w in warnings), warnings
    assert not any(azurite.key in w for w in warnings)

    with pytest.raises(DockyardError, match="cannot reach") as caught:
        await build(tmp_path / "b", registry, context, cache_to=(parse_cache_export(attrs),))
    assert azurite.key not in str(caught.value)


async def test_a_wrong_key_is_refused_and_never_shown(
    tmp_path: Path, registry: RegistryProcess, base: str, azurite: Azurite
) -> None:
    async with azurite.client("cache-auth", key=WRONG_KEY) as client:
        with pytest.raises(AuthError) as refused:
            await client.ensure_container()
    assert WRONG_KEY not in str(refused.value)
    context = write_context(tmp_path / "ctx", base)
    attrs = azurite.attrs("cache-auth").replace(azurite.key, WRONG_KEY)
    with pytest.raises(AuthError) as caught:
        await build(tmp_path / "a", registry, context, cache_to=(parse_cache_export(attrs),))
    text = str(caught.value)
    assert "access denied" in text
    assert "check the account key" in text
    assert "/cache-auth" in text
    assert WRONG_KEY not in text
    imported = await build(
        tmp_path / "b", registry, context, cache_from=(parse_cache_import(attrs),)
    )
    assert any("access denied" in w for w in imported.warnings()), imported.warnings()
    assert not any(WRONG_KEY in w for w in imported.warnings())


async def test_through_the_daemon(
    tmp_path: Path,
    running: DaemonProcess,
    azurite: Azurite,
    capsys: pytest.CaptureFixture[str],
) -> None:
    container = "cache-daemon"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN head -c 16 /dev/urandom | od -x > /random.txt\n"
    )
    # the key is an attribute of the client's flag and travels as one (buildx adds no
    # Azure credentials of its own): the daemon, started before, has none
    attrs = azurite.attrs(container, ",name=d")
    addr = f"unix://{running.socket}"

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, list(args))

    code = await cli(
        "--addr",
        addr,
        "build",
        "--progress",
        "plain",
        "--cache-to",
        attrs + ",mode=max",
        "-o",
        str(tmp_path / "first"),
        str(ctx),
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "manifests/d" in await objects(azurite, container)
    assert azurite.key not in err

    async with Client.connect(addr) as client:
        await client.prune(all=True)
    code = await cli(
        "--addr",
        addr,
        "build",
        "--progress",
        "plain",
        "--cache-from",
        attrs,
        "-o",
        str(tmp_path / "again"),
        str(ctx),
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "CACHED" in err
    assert (tmp_path / "again/random.txt").read_text() == (
        tmp_path / "first/random.txt"
    ).read_text()
    assert azurite.key not in err
    assert azurite.key not in running.log_text()


async def test_large_blobs_go_in_blocks_that_azurite_accepts(
    tmp_path: Path, azurite: Azurite
) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: three blocks of 512 KiB
    path = tmp_path / "layer"
    path.write_bytes(data)
    async with azurite.client("cache-blocks") as client:
        await client.ensure_container()
        await client.put_file(
            path, "blobs/sha256:big", size=len(data), block_size=512 << 10, single_put_limit=1
        )
        assert await client.get_bytes("blobs/sha256:big", limit=len(data)) == data
        assert await client.has_blob("blobs/sha256:big", len(data))
        assert [(b.name, b.size) for b in await client.list_blobs("blobs/")] == [
            ("blobs/sha256:big", len(data))
        ]
        # written again (another upload of the same name): the new blocks replace the old
        path.write_bytes(data[::-1])
        await client.put_file(
            path, "blobs/sha256:big", size=len(data), block_size=400 << 10, single_put_limit=1
        )
        assert await client.get_bytes("blobs/sha256:big", limit=len(data)) == data[::-1]


async def test_a_cache_in_buildkits_own_serialization_is_read(
    tmp_path: Path, registry: RegistryProcess, base: str, azurite: Azurite
) -> None:
    from .test_s3_cache import go_form

    container = "cache-goform"
    context = write_context(tmp_path / "ctx", base)
    spec = azurite.attrs(container, ",mode=max")
    await build(tmp_path / "a", registry, context, cache_to=(parse_cache_export(spec),))
    async with azurite.client(container) as client:
        written = await client.get_bytes("manifests/buildkit", limit=1 << 24)
        assert written is not None
        await client.put_bytes("manifests/go", go_form(written))
    again = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(azurite.attrs(container, ",name=go")),),
    )
    assert not again.warnings()
    assert list(again.runs().values()) == [False, False], again.statuses()
