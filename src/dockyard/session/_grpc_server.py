"""The daemon's side of the gRPC transport: :class:`SessionService` accepts clients'
``Attach`` streams, registers each as a session in a
:class:`~dockyard.session.SessionManager`, and turns the engine's calls into requests
the client answers (on ``Attach``, or by opening a ``Stream``)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from dockyard.api._gen import session_pb2 as pb
from dockyard.core import Digest, Reporter, SessionError

from ._grpc_common import (
    VERSION,
    FramesChannel,
    FramesSyncSource,
    error_from_pb,
    error_to_pb,
    recv_expect,
    send_tree,
    service_handler,
)
from ._manager import ByteReader, SessionHandle, SessionManager
from ._progress import TransferProgress
from ._values import SessionCredentials, SessionInfo, SyncRequest, SyncResult
from .types import ByteChannel, ExportStream, ShellChannel, SyncSource

__all__ = ["SessionService"]


class _ServerFrames:
    """The daemon's end of one ``Stream`` call; :meth:`finish` ends the call."""

    def __init__(self, iterator: AsyncIterator[pb.Frame], context: Any) -> None:
        self._iterator = iterator
        self._context = context
        self.done = asyncio.Event()
        self.broken = False
        self._lock = asyncio.Lock()

    async def send(self, frame: pb.Frame) -> None:
        if self.done.is_set() or self.broken:
            raise SessionError("the session stream is closed")
        try:
            async with self._lock:
                await self._context.write(frame)
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise SessionError(f"the session stream failed: {exc}") from exc

    async def recv(self) -> pb.Frame | None:
        if self.broken:
            raise SessionError("the client closed the session stream")
        try:
            return await anext(self._iterator)
        except StopAsyncIteration:
            return None
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise SessionError(f"the session stream failed: {exc}") from exc

    async def fail(self, exc: BaseException) -> None:
        """Tell the client why the call ends (best effort)."""
        if isinstance(exc, asyncio.CancelledError) or self.done.is_set() or self.broken:
            return
        with contextlib.suppress(SessionError):
            await self.send(pb.Frame(error=error_to_pb(exc)))

    def finish(self) -> None:
        self.done.set()


