"""Layer 0: digests, the error tree, progress events, platforms. Standard library only.

``dockyard.core.singleflight`` (asyncio) is imported on its own where needed.
"""

from ._digest import Digest, sha256_digest
from ._errors import (
    AuthError,
    CancelledError,
    ConfigError,
    ContentError,
    DockyardError,
    ExecError,
    FrontendError,
    InternalError,
    InvalidDefinitionError,
    NotFoundError,
    PathEscapeError,
    RegistryError,
    SessionError,
    SourceLocation,
    SourceRange,
    UsageError,
    VertexRef,
    error_from_record,
)
from ._platform import Platform, host_platform
from ._progress import (
    BuildWarning,
    CollectingReporter,
    Event,
    NullReporter,
    Reporter,
    TeeReporter,
    VertexLog,
    VertexProgress,
    VertexStatus,
    now,
)

__all__ = [
    "AuthError",
    "BuildWarning",
    "CancelledError",
    "CollectingReporter",
    "ConfigError",
    "ContentError",
    "Digest",
    "DockyardError",
    "Event",
    "ExecError",
    "FrontendError",
    "InternalError",
    "InvalidDefinitionError",
    "NotFoundError",
    "NullReporter",
    "PathEscapeError",
    "Platform",
    "RegistryError",
    "Reporter",
    "SessionError",
    "SourceLocation",
    "SourceRange",
    "TeeReporter",
    "UsageError",
    "VertexLog",
    "VertexProgress",
    "VertexRef",
    "VertexStatus",
    "error_from_record",
    "host_platform",
    "now",
    "sha256_digest",
]
