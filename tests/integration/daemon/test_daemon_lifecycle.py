"""The daemon's life: SIGTERM mid-build cancels the build, leaves no mount or container
and exits 0, and a restart keeps the cache; SIGKILL mid-build: the running step dies
with the daemon, and after a restart the next build succeeds, reuses the completed steps, and ``du`` matches the disk; garbage
collection by the configured rules and prune over gRPC; TCP with mutual TLS."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import subprocess
from pathlib import Path

import grpc
import pytest

from dockyard.api._gen import control_pb2 as pb
from dockyard.cache import RecordType, UsageRecord
from dockyard.core import CancelledError, DockyardError, VertexStatus
from dockyard.snapshot import disk_usage

from .client import DaemonClient
from .conftest import DaemonProcess, eventually, mounts_under, processes_with


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _context(root: Path, dockerfile: str) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(dockerfile)
    return root


def _step(statuses: dict[str, VertexStatus], text: str) -> VertexStatus:
    (found,) = [s for name, s in statuses.items() if text in name]
    return found


async def _stopped_running_steps(marker: str) -> bool:
    return not processes_with(f"sleep {marker}")


async def test_sigterm_cancels_builds_cleanly_and_a_restart_keeps_the_cache(
    running: DaemonProcess, tmp_path: Path
) -> None:
    marker = str(10_000 + secrets.randbelow(5000))
    done = _context(tmp_path / "done", "FROM busybox\nRUN echo done > /done\n")
    slow = _context(
        tmp_path / "slow", f"FROM busybox\nRUN echo started && sleep {marker} && echo never\n"
    )
    async with running.client() as client:
        await client.build(done)
        started = asyncio.Event()
        build = asyncio.create_task(client.build(slow, started=started))
        await asyncio.wait_for(started.wait(), 60)
        assert processes_with(f"sleep {marker}")
        assert await running.stop(signal.SIGTERM) == 0
        with pytest.raises(CancelledError, match="the daemon is shutting down"):
            await build
    log = running.log_text()
    assert "cancelling 1 builds" in log
    assert "dockyardd stopped" in log
    assert not mounts_under(running.state)
    assert not processes_with(f"sleep {marker}")
    assert not running.socket.exists()

    await running.start()
    async with running.client() as client:
        again = await client.build(done)
    assert _step(again.statuses(), "RUN echo done").cached


def _disk_records(state: Path) -> tuple[int, int]:
    """The snapshot directories on disk: how many, and the bytes their trees use."""
    count = size = 0
    for entry in (state / "snapshots").iterdir():
        if entry.name.isdigit() and (entry / "fs").is_dir():
            count += 1
            size += disk_usage(str(entry / "fs")).size
    return count, size


async def test_sigkill_mid_build_then_restart_reuses_what_was_complete(
    running: DaemonProcess, tmp_path: Path
) -> None:
    marker = str(20_000 + secrets.randbelow(5000))
    token = secrets.token_hex(4)
    first = _context(
        tmp_path / "first",
        f"FROM busybox\nRUN echo one-{token} > /one\nRUN echo started && sleep {marker}\n",
    )
    second = _context(
        tmp_path / "second",
        f"FROM busybox\nRUN echo one-{token} > /one\nRUN cat /one > /two\n"
        "FROM scratch\nCOPY --from=0 /one /two /\n",
    )
    async with running.client() as client:
        started = asyncio.Event()
        build = asyncio.create_task(client.build(first, started=started))
        await asyncio.wait_for(started.wait(), 60)
        assert await running.stop(signal.SIGKILL) == -signal.SIGKILL
        with pytest.raises(DockyardError):
            await build
    # the step's container died with the daemon (its watchdog), not at the restart
    try:
        await eventually(lambda: _stopped_running_steps(marker), limit=20)
        gone = True
    except TimeoutError:
        gone = False

    await running.start()  # (reaps the bundle and its mounts, and a container left)
    assert gone, "the running step outlived the SIGKILLed daemon"
    async with running.client() as client:
        result = await client.build(second, out=tmp_path / "out")
        records = await client.du()
    assert (tmp_path / "out" / "one").read_text() == f"one-{token}\n"
    assert (tmp_path / "out" / "two").read_text() == f"one-{token}\n"
    statuses = result.statuses()
    assert _step(statuses, f"RUN echo one-{token}").cached
    assert not _step(statuses, "RUN cat /one").cached

    assert await running.stop() == 0
    assert not mounts_under(running.state)
    assert _disk_records(running.state) == (len(records), sum(r.size for r in records))


GC_CONFIG = """\
[worker]
runtime = "crun"
gc-interval = "1s"

