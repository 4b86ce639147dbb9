"""The client's side of the gRPC transport: :func:`attach` a :class:`Session` to a
daemon and serve its requests until the :class:`Attachment` is closed."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import grpc

from dockyard.api._gen import session_pb2 as pb
from dockyard.core import NotFoundError, SessionError, UsageError

from ._export import DirectoryTarget, FileSink, FileTarget
from ._grpc_common import (
    ATTACH,
    STREAM,
    VERSION,
    FramesSyncSource,
    error_from_pb,
    error_to_pb,
    send_tree,
)
from ._receive import receive
from ._session import Session
from ._values import SyncRequest
from .types import ByteChannel

if TYPE_CHECKING:
    from ._content import BlobWriter

__all__ = ["Attachment", "attach"]


class _ClientFrames:
    """The client's end of one ``Stream`` call."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def send(self, frame: pb.Frame) -> None:
        try:
            await self._call.write(frame)
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise SessionError(f"the session stream failed: {_describe(exc)}") from exc

    async def recv(self) -> pb.Frame | None:
        try:
            frame = await self._call.read()
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise SessionError(f"the session stream failed: {_describe(exc)}") from exc
        if frame is grpc.aio.EOF:
            return None
        assert isinstance(frame, pb.Frame)
        return frame

    async def drain(self) -> None:
        """Wait until the daemon ends the call (frames it still sends are dropped)."""
        with contextlib.suppress(SessionError):
            while await self.recv() is not None:
                pass

    async def done_writing(self) -> None:
        try:
            await self._call.done_writing()
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise SessionError(f"the session stream failed: {_describe(exc)}") from exc

    def cancel(self) -> None:
        self._call.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__


