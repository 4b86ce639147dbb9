"""Builds on a daemon through the client and ``dockyard --addr``: the example into the
daemon's image store, outputs streamed back to the client, errors with their step and
lines, secrets and SSH agents served over the session, incremental context transfer
(asserted through the transfer counts the build reports), disk usage and pruning."""

from __future__ import annotations

import asyncio
import json
import secrets
import tarfile
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.client import BuildOptions, Client, Transfer
from dockyard.core import CollectingReporter, ExecError, VertexProgress
from dockyard.exporter import parse_output
from tests.integration.cli.conftest import EXAMPLE, all_bytes_under, ssh_add_context
from tests.integration.daemon.conftest import DaemonProcess


def address(daemon: DaemonProcess) -> str:
    return f"unix://{daemon.socket}"


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def test_the_example_on_the_daemon(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iid, meta = tmp_path / "iid", tmp_path / "meta.json"
    code = await cli(
        "--addr", address(running), "build", "--progress", "plain", "-t", "greeting",
        "--iidfile", str(iid), "--metadata-file", str(meta), str(EXAMPLE),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[build 4/4] RUN sed" in err
    image_id = iid.read_text()
    assert f"({image_id}) stored in the image store of dockyardd at {address(running)}" in err
    metadata = json.loads(meta.read_text())
    assert metadata["containerimage.config.digest"] == image_id
    assert metadata["containerimage.descriptor"]["digest"] == metadata["containerimage.digest"]
    # in the daemon's image store, not in one of this process
    assert await cli("images", "--state-dir", str(running.state)) == 0
    assert "greeting" in capsys.readouterr().out

    async with Client.connect(address(running)) as client:
        info = await client.info()
        assert (info.mode, info.address) == ("daemon", address(running))
        assert info.version


async def test_outputs_are_streamed_back(running: DaemonProcess, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS base\nRUN echo built > /built.txt\n"
        "FROM scratch\nCOPY --from=base /built.txt /\nCOPY hello.txt /\n"
    )
    (ctx / "hello.txt").write_text("hello\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "kept.txt").write_text("mine")
    outputs = (
        parse_output(f"type=local,dest={tmp_path / 'dir'}"),
        parse_output(f"type=tar,dest={tmp_path / 'files.tar'}"),
        parse_output(f"type=oci,dest={tmp_path / 'oci.tar'},name=app"),
        parse_output(f"type=docker,dest={tmp_path / 'docker.tar'},name=app"),
    )
    async with Client.connect(address(running)) as client:
        result = await client.build(BuildOptions(context=str(ctx), outputs=outputs))
    assert (tmp_path / "dir" / "built.txt").read_text() == "built\n"
    assert (tmp_path / "dir" / "hello.txt").read_text() == "hello\n"
    assert (tmp_path / "dir" / "kept.txt").read_text() == "mine"  # merged, as BuildKit
    with tarfile.open(tmp_path / "files.tar") as tar:
        assert sorted(tar.getnames()) == ["built.txt", "hello.txt"]
    with tarfile.open(tmp_path / "oci.tar") as tar:
        assert {"oci-layout", "index.json"} <= set(tar.getnames())
    with tarfile.open(tmp_path / "docker.tar") as tar:
        assert "manifest.json" in tar.getnames()
    assert result.image_id is not None
    # nothing was written on the daemon's side under these names
    assert not list(running.state.rglob("files.tar"))


async def test_a_failing_step_on_the_daemon(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        'FROM busybox\nRUN echo "getting ready" && echo "it broke" >&2 && exit 7\n'
    )
    code = await cli("--addr", address(running), "build", "--progress", "quiet", str(ctx))
    err = capsys.readouterr().err
    assert code == 1
    assert " > [2/2] RUN echo" in err
    assert "it broke" in err
    assert ">>> RUN echo" in err  # the Dockerfile's lines came with the error
    assert err.rstrip().splitlines()[-1].endswith("did not complete successfully: exit code: 7")
    async with Client.connect(address(running)) as client:
        with pytest.raises(ExecError) as info:
            await client.build(BuildOptions(context=str(ctx)))
    assert info.value.exit_status == 7
    assert info.value.locations[0].filename == "Dockerfile"


async def test_secrets_over_the_session_leave_no_trace(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "s3cr3t-" + secrets.token_hex(16)
    (tmp_path / "token").write_text(token)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN --mount=type=secret,id=token wc -c < /run/secrets/token > /length\n"
    )
    code = await cli(
        "--addr", address(running), "build", "--progress", "plain",
        "--secret", f"id=token,src={tmp_path / 'token'}",
        "-t", "secretive", "-o", str(tmp_path / "out"), str(ctx),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp_path / "out" / "length").read_text().strip() == str(len(token))
    assert token not in err
    for path, data in all_bytes_under(running.state):
        assert token.encode() not in data, f"the secret in {path}"
    assert token not in running.log_text()


async def test_an_ssh_agent_over_the_session(
    running: DaemonProcess,
    tmp_path: Path,
    ssh_agent: Path,
    ssh_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    ssh_add_context(ctx)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY tools/ /\nRUN --mount=type=ssh ssh-add -l > /keys.txt\n"
    )
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent))
    out = tmp_path / "out"
    code = await cli(
        "--addr", address(running), "build", "-q", "--ssh", "default", "-o", str(out), str(ctx)
    )
    assert code == 0
    assert ssh_key[1] in (out / "keys.txt").read_text()


async def test_only_changed_files_travel(running: DaemonProcess, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY . /app\nRUN cat /app/src/* | wc -c > /size\n"
    )
    for i in range(20):
        (ctx / "src" / f"file{i}.txt").write_text(f"content {i}\n" * 100)
    options = BuildOptions(context=str(ctx), outputs=(parse_output(str(tmp_path / "out")),))
    async with Client.connect(address(running)) as client:
        first = await client.build(options)
        total = sum(len(p.read_bytes()) for p in ctx.rglob("*") if p.is_file())
        assert first.transfers["context"] == Transfer(files=21, bytes=total)

        unchanged = await client.build(options)
        assert unchanged.transfers["context"] == Transfer(files=0, bytes=0)

        changed = "changed content\n" * 3
        (ctx / "src" / "file7.txt").write_text(changed)
        reporter = CollectingReporter()
        second = await client.build(options, reporter)
    assert second.transfers["context"] == Transfer(files=1, bytes=len(changed))
    # the progress the user sees says the same
    done = [
        e
        for e in reporter.events
        if isinstance(e, VertexProgress) and e.id == "transfer:context" and e.completed
    ]
    assert [e.current for e in done] == [len(changed)]
    size = sum(len(p.read_bytes()) for p in (ctx / "src").iterdir())
    assert (tmp_path / "out" / "size").read_text().strip() == str(size)


async def test_the_cache_through_the_client(running: DaemonProcess, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN head -c 200000 /dev/zero > /big\n")
    async with Client.connect(address(running)) as client:
        await client.build(BuildOptions(context=str(ctx)))
        records = await client.du()
        assert any("head -c 200000" in r.description for r in records)
        pruned = await client.prune(all=True)
        assert any("head -c 200000" in r.description for r in pruned.records)
        assert not any("head -c 200000" in r.description for r in await client.du())


async def test_an_unreachable_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    sock = tmp_path / "none.sock"
    assert await cli("--addr", f"unix://{sock}", "build", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"dockyardd at unix://{sock}" in err
    assert "Traceback" not in err


async def test_a_tcp_daemon_with_mutual_tls(
    daemon: DaemonProcess, daemon_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dockyard.testing.gitserver import free_port
    from tests.integration.daemon.test_daemon_lifecycle import _certificates

    certs = tmp_path / "certs"
    await asyncio.to_thread(_certificates, certs)
    port = free_port()
    await asyncio.to_thread(
        daemon_config.write_text,
        '[worker]\nruntime = "crun"\n'
        f'[grpc]\naddress = ["tcp://127.0.0.1:{port}"]\n'
        f'[grpc.tls]\ncert = "{certs}/server.pem"\nkey = "{certs}/server.key"\n'
        f'ca = "{certs}/ca.pem"\n',
    )
    await daemon.start("--addr", f"tcp://127.0.0.1:{port}")
    tls = [
        "--tlscacert", str(certs / "ca.pem"),
        "--tlscert", str(certs / "client.pem"),
        "--tlskey", str(certs / "client.key"),
    ]  # fmt: skip
    out = tmp_path / "out"
    code = await cli(
        "--addr", f"tcp://127.0.0.1:{port}", *tls, "build", "-q", "-o", str(out), str(EXAMPLE)
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "usr/local/bin/greet").is_file()
    # a certificate of another CA is refused
    rogue = [*tls[:2], "--tlscert", str(certs / "rogue.pem"), "--tlskey", str(certs / "rogue.key")]
    code = await cli("--addr", f"tcp://127.0.0.1:{port}", *rogue, "build", "-q", str(EXAMPLE))
    assert code == 1
    assert f"dockyardd at tcp://127.0.0.1:{port}" in capsys.readouterr().err


async def test_du_and_prune_commands_on_the_daemon(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN head -c 300000 /dev/zero > /big\n")
    assert await cli("--addr", address(running), "build", "-q", str(ctx)) == 0
    capsys.readouterr()
    assert await cli("--addr", address(running), "du", "--verbose") == 0
    assert "head -c 300000" in capsys.readouterr().out
    code = await cli(
        "--addr", address(running), "prune", "--all", "--filter", "description=head -c"
    )
    assert code == 0
    assert "Total:" in capsys.readouterr().out
    assert await cli("--addr", address(running), "du", "--verbose") == 0
    assert "head -c 300000" not in capsys.readouterr().out
