"""The seams of the registry client: where credentials come from, where pulled blobs go,
and where pushed blobs come from.

Each is a small Protocol so that other layers implement it without importing the client:
the daemon answers :class:`CredentialsProvider` by asking the client over the session;
the content store implements :class:`BlobSink` and :class:`BlobReader`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dockyard.core import Digest

__all__ = ["BlobReader", "BlobSink", "Credentials", "CredentialsProvider"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """What to authenticate to one registry with. Secrets never appear in ``repr``.

    ``username``/``password`` for basic auth and for getting bearer tokens;
    ``identity_token`` is an OAuth2 refresh token (docker's ``identitytoken``) exchanged
    for bearer tokens instead of the password; ``registry_token`` is a bearer token sent
    as is (docker's ``registrytoken``).
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)


@runtime_checkable
class CredentialsProvider(Protocol):
    """Looks up credentials for a registry host.

    ``host`` is the normalized registry name as in image references (``docker.io``,
    ``127.0.0.1:5000``, ``ghcr.io``). Returns ``None`` when there are none (anonymous
    access is then tried). May be slow (it can run a credential helper or ask a remote
    client); the registry client calls it at most once per host and client lifetime
    unless the registry refuses what it returned. Raises a
    :class:`~dockyard.core.DockyardError` (``ConfigError``, ``AuthError``,
    ``SessionError``) when the lookup itself fails.
    """

    async def get(self, host: str) -> Credentials | None: ...


@runtime_checkable
class BlobSink(Protocol):
    """Receives one blob while it downloads; nothing becomes visible until :meth:`commit`.

    The registry client calls :meth:`write` with consecutive chunks, :meth:`reset` when a
    retry must start again from byte 0 (the server ignored a range request), and ends
    with exactly one of :meth:`commit` (after it verified digest and size) or
    :meth:`abort` (on any failure or cancellation). After :meth:`abort` no trace of the
    blob may remain; :meth:`commit` must be atomic (temp file + rename) and may verify
    again. Implementations need not be safe for concurrent use.

    A sink may set ``verifies_digest = True`` when its :meth:`commit` itself refuses
    content whose digest or size is not the one given (the content store's writer
    hashes what it writes): the client then does not hash every byte a second time.
    """

    async def write(self, data: bytes) -> None: ...

    async def reset(self) -> None: ...

    async def commit(self, digest: Digest, size: int) -> None: ...

    async def abort(self) -> None: ...


@runtime_checkable
class BlobReader(Protocol):
    """The content of a blob to push, readable more than once (uploads are retried).

    :meth:`read` yields the bytes from ``offset`` to the end, in chunks of any size. The
    client stops iterating early when an upload fails; implementations release their
    resources when the iterator is closed.
    """

    def read(self, offset: int = 0) -> AsyncIterator[bytes]: ...
