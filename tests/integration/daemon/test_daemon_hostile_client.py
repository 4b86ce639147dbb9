"""A hostile client against a real ``dockyardd`` (H77): the session frames a client
sends over the wire — a secret answered with the wrong kind of reply, with an error
record of junk or nested 5000 deep, a context sync whose entries escape — fail that
client's build with an error that names what went wrong, write nothing outside the
daemon's state, and leave the daemon serving the next build (no traceback in its log)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import grpc
import pytest

from dockyard.api._gen import control_pb2 as cpb
from dockyard.api._gen import session_pb2 as pb
from dockyard.core import DockyardError
from dockyard.daemon import error_from_rpc
from dockyard.session import Secrets, Session, _grpc_client, attach

from .client import DaemonClient
from .conftest import DaemonProcess

DOCKERFILE = """\
FROM busybox
RUN --mount=type=secret,id=token,required=true cat /run/secrets/token > /seen
COPY . /ctx/
"""


def _escapes() -> list[Path]:
    return list(Path("/tmp").glob("h77-escape-*"))


async def _build(client: DaemonClient, ctx: Path) -> None:
    session = Session(
        directories={"context": ctx, "dockerfile": ctx},
        secrets=Secrets(values={"token": b"fine"}),
    )
    async with await attach(session, client.channel):
        request = cpb.SolveRequest(
            ref=secrets.token_hex(12), session=session.id, frontend="dockerfile.v0"
        )
        try:
            await client._unary("Solve", cpb.SolveResponse)(request)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc


def _hostile(monkeypatch: pytest.MonkeyPatch, kind: str, answer: Any) -> None:
    """Answer requests of ``kind`` with ``answer(attachment, request)`` instead."""
    original = _grpc_client.Attachment._handle

    async def handle(self: _grpc_client.Attachment, request: pb.Request) -> None:
        if request.WhichOneof("kind") == kind and (
            kind != "sync" or request.sync.name == "context"
        ):
            await answer(self, request)
            return
        await original(self, request)

    monkeypatch.setattr(_grpc_client.Attachment, "_handle", handle)


async def _wrong_kind(self: Any, request: pb.Request) -> None:
    await self._reply(pb.Reply(call_id=request.call_id, content_commit=pb.ContentCommitReply()))


async def _junk_error(self: Any, request: pb.Request) -> None:
    await self._reply(pb.Reply(call_id=request.call_id, error=pb.Error(record_json="[" * 5000)))


async def _escaping_sync(self: Any, request: pb.Request) -> None:
    frames = await self._open(request.call_id)
    escape = b"../../../../../../../../tmp/h77-escape-" + secrets.token_hex(4).encode()
    await frames.send(
        pb.Frame(
            stats=pb.StatBatch(
                entries=[
                    pb.Stat(path=b"Dockerfile", mode=0o100644, size=2),
                    pb.Stat(path=escape, mode=0o100644, size=3),
                ],
                done=True,
            )
        )
    )
    want = await frames.recv()
    if want is not None and want.WhichOneof("kind") == "want":
        await frames.send(
            pb.Frame(
                data=pb.DataBatch(
                    chunks=[
                        pb.Chunk(id=0, data=b"x\n", eof=True),
                        pb.Chunk(id=1, data=b"bad", eof=True),
                    ]
                )
            )
        )
    await frames.drain()
    frames.cancel()


@pytest.mark.parametrize(
    ("kind", "answer", "message"),
    [
        ("secret", _wrong_kind, "answered a secret request wrongly"),
        ("secret", _junk_error, "malformed error while fetching secret 'token'"),
        ("sync", _escaping_sync, "is not a clean relative path inside the destination"),
    ],
    ids=["wrong-reply", "junk-error", "escaping-sync"],
)
async def test_a_hostile_clients_frames_fail_its_own_build_only(
    running: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    answer: Any,
    message: str,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "file.txt").write_text("data\n")
    before = set(await asyncio.to_thread(_escapes))
    async with running.client() as client:
        with monkeypatch.context() as patch:
            _hostile(patch, kind, answer)
            with pytest.raises(DockyardError) as info:
                await _build(client, ctx)
        assert message in str(info.value), str(info.value)
        assert "Traceback" not in str(info.value)
        assert set(await asyncio.to_thread(_escapes)) == before
        await _build(client, ctx)  # the daemon serves the next build
    assert running.alive
    assert "Traceback" not in running.log_text()
