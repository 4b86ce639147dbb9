"""The seams of ``dockyard.source``: what a resolver is handed, and what it needs from the
engine that it may not import.

The source layer (5) sits below ``dockyard.llbsolver`` (7), which owns the protocols the
resolvers here satisfy (``SourceResolver``, ``SourceInstance``, ``SourceRequest``). So
the request is described here structurally (:class:`SourceOpRequest`, which
``llbsolver.SourceRequest`` satisfies), and job values such as the session id are read
through a :class:`~dockyard.solver.JobValue` the engine passes in when it builds a
resolver.

:class:`LocalImages` is the local image store as the image source uses it (names →
manifest descriptors; blobs in the content store).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dockyard.core import Platform, VertexRef

if TYPE_CHECKING:
    from dockyard.oci import Descriptor

__all__ = ["LocalImages", "SourceOpRequest"]


class SourceOpRequest(Protocol):
    """A source op as a resolver sees it (``dockyard.llbsolver.SourceRequest``).

    ``identifier`` is the op's identifier (``docker-image://docker.io/library/busybox:
    latest``), ``scheme`` the part before ``://``, ``path`` the part after it, ``attrs``
    the op's attributes, ``platform`` the op's platform if it has one, ``vertex`` names
    the op for errors.
    """

    @property
    def identifier(self) -> str: ...

    @property
    def scheme(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def attrs(self) -> Mapping[str, str]: ...

    @property
    def platform(self) -> Platform | None: ...

    @property
    def vertex(self) -> VertexRef: ...


class _StoredImage(Protocol):
    @property
    def target(self) -> Descriptor: ...


@runtime_checkable
class LocalImages(Protocol):
    """The local image store as image sources read it (``dockyard.content.ImageStore``).

    ``get(name)`` returns the image stored under the canonical reference ``name``
    (``docker.io/library/busybox:latest``); its ``target`` is the descriptor of a
    manifest or an index whose blobs are in the content store the image source was
    given. Raises :class:`~dockyard.core.NotFoundError` when there is none.
    """

    async def get(self, name: str) -> _StoredImage: ...
