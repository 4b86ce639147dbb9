"""``type=s3`` caches against a real S3-compatible server on loopback (moto's): a build
exports its cache in BuildKit's layout and a fresh state directory imports it (every
step cached), under several names; a dead endpoint with ``ignore-error=true`` is a
warning; refused credentials are a clear error that never shows the secret; the
signatures satisfy a server that checks them; and once through ``dockyardd``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from dockyard.cli.main import main
from dockyard.client import Client
from dockyard.core import AuthError, Digest, DockyardError
from dockyard.engine import parse_cache_export, parse_cache_import
from dockyard.remotecache import AwsCredentials, CacheConfig, S3Client
from dockyard.testing.registry import RegistryProcess
from tests.integration.cli.conftest import _no_daemon_from_the_environment
from tests.integration.daemon.conftest import (
    DaemonProcess,
    daemon,
    daemon_config,
    running,
    socket_dir,
)

from .conftest import build, write_context

__all__ = ["_no_daemon_from_the_environment", "daemon", "daemon_config", "running", "socket_dir"]

KEY = "AKIAS3CACHETEST"
SECRET = "s3cache-test-secret-a1b2c3d4e5f6"
REGION = "us-east-1"
CREDS = AwsCredentials(access_key_id=KEY, secret_access_key=SECRET)


class S3Server:
    """moto's S3 on ``endpoint``, path-style."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, bucket: str, credentials: AwsCredentials = CREDS) -> S3Client:
        return S3Client(
            bucket=bucket,
            region=REGION,
            credentials=credentials,
            endpoint_url=self.endpoint,
            use_path_style=True,
            backoff=0.0,
        )

    async def bucket(self, name: str) -> str:
        async with self.client(name) as s3, s3._send("PUT", ""):
            pass
        return name

    def attrs(self, bucket: str, extra: str = "") -> str:
        return (
            f"type=s3,bucket={bucket},region={REGION},endpoint_url={self.endpoint},"
            f"use_path_style=true,access_key_id={KEY},secret_access_key={SECRET}{extra}"
        )

    def set_auth(self, count: str) -> None:
        """moto checks signatures after ``count`` more requests (``inf``: never)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


def dead_endpoint() -> str:
    """An address on loopback where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def keys(s3: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object of ``bucket`` (a ListObjectsV2 by hand: the client has no listing)."""
    async with (
        s3.client(bucket) as client,
        client._send("GET", "", params=[("list-type", "2")]) as answer,
    ):
        listing = (await answer.aread()).decode()
    out: dict[str, bytes] = {}
    async with s3.client(bucket) as client:
        for key in re.findall(r"<Key>([^<]+)</Key>", listing):
            data = await client.get_bytes(key, limit=64 << 20)
            assert data is not None
            out[key] = data
    return out


async def test_export_then_import_on_an_empty_state_dir(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server
) -> None:
    bucket = await s3.bucket("cache-roundtrip")
    context = write_context(tmp_path / "ctx", base)
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(s3.attrs(bucket, ",mode=max,name=main;second,prefix=ci/")),),
    )
    assert not first.warnings()
    objects = await keys(s3, bucket)
    manifests = {k for k in objects if k.startswith("ci/manifests/")}
    assert manifests == {"ci/manifests/main", "ci/manifests/second"}
    assert objects["ci/manifests/main"] == objects["ci/manifests/second"]
    # BuildKit's layout: the cache config JSON itself, its layers described inline,
    # each blob at blobs/<digest> holding exactly that content
    document = json.loads(objects["ci/manifests/main"])
    assert "layers" in document
    assert "records" in document
    config = CacheConfig.parse(objects["ci/manifests/main"])
    assert len([r for r in config.records if r.results]) >= 5  # mode=max: every step
    for layer in config.layers:
        assert layer.diff_id is not None
        assert layer.media_type
        blob = objects[f"ci/blobs/{layer.blob}"]
        assert len(blob) == layer.size
        assert Digest.from_bytes(blob) == layer.blob
    assert {k for k in objects if k.startswith("ci/blobs/")} == {
        f"ci/blobs/{layer.blob}" for layer in config.layers
    }

    for name in ("main", "second"):
        again = await build(
            tmp_path / f"b-{name}",
            registry,
            context,
            cache_from=(parse_cache_import(s3.attrs(bucket, f",name={name},prefix=ci/")),),
        )
        assert list(again.runs().values()) == [False, False], again.statuses()
        assert all(s.cached for s in again.statuses().values() if " RUN " in f" {s.name} ")
        assert again.image == first.image
        assert not again.warnings()

    (context / "b.txt").write_text("b2")  # the second RUN reads it: it runs again
    changed = await build(
        tmp_path / "c",
        registry,
        context,
        cache_from=(parse_cache_import(s3.attrs(bucket, ",name=main,prefix=ci/")),),
    )
    assert list(changed.runs().values()) == [False, True]

    missing = await build(
        tmp_path / "d",
        registry,
        context,
        cache_from=(parse_cache_import(s3.attrs(bucket, ",name=nothing,prefix=ci/")),),
    )
    assert list(missing.runs().values()) == [True, True]
    assert any("importing cache" in w for w in missing.warnings()), missing.warnings()


async def test_blobs_present_are_skipped_and_touched_past_the_refresh(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server
) -> None:
    bucket = await s3.bucket("cache-touch")
    context = write_context(tmp_path / "ctx", base)
    spec = s3.attrs(bucket, ",mode=max")
    await build(tmp_path / "a", registry, context, cache_to=(parse_cache_export(spec),))
    before = await keys(s3, bucket)
    blob_keys = sorted(k for k in before if k.startswith("blobs/sha256:"))
    assert blob_keys
    assert "manifests/buildkit" in before  # the default name

    async def metadata() -> dict[str, str]:
        out = {}
        async with s3.client(bucket) as client:
            for key in blob_keys:
                async with client._send("HEAD", key) as answer:
                    out[key] = answer.headers.get("x-amz-meta-updated-at", "")
        return out

    assert not any((await metadata()).values())
    # again (from the cache: the same blobs), within the refresh time: nothing
    # rewritten nor touched
    imported = (parse_cache_import(spec),)
    await build(
        tmp_path / "b", registry, context, cache_from=imported, cache_to=(parse_cache_export(spec),)
    )
    assert not any((await metadata()).values())
    # past it (0s): each blob copied onto itself with new metadata, as BuildKit does
    touched = parse_cache_export(spec + ",touch_refresh=0s")
    await build(tmp_path / "c", registry, context, cache_from=imported, cache_to=(touched,))
    assert all((await metadata()).values())
    after = await keys(s3, bucket)
    assert {k: v for k, v in after.items() if k.startswith("blobs/")} == {
        k: v for k, v in before.items() if k.startswith("blobs/")
    }  # the same blobs, none added


async def test_a_dead_endpoint_with_ignore_error_is_a_warning(
    tmp_path: Path, registry: RegistryProcess, base: str
) -> None:
    context = write_context(tmp_path / "ctx", base)
    endpoint = dead_endpoint()
    attrs = (
        f"type=s3,bucket=b,region={REGION},endpoint_url={endpoint},use_path_style=true,"
        f"access_key_id={KEY},secret_access_key={SECRET}"
    )
    built = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(attrs + ",ignore-error=true,retry_max_attempts=1"),),
        cache_from=(parse_cache_import(attrs + ",retry_max_attempts=1"),),
    )
    warnings = built.warnings()
    assert any("exporting cache failed" in w and "cannot reach" in w for w in warnings), warnings
    assert any("importing cache" in w for w in warnings), warnings
    assert not any(SECRET in w for w in warnings)

    with pytest.raises(DockyardError, match="cannot reach") as caught:
        await build(
            tmp_path / "b",
            registry,
            context,
            cache_to=(parse_cache_export(attrs + ",retry_max_attempts=1"),),
        )
    assert SECRET not in str(caught.value)


async def test_signatures_checked_by_the_server_and_refused_credentials(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server
) -> None:
    bucket = await s3.bucket("cache-auth")
    import boto3  # type: ignore[import-untyped]

    iam = boto3.client(
        "iam",
        endpoint_url=s3.endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName="builder")
    iam.put_user_policy(
        UserName="builder",
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    made = iam.create_access_key(UserName="builder")["AccessKey"]
    good = AwsCredentials(
        access_key_id=made["AccessKeyId"], secret_access_key=made["SecretAccessKey"]
    )
    wrong = AwsCredentials(access_key_id=made["AccessKeyId"], secret_access_key=SECRET)
    s3.set_auth("0")
    try:
        # every request signed by this client passes a server that checks signatures
        async with s3.client(bucket, good) as client:
            await client.put_bytes("manifests/x", b"{}")
            info = await client.head("manifests/x")
            assert info is not None
            assert await client.get_bytes("manifests/x", limit=10) == b"{}"
        async with s3.client(bucket, wrong) as client:
            with pytest.raises(AuthError) as refused:
                await client.put_bytes("manifests/x", b"{}")
        assert "SignatureDoesNotMatch" in str(refused.value)
        assert SECRET not in str(refused.value)

        context = write_context(tmp_path / "ctx", base)
        with pytest.raises(AuthError) as caught:
            await build(
                tmp_path / "a",
                registry,
                context,
                cache_to=(parse_cache_export(s3.attrs(bucket)),),  # an unknown key
            )
        text = str(caught.value)
        assert "access denied" in text
        assert "check the credentials" in text
        assert "s3://cache-auth/" in text
        assert SECRET not in text
    finally:
        s3.set_auth("inf")


async def test_through_the_daemon(
    tmp_path: Path,
    running: DaemonProcess,
    s3: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = await s3.bucket("cache-daemon")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN head -c 16 /dev/urandom | od -x > /random.txt\n"
    )
    # the credentials come from the client's environment and travel in the attributes
    # (as buildx sends them): the daemon, started before, has none of its own
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    attrs = (
        f"type=s3,bucket={bucket},region={REGION},endpoint_url={s3.endpoint},"
        "use_path_style=true,name=d"
    )
    addr = f"unix://{running.socket}"

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, list(args))

    code = await cli(
        "--addr", addr, "build", "--progress", "plain",
        "--cache-to", attrs + ",mode=max", "-o", str(tmp_path / "first"), str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "manifests/d" in "".join(await keys(s3, bucket))

    async with Client.connect(addr) as client:
        await client.prune(all=True)
    code = await cli(
        "--addr", addr, "build", "--progress", "plain",
        "--cache-from", attrs, "-o", str(tmp_path / "again"), str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "CACHED" in err
    assert (tmp_path / "again/random.txt").read_text() == (
        tmp_path / "first/random.txt"
    ).read_text()
    assert SECRET not in err
    assert SECRET not in running.log_text()


def go_form(config: bytes) -> bytes:
    """The cache config as BuildKit's exporter marshals it (Go's field order, ``parent``
    written unless 0, none of Dockyard's extra record fields ``keys``/``output``)."""
    doc = json.loads(config)
    layers = []
    for layer in doc["layers"]:
        out: dict[str, object] = {"blob": layer["blob"]}
        if layer.get("parent", 0) != 0:
            out["parent"] = layer["parent"]
        notes = layer["annotations"]
        out["annotations"] = {
            k: notes[k] for k in ("mediaType", "diffID", "size", "createdAt") if k in notes
        }
        layers.append(out)
    records = []
    for record in doc["records"]:
        out = {}
        if "layers" in record:
            out["layers"] = [{"createdAt": r.get("createdAt"), "layer": r["layer"]}
                             for r in record["layers"]]  # fmt: skip
        out["digest"] = record["digest"]
        if "inputs" in record:
            out["inputs"] = record["inputs"]
        records.append(out)
    return json.dumps({"layers": layers, "records": records}, separators=(",", ":")).encode()


async def test_a_cache_in_buildkits_own_serialization_is_read(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server
) -> None:
    bucket = await s3.bucket("cache-goform")
    context = write_context(tmp_path / "ctx", base)
    await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(s3.attrs(bucket, ",mode=max")),),
    )
    async with s3.client(bucket) as client:
        written = await client.get_bytes("manifests/buildkit", limit=1 << 24)
        assert written is not None
        await client.put_bytes("manifests/go", go_form(written))
    again = await build(
        tmp_path / "b",
        registry,
        context,
        cache_from=(parse_cache_import(s3.attrs(bucket, ",name=go")),),
    )
    assert not again.warnings()
    assert list(again.runs().values()) == [False, False], again.statuses()
