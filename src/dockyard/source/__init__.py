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

- :class:`LocalSource` — ``local://NAME``: the client's directory synced incrementally
  through its session into a persistent work area, committed (and reused while the
  content is the same);
- :class:`ImageSource` — ``docker-image://REF`` with resolve modes ``default`` /
  ``pull`` / ``local`` (local image store, registry); also the frontends' image config
  resolver (:meth:`ImageSource.resolve_image_config`, :meth:`ImageSource.meta_resolver`);
- :class:`OCILayoutSource` — ``oci-layout://STORE[:TAG][@DIGEST]``: an image from an OCI
  layout directory or tarball;
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
from ._ocilayout import LayoutImage, LayoutRef, OCILayoutInstance, OCILayoutSource
from ._registry import SessionCredentials, StoreSink
from ._remote_context import (
    ContextFormat,
    FetchedContext,
    GitContext,
    HttpContext,
    fetch_git_context,
    fetch_http_context,
    parse_remote_context,
    read_context_stream,
    remote_sources,
    sniff_context,
)
from .types import LocalImages, SourceOpRequest

__all__ = [
    "CHAIN_ID_LABEL",
    "CONTENT_LABEL",
    "GIT_SNAPSHOT_LABEL",
    "BlobStream",
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
    "fetch_git_context",
    "fetch_http_context",
    "parse_remote_context",
    "read_context_stream",
    "redact_url",
    "remote_sources",
    "sniff_context",
]