class Attachment:
    """A :class:`Session` attached to a daemon: it answers the daemon's requests in the
    background until :meth:`close` (or the daemon goes away; :attr:`closed` then becomes
    true). Use it as an async context manager to close it on exit."""

    def __init__(self, session: Session, channel: Any, call: Any) -> None:
        self.session = session
        self._channel = channel
        self._call = call
        self._write_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._closing = False
        self.reason = ""
        self._serve_task = asyncio.create_task(self._serve())

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Detach: the daemon's session ends (and with it any build still using it)."""
        if not self._closing:
            self._closing = True
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, RuntimeError):
                await self._call.done_writing()
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(self._serve_task)
            except TimeoutError:
                self._call.cancel()
        await asyncio.wait([self._serve_task])

    async def __aenter__(self) -> Attachment:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self) -> None:
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    self.reason = "the daemon ended the session"
                    break
                if message.WhichOneof("kind") == "request":
                    task = asyncio.create_task(self._handle(message.request))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except grpc.RpcError as exc:
            self.reason = f"the session broke: {_describe(exc)}"
        except asyncio.CancelledError:
            self.reason = "the session was cancelled"
        finally:
            for task in list(self._tasks):
                task.cancel()
            try:
                if self._tasks:
                    await asyncio.wait(list(self._tasks))
            finally:  # even if cancelled again while waiting
                self._call.cancel()
                self._closed.set()

    async def _reply(self, reply: pb.Reply) -> None:
        async with self._write_lock:
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError, RuntimeError):
                await self._call.write(pb.ClientMessage(reply=reply))

    async def _open(self, call_id: str) -> _ClientFrames:
        call = self._channel.stream_stream(
            STREAM,
            request_serializer=pb.Frame.SerializeToString,
            response_deserializer=pb.Frame.FromString,
        )()
        frames = _ClientFrames(call)
        await frames.send(pb.Frame(open=pb.Open(session_id=self.session.id, call_id=call_id)))
        return frames

    async def _handle(self, request: pb.Request) -> None:
        call_id = request.call_id
        kind = request.WhichOneof("kind")
        frames: _ClientFrames | None = None
        try:
            if kind == "secret":
                data = await self.session.get_secret(request.secret.id)
                await self._reply(pb.Reply(call_id=call_id, secret=pb.SecretReply(data=data)))
            elif kind == "credentials":
                creds = await self.session.get_credentials(request.credentials.host)
                answer = pb.CredentialsReply(found=creds is not None)
                if creds is not None:
                    answer.username = creds.username
                    answer.password = creds.password
                    answer.identity_token = creds.identity_token
                    answer.registry_token = creds.registry_token
                await self._reply(pb.Reply(call_id=call_id, credentials=answer))
            elif kind == "sync":
                sync = request.sync
                root = self.session.directory(sync.name)
                wanted = SyncRequest(
                    name=sync.name,
                    include_patterns=tuple(sync.include_patterns),
                    exclude_patterns=tuple(sync.exclude_patterns),
                    follow_paths=tuple(sync.follow_paths),
                )
                try:
                    entries = await self.session.walk(wanted)
                    frames = await self._open(call_id)
                    await send_tree(frames, root, wanted, entries=entries)
                    await frames.drain()
                finally:
                    self.session.sync_ended()
            elif kind == "export_directory":
                target = self.session.export_target(request.export_directory.target)
                if not isinstance(target, DirectoryTarget):
                    raise NotFoundError(
                        f"export target {request.export_directory.target!r} is not a directory"
                    )
                frames = await self._open(call_id)
                result = await receive(FramesSyncSource(frames), target.path, merge=True)
                await frames.send(
                    pb.Frame(
                        finish=pb.Finish(
                            files=result.files_transferred, bytes=result.bytes_transferred
                        )
                    )
                )
                await frames.drain()
            elif kind == "export_stream":
                file_target = self.session.export_target(request.export_stream.target)
                if not isinstance(file_target, FileTarget):
                    raise NotFoundError(
                        f"export target {request.export_stream.target!r} is not a file"
                    )
                frames = await self._open(call_id)
                await _receive_stream(frames, FileSink(file_target))
            elif kind == "ssh":
                channel = await self.session.connect_ssh(request.ssh.id)
                try:
                    frames = await self._open(call_id)
                    await _relay(frames, channel)
                finally:
                    await channel.aclose()
            elif kind == "content_info":
                store = self.session.content_store(request.content_info.store)
                size = await asyncio.to_thread(store.blob_size, request.content_info.digest)
                found = pb.ContentInfoReply(found=size is not None, size=size or 0)
                await self._reply(pb.Reply(call_id=call_id, content_info=found))
            elif kind == "content_read":
                read = request.content_read
                blob = await asyncio.to_thread(
                    self.session.content_store(read.store).open_blob, read.digest
                )
                try:
                    frames = await self._open(call_id)
                    await _send_blob(frames, blob, read.size)
                finally:
                    blob.close()
            elif kind == "content_write":
                write = request.content_write
                store = self.session.content_store(write.store, write=True)
                writer = store.blob_writer(write.digest, write.size)
                frames = await self._open(call_id)
                await _receive_blob(frames, writer)
            elif kind == "content_commit":
                commit = request.content_commit
                store = self.session.content_store(commit.store, write=True)
                await asyncio.to_thread(store.commit, commit.media_type, commit.digest, commit.size)
                await self._reply(pb.Reply(call_id=call_id, content_commit=pb.ContentCommitReply()))
            elif kind == "shell":
                terminal = self.session.shell
                if terminal is None:
                    raise NotFoundError("this client offers no terminal for a debug shell")
                terminal.announce(request.shell.line)
                frames = await self._open(call_id)
                from ._shell import serve_shell  # only with --invoke

                await serve_shell(frames, terminal, await_start=request.shell.announces_start)
                await frames.drain()
            else:
                raise UsageError(f"unknown session request {kind!r}")
        except Exception as exc:  # DockyardError, OSError, or a bug: the daemon must know
            await self._fail(call_id, frames, exc)
        finally:
            if frames is not None:
                frames.cancel()

    async def _fail(self, call_id: str, frames: _ClientFrames | None, exc: BaseException) -> None:
        if frames is None:
            await self._reply(pb.Reply(call_id=call_id, error=error_to_pb(exc)))
            return
        with contextlib.suppress(SessionError):
            await frames.send(pb.Frame(error=error_to_pb(exc)))
            await frames.done_writing()
            async with asyncio.timeout(5):
                await frames.drain()


async def _receive_stream(frames: _ClientFrames, sink: FileSink) -> None:
    try:
        while True:
            frame = await frames.recv()
            if frame is None:
                raise SessionError("the daemon ended the export stream before its end")
            kind = frame.WhichOneof("kind")
            if kind == "error":
                raise error_from_pb(frame.error)
            if kind != "bytes":
                raise SessionError(f"unexpected {kind!r} frame in an export stream")
            if frame.bytes.data:
                await sink.write(frame.bytes.data)
            if frame.bytes.eof:
                break
        await sink.commit()
    except BaseException:
        sink.abort()
        raise
    await frames.send(pb.Frame(finish=pb.Finish(files=1, bytes=sink.bytes)))
    await frames.drain()


