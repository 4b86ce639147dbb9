"""Layer 5: source ops — the resolvers the LLB solver delegates to by scheme.

The engine builds one of each and registers it in ``Worker.sources``::

    unpacker = LayerUnpacker(cache, content)          # shared: images share layers
    sources = {
        "local": LocalSource(cache=cache, sessions=sessions, session_key=SESSION_ID),
        "docker-image": ImageSource(
            cache=cache, content=content, registry=registry_config,
            sessions=sessions, session_key=SESSION_ID, images=image_store,
            unpacker=unpacker,
        ),
        "oci-layout": OCILayoutSource(cache=cache, content=content, unpacker=unpacker),
        **remote_sources(cache, secrets_key=SECRETS, ssh_key=SSH_AGENTS),  # git, http(s)
    }

- :class:`LocalSource` — ``local://NAME``: the client's directory synced through its
  session into a new layer over its previous snapshot (only the changes are written;
  an unchanged directory reuses the previous snapshot);
- :class:`ImageSource` — ``docker-image://REF`` with resolve modes ``default`` /
  ``pull`` / ``local`` (local image store, registry); also the frontends' image config
  resolver (:meth:`ImageSource.resolve_image_config`, :meth:`ImageSource.meta_resolver`);
- :class:`OCILayoutSource` — ``oci-layout://STORE[:TAG][@DIGEST]``: an image from an OCI
  layout directory or tarball, or from a layout the client offers as a content store
  through its session (:class:`ClientStore`, :func:`fetch_client_blob`);
- :class:`LayerUnpacker` — layers applied into chains of committed snapshots keyed by
  chain id, each layer unpacked once and shared between images;
- :class:`GitSource` — ``git://`` repositories at any ref with the real ``git`` (keyed by
  commit, a bare-repository cache, submodules, credentials from the session);
- :class:`HttpSource` — ``http(s)://`` files (pins, ETag/Last-Modified re-validation,
  retries and limits);
- remote build contexts (:func:`parse_remote_context`, :class:`GitContext`,
  :class:`HttpContext`, :func:`read_context_stream`): the pieces of ``dockyard build URL``.

``scratch`` is no source op: LLB models it as "no input" (an empty Definition or an
input index of -1), which the solver and the file ops handle.

The resolvers satisfy ``dockyard.llbsolver.SourceResolver`` structurally (this layer
sits below ``llbsolver``): see :mod:`dockyard.source.types`.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

from .types import LocalImages, SourceOpRequest

if TYPE_CHECKING:
    from ._git import (
        GIT_SNAPSHOT_LABEL,
        GitCredentials,
        GitInstance,
        GitSource,
        GitStatistics,
        ResolvedRef,
    )
    from ._git_url import GitRemote, GitSpec, redact_url
    from ._http import (
        DownloadedFile,
        HttpInstance,
        HttpLimits,
        HttpSource,
        HttpSpec,
        HttpStatistics,
    )
    from ._image import (
        FrontendImageResolver,
        ImageInstance,
        ImageRequest,
        ImageSource,
        PinnedImage,
    )
    from ._layers import (
        CHAIN_ID_LABEL,
        BlobStream,
        LayerSpec,
        LayerUnpacker,
        UnpackStatistics,
        chain_ids,
    )
    from ._local import CONTENT_LABEL, LocalInstance, LocalSource, LocalSpec, LocalStatistics
    from ._ocilayout import (
        ClientStore,
        LayoutImage,
        LayoutLocation,
        LayoutRef,
        OCILayoutInstance,
        OCILayoutSource,
        fetch_client_blob,
    )
    from ._registry import SessionCredentials, StoreSink
    from ._remote_context import (
        ContextFormat,
        FetchedContext,
        GitContext,
        HttpContext,
        context_stream,
        fetch_git_context,
        fetch_http_context,
        parse_remote_context,
        read_context_head,
        read_context_stream,
        remote_sources,
        sniff_context,
    )

# Each resolver loads on first use: the engine registers git and http(s) resolvers that
# load their modules only when a build uses them, and the client detects remote contexts
# without loading the image or layer code.
_LAZY = {
    "GIT_SNAPSHOT_LABEL": "._git",
    "GitCredentials": "._git",
    "GitInstance": "._git",
    "GitSource": "._git",
    "GitStatistics": "._git",
    "ResolvedRef": "._git",
    "GitRemote": "._git_url",
    "GitSpec": "._git_url",
    "redact_url": "._git_url",
    "DownloadedFile": "._http",
    "HttpInstance": "._http",
    "HttpLimits": "._http",
    "HttpSource": "._http",
    "HttpSpec": "._http",
    "HttpStatistics": "._http",
    "FrontendImageResolver": "._image",
    "ImageInstance": "._image",
    "ImageRequest": "._image",
    "ImageSource": "._image",
    "PinnedImage": "._image",
    "CHAIN_ID_LABEL": "._layers",
    "BlobStream": "._layers",
    "LayerSpec": "._layers",
    "LayerUnpacker": "._layers",
    "UnpackStatistics": "._layers",
    "chain_ids": "._layers",
    "CONTENT_LABEL": "._local",
    "LocalInstance": "._local",
    "LocalSource": "._local",
    "LocalSpec": "._local",
    "LocalStatistics": "._local",
    "ClientStore": "._ocilayout",
    "LayoutImage": "._ocilayout",
    "LayoutLocation": "._ocilayout",
    "LayoutRef": "._ocilayout",
    "fetch_client_blob": "._ocilayout",
    "OCILayoutInstance": "._ocilayout",
    "OCILayoutSource": "._ocilayout",
    "SessionCredentials": "._registry",
    "StoreSink": "._registry",
    "ContextFormat": "._remote_context",
    "FetchedContext": "._remote_context",
    "GitContext": "._remote_context",
    "HttpContext": "._remote_context",
    "fetch_git_context": "._remote_context",
    "fetch_http_context": "._remote_context",
    "parse_remote_context": "._remote_context",
    "read_context_head": "._remote_context",
    "read_context_stream": "._remote_context",
    "context_stream": "._remote_context",
    "remote_sources": "._remote_context",
    "sniff_context": "._remote_context",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CHAIN_ID_LABEL",
    "CONTENT_LABEL",
    "GIT_SNAPSHOT_LABEL",
    "BlobStream",
    "ClientStore",
    "ContextFormat",
    "DownloadedFile",
    "FetchedContext",
    "FrontendImageResolver",
    "GitContext",
    "GitCredentials",
    "GitInstance",
    "GitRemote",
    "GitSource",
    "GitSpec",
    "GitStatistics",
    "HttpContext",
    "HttpInstance",
    "HttpLimits",
    "HttpSource",
    "HttpSpec",
    "HttpStatistics",
    "ImageInstance",
    "ImageRequest",
    "ImageSource",
    "LayerSpec",
    "LayerUnpacker",
    "LayoutImage",
    "LayoutLocation",
    "LayoutRef",
    "LocalImages",
    "LocalInstance",
    "LocalSource",
    "LocalSpec",
    "LocalStatistics",
    "OCILayoutInstance",
    "OCILayoutSource",
    "PinnedImage",
    "ResolvedRef",
    "SessionCredentials",
    "SourceOpRequest",
    "StoreSink",
    "UnpackStatistics",
    "chain_ids",
    "context_stream",
    "fetch_client_blob",
    "fetch_git_context",
    "fetch_http_context",
    "parse_remote_context",
    "read_context_head",
    "read_context_stream",
    "redact_url",
    "remote_sources",
    "sniff_context",
]