class _RemotePeer:
    """The engine's view of a client attached over gRPC
    (a :class:`~dockyard.session.Peer`)."""

    transport = "grpc"

    def __init__(self, service: SessionService, info: SessionInfo, context: Any) -> None:
        self._service = service
        self.info = info
        self._context = context
        self._lock = asyncio.Lock()
        self._replies: dict[str, asyncio.Future[pb.Reply]] = {}
        self._streams: dict[str, asyncio.Future[_ServerFrames]] = {}
        self._reason = ""
        self.stopped = asyncio.Event()

    @property
    def _timeout(self) -> float:
        return self._service.manager.call_timeout

    # -- Attach plumbing -------------------------------------------------------------

    def writing(self) -> asyncio.Lock:
        """Held while writing on ``Attach`` (one write at a time)."""
        return self._lock

    async def _send(self, request: pb.Request) -> None:
        if self._reason:
            raise SessionError(f"session {self.info.id} ended: {self._reason}")
        try:
            async with self._lock:
                await self._context.write(pb.ServerMessage(request=request))
        except (grpc.RpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise SessionError(f"session {self.info.id}: cannot reach the client: {exc}") from exc

    def on_reply(self, reply: pb.Reply) -> None:
        waiter = self._replies.get(reply.call_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
            return
        stream = self._streams.get(reply.call_id)
        if stream is not None and not stream.done():
            if reply.WhichOneof("kind") == "error":
                stream.set_exception(error_from_pb(reply.error))
            else:
                stream.set_exception(SessionError("the client answered a stream request wrongly"))

    def shutdown(self, reason: str) -> None:
        self._reason = reason
        futures: list[asyncio.Future[Any]] = [*self._replies.values(), *self._streams.values()]
        for future in futures:
            if not future.done():
                future.set_exception(SessionError(f"session {self.info.id} ended: {reason}"))
                future.exception()  # nobody may be waiting any more

    async def _unary(self, request: pb.Request, what: str) -> pb.Reply:
        call_id = secrets.token_hex(16)
        request.call_id = call_id
        waiter: asyncio.Future[pb.Reply] = asyncio.get_running_loop().create_future()
        self._replies[call_id] = waiter
        try:
            await self._send(request)
            reply = await waiter
        finally:
            del self._replies[call_id]
        if reply.WhichOneof("kind") == "error":
            raise error_from_pb(reply.error, what)
        return reply

    async def _open_stream(self, request: pb.Request, what: str) -> _ServerFrames:
        call_id = secrets.token_hex(16)
        request.call_id = call_id
        waiter: asyncio.Future[_ServerFrames] = asyncio.get_running_loop().create_future()
        self._streams[call_id] = waiter
        self._service._calls[call_id] = (self.info.id, waiter)
        frames: _ServerFrames | None = None
        try:
            await self._send(request)
            async with asyncio.timeout(self._timeout):
                frames = await waiter
            return frames
        except TimeoutError:
            raise SessionError(
                f"session {self.info.id}: the client did not open a stream for {what} "
                f"within {self._timeout:g}s"
            ) from None
        finally:
            del self._streams[call_id]
            self._service._calls.pop(call_id, None)
            if (
                frames is None
                and waiter.done()
                and not waiter.cancelled()
                and waiter.exception() is None
            ):
                waiter.result().finish()  # opened just as we gave up: end it

    # -- Peer ------------------------------------------------------------------------

    async def get_secret(self, id: str) -> bytes:
        reply = await self._unary(
            pb.Request(secret=pb.SecretRequest(id=id)), f"fetching secret {id!r}"
        )
        if reply.WhichOneof("kind") != "secret":
            raise SessionError("the client answered a secret request wrongly")
        return reply.secret.data

    async def get_credentials(self, host: str) -> SessionCredentials | None:
        reply = await self._unary(
            pb.Request(credentials=pb.CredentialsRequest(host=host)),
            f"asking for credentials of {host!r}",
        )
        if reply.WhichOneof("kind") != "credentials":
            raise SessionError("the client answered a credentials request wrongly")
        creds = reply.credentials
        if not creds.found:
            return None
        return SessionCredentials(
            username=creds.username,
            password=creds.password,
            identity_token=creds.identity_token,
            registry_token=creds.registry_token,
        )

    @contextlib.asynccontextmanager
    async def open_sync(self, request: SyncRequest) -> AsyncIterator[SyncSource]:
        frames = await self._open_stream(
            pb.Request(
                sync=pb.SyncRequest(
                    name=request.name,
                    include_patterns=request.include_patterns,
                    exclude_patterns=request.exclude_patterns,
                    follow_paths=request.follow_paths,
                )
            ),
            f"syncing {request.name!r}",
        )
        try:
            yield FramesSyncSource(frames)
        except BaseException as exc:
            await frames.fail(exc)
            raise
        finally:
            frames.finish()

    async def connect_ssh(self, id: str) -> ByteChannel:
        frames = await self._open_stream(pb.Request(ssh=pb.SshRequest(id=id)), f"SSH agent {id!r}")
        return FramesChannel(frames, frames.finish)

    async def export_directory(
        self,
        target: str,
        source: Path,
        reporter: Reporter | None,
        progress_digest: str,
        prefix: str = "",
    ) -> SyncResult:
        frames = await self._open_stream(
            pb.Request(export_directory=pb.ExportDirectoryRequest(target=target)),
            f"exporting to {target!r}",
        )
        progress = TransferProgress(reporter, progress_digest, target)
        try:
            entries, files, nbytes = await send_tree(
                frames, source, None, progress=progress.emit, prefix=prefix
            )
            await recv_expect(frames, "finish", f"waiting for the client to store {target!r}")
            progress.emit(files, nbytes, done=True)
            return SyncResult(entries=entries, files_transferred=files, bytes_transferred=nbytes)
        except BaseException as exc:
            await frames.fail(exc)
            raise
        finally:
            frames.finish()

    @contextlib.asynccontextmanager
    async def _sending(
        self, request: pb.Request, what: str, stored: str
    ) -> AsyncIterator[ExportStream]:
        """A stream of bytes to the client (``request`` opens it); ends with EOF and the
        client's ``finish`` once it stored them (``stored``: what the wait is for)."""
        frames = await self._open_stream(request, what)
        try:
            yield FramesChannel(frames, frames.finish)
            await frames.send(pb.Frame(bytes=pb.Bytes(eof=True)))
            await recv_expect(frames, "finish", f"waiting for the client to store {stored}")
        except BaseException as exc:
            await frames.fail(exc)
            raise
        finally:
            frames.finish()

    def export_stream(self, target: str) -> contextlib.AbstractAsyncContextManager[ExportStream]:
        return self._sending(
            pb.Request(export_stream=pb.ExportStreamRequest(target=target)),
            f"exporting to {target!r}",
            repr(target),
        )

    async def content_info(self, store: str, digest: Digest) -> int | None:
        reply = await self._unary(
            pb.Request(content_info=pb.ContentInfoRequest(store=store, digest=digest)),
            f"looking up {digest} in content store {store!r}",
        )
        if reply.WhichOneof("kind") != "content_info":
            raise SessionError("the client answered a content info request wrongly")
        return reply.content_info.size if reply.content_info.found else None

    @contextlib.asynccontextmanager
    async def content_read(
        self, store: str, digest: Digest, size: int
    ) -> AsyncIterator[ByteReader]:
        frames = await self._open_stream(
            pb.Request(content_read=pb.ContentReadRequest(store=store, digest=digest, size=size)),
            f"reading {digest} from content store {store!r}",
        )
        try:
            yield _ContentFrames(frames)
        except BaseException as exc:
            await frames.fail(exc)
            raise
        finally:
            frames.finish()

    def content_write(
        self, store: str, digest: Digest, size: int
    ) -> contextlib.AbstractAsyncContextManager[ExportStream]:
        return self._sending(
            pb.Request(content_write=pb.ContentWriteRequest(store=store, digest=digest, size=size)),
            f"writing {digest} into content store {store!r}",
            str(digest),
        )

    async def content_commit(self, store: str, media_type: str, digest: Digest, size: int) -> None:
        reply = await self._unary(
            pb.Request(
                content_commit=pb.ContentCommitRequest(
                    store=store, media_type=media_type, digest=digest, size=size
                )
            ),
            f"committing {digest} to content store {store!r}",
        )
        if reply.WhichOneof("kind") != "content_commit":
            raise SessionError("the client answered a content commit request wrongly")

    @contextlib.asynccontextmanager
    async def open_shell(self, line: str) -> AsyncIterator[ShellChannel]:
        from ._shell import FramesShell  # only for a debug shell

        frames = await self._open_stream(
            pb.Request(shell=pb.ShellRequest(line=line, announces_start=True)), "a debug shell"
        )
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    first = await frames.recv()
            except TimeoutError:
                raise SessionError(
                    f"session {self.info.id}: the client did not attach its terminal within "
                    f"{self._timeout:g}s"
                ) from None
            kind = first.WhichOneof("kind") if first is not None else None
            if first is not None and kind == "error":
                raise error_from_pb(first.error)
            if first is None or kind != "shell_start":
                raise SessionError("the client did not attach its terminal to the debug shell")
            yield FramesShell(frames, first.shell_start)
        except BaseException as exc:
            await frames.fail(exc)
            raise
        finally:
            frames.finish()

    async def aclose(self) -> None:
        self.stopped.set()  # the Attach handler returns: the client sees its session end


class _ContentFrames:
    """A blob the client sends in ``Bytes`` frames (its error frame raised)."""

    def __init__(self, frames: _ServerFrames) -> None:
        self._frames = frames
        self._eof = False

    async def read(self) -> bytes:
        while not self._eof:
            frame = await recv_expect(self._frames, "bytes", "receiving a blob")
            if frame.bytes.eof:
                self._eof = True
            if frame.bytes.data or self._eof:
                return frame.bytes.data
        return b""


class SessionService:
    """Serves the ``dockyard.session.v1.Session`` gRPC service into ``manager``.

    Add it to a ``grpc.aio.Server`` with :meth:`add_to_server` (use
    :data:`~dockyard.session.SERVER_OPTIONS` when creating the server so that vanished
    clients are noticed). Each client's ``Attach`` becomes a session registered under the
    id the client chose; when the stream ends, the session closes and every call in
    flight fails with :class:`~dockyard.core.SessionError`.
    """

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self._calls: dict[str, tuple[str, asyncio.Future[_ServerFrames]]] = {}

    def handler(self) -> grpc.GenericRpcHandler:
        return service_handler(self._attach, self._stream)

    def add_to_server(self, server: Any) -> None:
        server.add_generic_rpc_handlers((self.handler(),))

    async def _attach(
        self, request_iterator: AsyncIterator[pb.ClientMessage], context: Any
    ) -> None:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a session starts with hello")
        hello = first.hello
        if hello.version != VERSION:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session protocol version {hello.version} is not supported "
                f"(this daemon speaks version {VERSION})",
            )
        info = SessionInfo(
            id=hello.session_id,
            name=hello.name,
            shared_key=hello.shared_key,
            directories=frozenset(hello.directories),
            ssh_ids=frozenset(hello.ssh_ids),
            exports=frozenset(hello.exports),
            secrets=hello.secrets,
            credentials=hello.credentials,
            content_stores=frozenset(c.id for c in hello.content_stores),
            writable_stores=frozenset(c.id for c in hello.content_stores if c.writable),
            shell=hello.shell,
        )
        peer = _RemotePeer(self, info, context)
        reason = "the client detached"
        async with peer.writing():  # the welcome goes out before any request
            try:
                handle = self.manager.register_peer(peer)
            except SessionError as exc:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
                return
            try:
                await context.write(pb.ServerMessage(welcome=pb.Welcome(version=VERSION)))
            except BaseException:
                self._end(peer, handle, "the client disconnected")
                raise

        async def pump() -> None:
            async for message in request_iterator:
                if message.WhichOneof("kind") == "reply":
                    peer.on_reply(message.reply)

        reading = asyncio.ensure_future(pump())
        stopping = asyncio.ensure_future(peer.stopped.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                reason = "closed by the daemon"
            elif not reading.cancelled() and reading.exception() is not None:
                reason = f"the session stream failed: {reading.exception()}"
        except asyncio.CancelledError:
            reason = "the client disconnected"
            raise
        finally:
            reading.cancel()
            stopping.cancel()
            # End the session before awaiting anything: grpc may cancel this handler
            # more than once when the client vanishes, and a second CancelledError in
            # the wait below must not leave the session (and its calls) open.
            self._end(peer, handle, reason)
            await asyncio.wait({reading, stopping})

    def _end(self, peer: _RemotePeer, handle: SessionHandle, reason: str) -> None:
        peer.shutdown(reason)
        handle._mark_closed(reason)

    async def _stream(self, request_iterator: AsyncIterator[pb.Frame], context: Any) -> None:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if first.WhichOneof("kind") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a stream starts with open")
        call = self._calls.get(first.open.call_id)
        if call is None or call[0] != first.open.session_id or call[1].done():
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such session call")
            return
        del self._calls[first.open.call_id]
        frames = _ServerFrames(request_iterator, context)
        call[1].set_result(frames)
        try:
            await frames.done.wait()
        except asyncio.CancelledError:
            frames.broken = True
            raise