_BLOB_CHUNK = 256 << 10


async def _send_blob(frames: _ClientFrames, blob: BinaryIO, size: int) -> None:
    """A blob of a content store to the daemon (which checks it): at most ``size`` bytes
    and one more (so that a blob longer than announced is noticed), then ``eof``."""
    left = size + 1
    while left > 0:
        data = await asyncio.to_thread(blob.read, min(_BLOB_CHUNK, left))
        if not data:
            break
        left -= len(data)
        await frames.send(pb.Frame(bytes=pb.Bytes(data=data)))
    await frames.send(pb.Frame(bytes=pb.Bytes(eof=True)))
    await frames.drain()


async def _receive_blob(frames: _ClientFrames, writer: BlobWriter) -> None:
    """A blob from the daemon into a content store: published only when complete and
    correct (see :class:`~dockyard.session._content.BlobWriter`)."""
    try:
        while True:
            frame = await frames.recv()
            if frame is None:
                raise SessionError("the daemon ended a blob before its end")
            kind = frame.WhichOneof("kind")
            if kind == "error":
                raise error_from_pb(frame.error)
            if kind != "bytes":
                raise SessionError(f"unexpected {kind!r} frame in a blob")
            if frame.bytes.data:
                await asyncio.to_thread(writer.write, frame.bytes.data)
            if frame.bytes.eof:
                break
        await asyncio.to_thread(writer.commit)
    except BaseException:
        writer.abort()
        raise
    await frames.send(pb.Frame(finish=pb.Finish(files=1, bytes=writer.written)))
    await frames.drain()


async def _relay(frames: _ClientFrames, channel: ByteChannel) -> None:
    """Relay an SSH agent connection: daemon frames to the agent and back."""

    async def to_agent() -> None:
        while True:
            frame = await frames.recv()
            if frame is None or frame.WhichOneof("kind") != "bytes":
                break
            if frame.bytes.data:
                await channel.write(frame.bytes.data)
            if frame.bytes.eof:
                break
        await channel.write_eof()

    async def from_agent() -> None:
        while True:
            data = await channel.read()
            if not data:
                await frames.send(pb.Frame(bytes=pb.Bytes(eof=True)))
                return
            await frames.send(pb.Frame(bytes=pb.Bytes(data=data)))

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(to_agent())
            group.create_task(from_agent())
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    await frames.drain()


async def attach(session: Session, channel: Any, *, wait: float = 10.0) -> Attachment:
    """Attach ``session`` to the daemon behind ``channel`` (a ``grpc.aio.Channel``; see
    :data:`~dockyard.session.CHANNEL_OPTIONS`) and serve it in the background.

    Raises :class:`~dockyard.core.SessionError` when the daemon refuses the session (a
    duplicate id, another protocol version) or does not answer within ``timeout``.
    """
    info = session.info()
    call = channel.stream_stream(
        ATTACH,
        request_serializer=pb.ClientMessage.SerializeToString,
        response_deserializer=pb.ServerMessage.FromString,
    )()
    hello = pb.Hello(
        version=VERSION,
        session_id=info.id,
        name=info.name,
        shared_key=info.shared_key,
        directories=sorted(info.directories),
        ssh_ids=sorted(info.ssh_ids),
        exports=sorted(info.exports),
        secrets=info.secrets,
        credentials=info.credentials,
        content_stores=[
            pb.ContentStore(id=id, writable=id in info.writable_stores)
            for id in sorted(info.content_stores)
        ],
        shell=info.shell,
    )
    try:
        async with asyncio.timeout(wait):
            await call.write(pb.ClientMessage(hello=hello))
            first = await call.read()
    except TimeoutError:
        call.cancel()
        raise SessionError(f"the daemon did not accept the session within {wait:g}s") from None
    except grpc.RpcError as exc:
        call.cancel()
        raise SessionError(f"cannot attach the session: {_describe(exc)}") from exc
    if first is grpc.aio.EOF or first.WhichOneof("kind") != "welcome":
        call.cancel()
        raise SessionError("the daemon did not accept the session")
    return Attachment(session, channel, call)
