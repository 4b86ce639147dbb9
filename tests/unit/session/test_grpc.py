"""The gRPC transport's own rules: who may open which stream, protocol versions, flow
control, and what importing the package costs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dockyard.api._gen import session_pb2 as pb
from dockyard.core import SessionError
from dockyard.session import (
    Session,
    SessionManager,
    SyncRequest,
    _grpc_client,
    _grpc_common,
    _grpc_server,
    _receive,
)
from dockyard.session._grpc_common import ATTACH, STREAM

from .harness import Harness, eventually
from .trees import write


@pytest.fixture
async def tcp() -> Harness:
    h = Harness("grpc-tcp", SessionManager(call_timeout=10))
    await h.start()
    return h


def stream_call(harness: Harness) -> grpc.aio.StreamStreamCall:
    assert harness.channel is not None
    return harness.channel.stream_stream(
        STREAM,
        request_serializer=pb.Frame.SerializeToString,
        response_deserializer=pb.Frame.FromString,
    )()


def attach_call(harness: Harness) -> grpc.aio.StreamStreamCall:
    assert harness.channel is not None
    return harness.channel.stream_stream(
        ATTACH,
        request_serializer=pb.ClientMessage.SerializeToString,
        response_deserializer=pb.ServerMessage.FromString,
    )()


async def test_streams_for_unknown_calls_are_refused(tcp: Harness) -> None:
    try:
        call = stream_call(tcp)
        await call.write(pb.Frame(open=pb.Open(session_id="s", call_id="guessed")))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        call = stream_call(tcp)
        await call.write(pb.Frame(want=pb.Want(done=True)))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await tcp.stop()


async def test_a_stream_must_name_its_own_session(
    tcp: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client that learned a call id cannot take the call over."""
    write(tmp_path / "src", "f", "x")
    seen: list[str] = []
    release = asyncio.Event()
    original = _grpc_client.Attachment._open

    async def slow_open(self: _grpc_client.Attachment, call_id: str) -> object:
        seen.append(call_id)
        await release.wait()
        return await original(self, call_id)

    monkeypatch.setattr(_grpc_client.Attachment, "_open", slow_open)
    try:
        async with tcp.open(Session(directories={"context": tmp_path / "src"})) as handle:
            sync = asyncio.create_task(
                handle.filesync.sync(SyncRequest(name="context"), tmp_path / "d")
            )
            await eventually(lambda: bool(seen))
            intruder = stream_call(tcp)
            await intruder.write(pb.Frame(open=pb.Open(session_id="intruder", call_id=seen[0])))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await intruder.read()
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            release.set()
            assert (await sync).files_transferred == 1
    finally:
        await tcp.stop()


async def test_attach_needs_hello_and_a_known_version(tcp: Harness) -> None:
    try:
        call = attach_call(tcp)
        await call.write(pb.ClientMessage(reply=pb.Reply(call_id="x")))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        call = attach_call(tcp)
        await call.write(pb.ClientMessage(hello=pb.Hello(version=99, session_id="v")))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "version 99" in str(info.value.details())
        assert tcp.manager.find("v") is None
    finally:
        await tcp.stop()


async def test_refused_attach_is_a_session_error(tcp: Harness) -> None:
    try:
        async with tcp.open(Session(id="dup")):
            from dockyard.session import attach

            assert tcp.channel is not None
            with pytest.raises(SessionError, match="already attached"):
                await attach(Session(id="dup"), tcp.channel)
    finally:
        await tcp.stop()


class _Context:
    """A stand-in for grpc's servicer context on the daemon's side of ``Attach``."""

    def __init__(self) -> None:
        self.written: list[pb.ServerMessage] = []

    async def write(self, message: pb.ServerMessage) -> None:
        self.written.append(message)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


async def test_a_handler_cancelled_twice_still_ends_its_session() -> None:
    # grpc may cancel an Attach handler more than once when its client vanishes; the
    # second CancelledError lands while the handler is cleaning up, and the session
    # (with every call in flight) must end all the same.
    manager = SessionManager(call_timeout=60)
    service = _grpc_server.SessionService(manager)
    context = _Context()

    async def messages() -> AsyncIterator[pb.ClientMessage]:
        hello = pb.Hello(version=_grpc_common.VERSION, session_id="twice", secrets=True)
        yield pb.ClientMessage(hello=hello)
        await asyncio.Event().wait()  # the client says nothing more

    handler = asyncio.create_task(service._attach(messages(), context))
    await eventually(lambda: manager.find("twice") is not None)
    handle = await manager.get("twice")
    call = asyncio.create_task(handle.secrets.get("token"))
    await eventually(lambda: len(context.written) == 2)  # the welcome, then the request
    handler.cancel()
    for _ in range(3):
        await asyncio.sleep(0)  # into the handler's clean-up
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert handle.closed
    with pytest.raises(SessionError, match="ended"):
        await asyncio.wait_for(call, 5)
    assert manager.find("twice") is None
    await manager.aclose()


async def test_content_is_flow_controlled(
    tcp: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow receiver holds the sender back: the bytes in flight stay bounded."""
    src = tmp_path / "src"
    size = 48 << 20
    write(src, "big", b"\0" * size)
    sent = 0
    stored = 0
    in_flight = 0
    original_send = _grpc_common.send_tree

    async def counting_send_tree(*args: object, **kwargs: object) -> tuple[int, int, int]:
        def progress(files: int, nbytes: int) -> None:
            nonlocal sent, in_flight
            sent = nbytes
            in_flight = max(in_flight, sent - stored)

        return await original_send(*args, progress=progress)  # type: ignore[arg-type]

    original_write = _receive.Receiver.write

    def slow_write(self: _receive.Receiver, pieces: object) -> int:
        nonlocal stored
        import time

        time.sleep(0.005)
        n = original_write(self, pieces)  # type: ignore[arg-type]
        stored += n
        return n

    monkeypatch.setattr(_grpc_client, "send_tree", counting_send_tree)
    monkeypatch.setattr(_receive.Receiver, "write", slow_write)
    try:
        async with tcp.open(Session(directories={"context": src})) as handle:
            result = await handle.filesync.sync(SyncRequest(name="context"), tmp_path / "dest")
    finally:
        await tcp.stop()
    assert result.bytes_transferred == size
    assert sent == size
    assert 0 < in_flight < size // 3, f"{in_flight >> 20} MiB in flight"


def test_importing_the_package_does_not_load_grpc() -> None:
    code = (
        "import sys, dockyard.session\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.stdout.strip() == ""
