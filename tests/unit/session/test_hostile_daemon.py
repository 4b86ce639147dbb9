"""A hostile daemon on the client's session (H77's fuzzing): a fake daemon over real
gRPC sends the client requests with odd names, digests, sizes and media types (escaping
paths, traversal digests, names not offered) and streams of arbitrary frames (stats that
escape or link out, stray chunks, wrong frame kinds) for its exports and content stores.
The client answers every request (an error or a value), stays attached, and writes
nothing outside the outputs it offered: the export directory, the export file and the
writable OCI layout."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.api._gen import session_pb2 as pb
from dockyard.session import (
    DirectoryTarget,
    FileTarget,
    LayoutStore,
    Secrets,
    Session,
    attach,
)
from dockyard.session._grpc_common import service_handler

from .harness import socket_dir
from .test_hostile_client import _FRAMES

_DIGESTS = [
    "sha256:" + "a" * 64,
    "sha256:../../../../etc/passwd",
    "sha256:" + "A" * 64,
    "sha512:" + "b" * 128,
    "",
    "sha256:" + "a" * 63 + "/",
    "sha256:\x00" + "a" * 63,
]
_ODD_NAMES = ["../out", "", "x\x00", "/abs"]
_OFFERED = ["out", "file", "store", "ro", "ctx"]
_DIGEST = st.one_of(st.just(_DIGESTS[0]), st.sampled_from(_DIGESTS))
_NAMES = st.one_of(st.sampled_from(_OFFERED), st.sampled_from(_ODD_NAMES))
_REQUESTS = st.one_of(
    st.builds(lambda n: pb.Request(secret=pb.SecretRequest(id=n)), _NAMES),
    st.builds(lambda n: pb.Request(credentials=pb.CredentialsRequest(host=n)), _NAMES),
    st.builds(
        lambda n, p: pb.Request(sync=pb.SyncRequest(name=n, follow_paths=p)),
        _NAMES,
        st.lists(st.sampled_from(["../..", "/etc", "a", "**"]), max_size=2),
    ),
    st.builds(
        lambda n: pb.Request(export_directory=pb.ExportDirectoryRequest(target=n)),
        _NAMES,
    ),
    st.builds(
        lambda n: pb.Request(export_stream=pb.ExportStreamRequest(target=n)),
        _NAMES,
    ),
    st.builds(lambda n: pb.Request(ssh=pb.SshRequest(id=n)), _NAMES),
    st.builds(
        lambda s, d: pb.Request(content_info=pb.ContentInfoRequest(store=s, digest=d)),
        _NAMES,
        _DIGEST,
    ),
    st.builds(
        lambda s, d, n: pb.Request(content_read=pb.ContentReadRequest(store=s, digest=d, size=n)),
        _NAMES,
        _DIGEST,
        st.sampled_from([0, 1, -1, 2**62]),
    ),
    st.builds(
        lambda s, d, n: pb.Request(content_write=pb.ContentWriteRequest(store=s, digest=d, size=n)),
        _NAMES,
        _DIGEST,
        st.sampled_from([0, 3, -1, 2**62]),
    ),
    st.builds(
        lambda s, m, d, n: pb.Request(
            content_commit=pb.ContentCommitRequest(store=s, media_type=m, digest=d, size=n)
        ),
        _NAMES,
        st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "", "a\nb", "x"]),
        _DIGEST,
        st.sampled_from([0, 3, -1]),
    ),
    st.builds(lambda line: pb.Request(shell=pb.ShellRequest(line=line)), st.text(max_size=5)),
)
_SCRIPT = st.lists(st.tuples(_REQUESTS, st.lists(_FRAMES, max_size=5)), min_size=1, max_size=6)


class _HostileDaemon:
    """Answers ``Attach`` with a welcome, then sends ``script``'s requests one by one;
    a stream the client opens for request i is sent request i's frames."""

    def __init__(self, script: list[tuple[pb.Request, list[pb.Frame]]]) -> None:
        self.script = script
        self.answered: dict[str, str] = {}  # call id -> how: reply kind or "stream"
        self.frames: dict[str, list[pb.Frame]] = {}
        self.all_answered = asyncio.Event()

    def _answer(self, call_id: str, how: str) -> None:
        self.answered.setdefault(call_id, how)
        if len(self.answered) >= len(self.script):
            self.all_answered.set()

    def handler(self) -> grpc.GenericRpcHandler:
        return service_handler(self._attach, self._stream)

    async def _attach(self, requests: AsyncIterator[pb.ClientMessage], context: Any) -> None:
        await anext(requests)  # hello
        await context.write(pb.ServerMessage(welcome=pb.Welcome(version=1)))

        async def read_replies() -> None:
            async for message in requests:
                if message.WhichOneof("kind") == "reply":
                    reply = message.reply
                    self._answer(reply.call_id, str(reply.WhichOneof("kind")))

        reading = asyncio.create_task(read_replies())
        try:
            for i, (request, frames) in enumerate(self.script):
                message = pb.Request()
                message.CopyFrom(request)
                message.call_id = f"call-{i}"
                self.frames[message.call_id] = frames
                await context.write(pb.ServerMessage(request=message))
            await reading
        finally:
            reading.cancel()

    async def _stream(self, requests: AsyncIterator[pb.Frame], context: Any) -> None:
        first = await anext(requests)
        call_id = first.open.call_id
        self._answer(call_id, "stream")
        for frame in self.frames.get(call_id, []):
            await context.write(frame)
        with contextlib.suppress(asyncio.TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(0.3):
                async for _ in requests:
                    pass


def _everything_under(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(str((Path(dirpath) / name).relative_to(root)))
    return out


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(_SCRIPT)
def test_a_hostile_daemon_cannot_make_the_client_write_elsewhere(
    tmp_path: Path, script: list[tuple[pb.Request, list[pb.Frame]]]
) -> None:
    root = tmp_path / f"run-{os.urandom(4).hex()}"
    outputs = root / "outputs"
    (root / "ctx").mkdir(parents=True)
    (root / "ctx" / "f").write_text("context file\n")
    (root / "ro").mkdir()
    outputs.mkdir()
    before = _everything_under(root)

    async def run() -> dict[str, str]:
        daemon = _HostileDaemon(script)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((daemon.handler(),))
        sockets = socket_dir()
        server.add_insecure_port(f"unix:{sockets}/d.sock")
        await server.start()
        channel = grpc.aio.insecure_channel(f"unix:{sockets}/d.sock")
        session = Session(
            directories={"ctx": root / "ctx"},
            secrets=Secrets(values={"out": b"s"}),
            exports={
                "out": DirectoryTarget(path=outputs / "dir"),
                "file": FileTarget(path=outputs / "file.tar"),
            },
            content_stores={
                "store": LayoutStore(path=outputs / "layout", writable=True),
                "ro": LayoutStore(path=root / "ro"),
            },
        )
        try:
            attachment = await attach(session, channel)
            try:
                async with asyncio.timeout(10):
                    await daemon.all_answered.wait()
                assert not attachment.closed
            finally:
                await attachment.close()
        finally:
            await channel.close()
            await server.stop(None)
            os.unlink(sockets / "d.sock") if (sockets / "d.sock").exists() else None
            sockets.rmdir()
        return daemon.answered

    answered = asyncio.run(run())
    assert len(answered) == len(script)
    after = _everything_under(root)
    new = {p for p in after - before if not p.startswith("outputs/")}
    assert new == set(), new
