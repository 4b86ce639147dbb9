"""A hostile client on the daemon's session service (H77's fuzzing): it attaches over
real gRPC and answers the daemon's requests (secrets, credentials, content store look-ups
and reads, file sync, SSH agent streams, debug shell) wrongly — replies of the wrong kind,
error records of junk, silence, streams of arbitrary frames with escaping paths and odd
numbers. Every call of the engine ends in time with a DockyardError or a value, and the
file sync writes nothing outside its destination."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.api._gen import session_pb2 as pb
from dockyard.core import Digest, DockyardError
from dockyard.session import SessionManager, SyncRequest
from dockyard.session._grpc_common import ATTACH, STREAM

from .harness import Harness

DIGEST = Digest("sha256:" + "a" * 64)
_PATHS = [b"a", b"a/b", b"../out", b"/abs", b"a/../../out", b"", b".", b"a\x00b", b"\xff", b"a//b"]
_MODES = [0o100644, 0o40755, 0o120777, 0o20644, 0o60644, 0o10644, 0o140777, 0, 0o7777, 2**32 - 1]
_JUNK = [
    "",
    "{",
    "[]",
    "null",
    '{"type": "NoSuchError", "message": 5}',
    '{"message": "x", "type": "SessionError", "extra": [' * 50,
    "[" * 5000,
    '{"type": "DockyardError", "message": "' + "m" * 100_000 + '"}',
]

_STATS = st.builds(
    pb.Stat,
    path=st.sampled_from(_PATHS),
    mode=st.sampled_from(_MODES),
    uid=st.sampled_from([0, 1000, 2**32 - 1]),
    size=st.sampled_from([0, 1, -1, 2**62]),
    mtime_ns=st.sampled_from([0, -(2**63), 2**63 - 1]),
    linkname=st.sampled_from([b"", b"/etc/passwd", b"../../out", b"a"]),
    devmajor=st.sampled_from([0, 8, 2**32 - 1]),
)
_FRAMES = st.one_of(
    st.builds(
        lambda entries, done: pb.Frame(stats=pb.StatBatch(entries=entries, done=done)),
        st.lists(_STATS, max_size=4),
        st.booleans(),
    ),
    st.builds(
        lambda ids, done: pb.Frame(want=pb.Want(ids=ids, done=done)),
        st.lists(st.integers(0, 5), max_size=3),
        st.booleans(),
    ),
    st.builds(
        lambda chunks: pb.Frame(data=pb.DataBatch(chunks=chunks)),
        st.lists(
            st.builds(
                pb.Chunk,
                id=st.sampled_from([0, 1, 2, 2**31]),
                data=st.sampled_from([b"", b"x", b"y" * 70_000]),
                eof=st.booleans(),
            ),
            max_size=3,
        ),
    ),
    st.builds(
        lambda data, eof: pb.Frame(bytes=pb.Bytes(data=data, eof=eof)),
        st.sampled_from([b"", b"z", b"\x00" * 1000]),
        st.booleans(),
    ),
    st.just(pb.Frame(finish=pb.Finish())),
    st.builds(lambda j: pb.Frame(error=pb.Error(record_json=j)), st.sampled_from(_JUNK)),
    st.builds(
        lambda rows, cols, tty: pb.Frame(
            shell_start=pb.ShellStart(tty=tty, size=pb.WindowSize(rows=rows, cols=cols))
        ),
        st.sampled_from([0, 24, 2**32 - 1]),
        st.sampled_from([0, 80, 2**32 - 1]),
        st.booleans(),
    ),
    st.builds(
        lambda rows: pb.Frame(resize=pb.WindowSize(rows=rows, cols=rows)),
        st.sampled_from([0, 1, 2**32 - 1]),
    ),
    st.just(pb.Frame(open=pb.Open(session_id="other", call_id="x"))),
)
_REPLIES = st.one_of(
    st.builds(lambda j: pb.Reply(error=pb.Error(record_json=j)), st.sampled_from(_JUNK)),
    st.builds(
        lambda d: pb.Reply(secret=pb.SecretReply(data=d)), st.sampled_from([b"", b"s" * 100_000])
    ),
    st.just(pb.Reply(credentials=pb.CredentialsReply(found=True, username="\x00" * 10))),
    st.builds(
        lambda size, found: pb.Reply(content_info=pb.ContentInfoReply(size=size, found=found)),
        st.sampled_from([-1, 0, 2**63 - 1]),
        st.booleans(),
    ),
    st.just(pb.Reply(content_commit=pb.ContentCommitReply())),
)
# what the client does with one request: ("reply", Reply), ("silence",), ("stream", frames,
# close), ("twice", Reply)
_ANSWERS = st.one_of(
    st.tuples(st.just("reply"), _REPLIES),
    st.tuples(st.just("twice"), _REPLIES),
    st.tuples(st.just("stream"), st.lists(_FRAMES, max_size=6), st.booleans()),
    st.tuples(st.just("silence")),
)


async def _hostile_client(harness: Harness, session_id: str, answers: list[Any]) -> None:
    assert harness.channel is not None
    attach = harness.channel.stream_stream(
        ATTACH,
        request_serializer=pb.ClientMessage.SerializeToString,
        response_deserializer=pb.ServerMessage.FromString,
    )()
    streams: list[Any] = []
    try:
        await attach.write(
            pb.ClientMessage(
                hello=pb.Hello(
                    version=1,
                    session_id=session_id,
                    directories=["ctx"],
                    ssh_ids=["default"],
                    exports=["out"],
                    secrets=True,
                    credentials=True,
                    content_stores=[pb.ContentStore(id="store", writable=True)],
                    shell=True,
                )
            )
        )
        await attach.read()  # welcome
        n = 0
        while True:
            message = await attach.read()
            if message is grpc.aio.EOF:
                return
            call_id = message.request.call_id
            answer = answers[n % len(answers)]
            n += 1
            if answer[0] in ("reply", "twice"):
                reply = pb.Reply()
                reply.CopyFrom(answer[1])
                reply.call_id = call_id
                for _ in range(2 if answer[0] == "twice" else 1):
                    await attach.write(pb.ClientMessage(reply=reply))
            elif answer[0] == "stream":
                call = harness.channel.stream_stream(
                    STREAM,
                    request_serializer=pb.Frame.SerializeToString,
                    response_deserializer=pb.Frame.FromString,
                )()
                streams.append(call)
                await call.write(pb.Frame(open=pb.Open(session_id=session_id, call_id=call_id)))
                for frame in answer[1]:
                    await call.write(frame)
                if answer[2]:
                    await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
        return
    finally:
        for call in streams:
            call.cancel()
        attach.cancel()


async def _engine_calls(harness: Harness, session_id: str, dest: Path) -> list[str]:
    handle = await harness.manager.get(session_id, wait=5)
    outcomes: list[str] = []

    async def sync() -> object:
        return await handle.filesync.sync(SyncRequest(name="ctx"), dest)

    async def ssh() -> object:
        async with handle.ssh.forward("default") as path:
            reader, writer = await asyncio.open_unix_connection(os.fspath(path))
            try:
                writer.write(b"\x00\x00\x00\x01\x0b")  # an agent's request-identities
                await writer.drain()
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(reader.read(100), 1)
            finally:
                writer.close()
        return None

    async def shell() -> object:
        async with handle.shell.open("sh") as channel:
            await channel.started()
            await asyncio.wait_for(channel.receive(), 1)
        return None

    calls = {
        "secret": lambda: handle.secrets.get("id"),
        "credentials": lambda: handle.credentials.get("registry.example"),
        "content info": lambda: handle.content.info("store", DIGEST),
        "content read": lambda: handle.content.read("store", DIGEST, 10, limit=1 << 20),
        "content commit": lambda: handle.content.commit("store", "application/x", DIGEST, 1),
        "sync": sync,
        "ssh": ssh,
        "shell": shell,
    }
    for name, call in calls.items():
        try:
            async with asyncio.timeout(3):
                await call()
            outcomes.append(f"{name}: ok")
        except DockyardError as exc:
            outcomes.append(f"{name}: {type(exc).__name__}")
        except TimeoutError:
            # A stream the client opens and then leaves silent (not closed) is waited on
            # without a limit: the content read and the file sync hang with it (a slow
            # client's legitimate transfer has no bound either). Left open, security
            # audit 2 row 110; the ssh and shell calls' own 1 s reads end here too.
            if name not in ("content read", "sync", "ssh", "shell"):
                raise AssertionError(f"{name} did not end in time") from None
            outcomes.append(f"{name}: hung")
    return outcomes


def _outside(root: Path, dest: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full != dest and dest not in full.parents:
                found.append(str(full.relative_to(root)))
    return found


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_ANSWERS, min_size=1, max_size=8))
def test_a_hostile_client_cannot_break_the_engines_calls(
    tmp_path: Path, answers: list[Any]
) -> None:
    async def run() -> list[str]:
        harness = Harness("grpc-unix", SessionManager(call_timeout=0.5))
        await harness.start()
        root = Path(tmp_path) / f"run-{os.urandom(4).hex()}"
        dest = root / "dest"
        dest.mkdir(parents=True)
        client = asyncio.create_task(_hostile_client(harness, "hostile", answers))
        try:
            return await _engine_calls(harness, "hostile", dest)
        finally:
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client
            await harness.stop()
            assert _outside(root, dest) == []

    outcomes = asyncio.run(run())
    assert len(outcomes) >= 6