[[worker.gcpolicy]]
max-used-space = "1MB"
"""


async def test_gc_rules_prune_over_their_limit(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path
) -> None:
    _write(daemon_config, GC_CONFIG)
    await daemon.start()
    big = _context(
        tmp_path / "big",
        f"FROM busybox\nRUN head -c 3000000 /dev/urandom > /big && echo {secrets.token_hex(4)}\n",
    )
    async with daemon.client() as client:
        (worker,) = (await client.workers()).record
        (rule,) = worker.gc_policy
        assert rule.max_used_space == 1 << 20
        await client.build(big)

        async def collected() -> bool:
            if "gc: reclaimed" not in daemon.log_text():  # logged when the pass ends
                return False
            records = await client.du()
            return sum(r.size for r in records) <= 1 << 20

        await eventually(collected)
        await client.build(big)  # and builds go on (the base image's blobs are kept)


async def test_prune_over_grpc_honours_filters_durations_and_sizes(
    running: DaemonProcess, tmp_path: Path
) -> None:
    async def build(name: str, size: int) -> None:
        ctx = _context(
            tmp_path / name,
            f"FROM busybox\nRUN head -c {size} /dev/urandom > /{name} && echo {secrets.token_hex(4)}\n",
        )
        await client.build(ctx)

    def total(records: list[UsageRecord]) -> int:
        return sum(r.size for r in records)

    async with running.client() as client:
        await build("a", 1_000_000)
        await build("b", 2_000_000)
        before = await client.du()
        assert total(before) > 3_000_000
        assert await client.prune(pb.PruneRequest(keep_duration=3600 * 10**9)) == []
        assert await client.prune(pb.PruneRequest(filter=["type=source.git"])) == []
        with pytest.raises(DockyardError, match="unknown filter"):
            await client.prune(pb.PruneRequest(filter=["colour=red"]))

        limit = total(before) - 500_000
        removed = await client.prune(pb.PruneRequest(reserved_space=limit))
        assert removed
        after = await client.du()
        assert total(after) <= limit
        assert {r.id for r in after} == {r.id for r in before} - {r.id for r in removed}
        regular = await client.du("type=regular")
        assert all(r.record_type is RecordType.REGULAR for r in regular)

        removed = await client.prune(pb.PruneRequest(all=True))
        assert {r.id for r in removed} == {r.id for r in after}
        assert await client.du() == []


# -- TCP with mutual TLS --------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(where: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate signed by it,
    and a client certificate signed by another CA."""
    where.mkdir()
    for ca in ("ca", "rogue-ca"):
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN={ca}",
            cwd=where,
        )  # fmt: skip
    (where / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (where / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (
        ("server", "ca", "server.ext"),
        ("client", "ca", "client.ext"),
        ("rogue", "rogue-ca", "client.ext"),
    ):
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=where,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext,
            cwd=where,
        )  # fmt: skip


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_tcp_with_mutual_tls(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    await asyncio.to_thread(_certificates, certs)
    port = _free_port()
    _write(
        daemon_config,
        f'[grpc]\naddress = ["tcp://127.0.0.1:{port}"]\n'
        f'[grpc.tls]\ncert = "{certs}/server.pem"\nkey = "{certs}/server.key"\n'
        f'ca = "{certs}/ca.pem"\n',
    )
    await daemon.start("--addr", f"tcp://127.0.0.1:{port}")
    ca = (certs / "ca.pem").read_bytes()

    def credentials(name: str | None) -> grpc.ChannelCredentials:
        if name is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(certs / f"{name}.key").read_bytes(),
            certificate_chain=(certs / f"{name}.pem").read_bytes(),
        )

    async with DaemonClient(f"127.0.0.1:{port}", credentials=credentials("client")) as client:
        assert (await client.info()).version.package == "dockyard"
        ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo over tcp\n")
        result = await client.build(ctx)
        assert b"over tcp" in result.logs()
    for refused in (None, "rogue"):
        async with DaemonClient(f"127.0.0.1:{port}", credentials=credentials(refused)) as client:
            with pytest.raises(DockyardError, match="cannot reach the daemon"):
                await asyncio.wait_for(client.info(), 30)
    async with DaemonClient(f"127.0.0.1:{port}") as plain:
        with pytest.raises(DockyardError):
            await asyncio.wait_for(plain.info(), 30)
