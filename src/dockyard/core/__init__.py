"""Layer 0: digests, the error tree, progress events, platforms. Standard library only.

``dockyard.core.singleflight`` (asyncio) is imported on its own where needed.
"""

from ._digest import Digest, sha256_digest
from ._entitlements import Entitlement
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
from .fspath import (
    clean_rel,
    join_within,
    mkdir_all_in_root,
    open_dir_in_root,
    open_in_root,
    resolve_in_root,
)
from .pathmatch import MatchState, PatternError, PatternMatcher

__all__ = [
    "AuthError",
    "BuildWarning",
    "CancelledError",
    "CollectingReporter",
    "ConfigError",
    "ContentError",
    "Digest",
    "DockyardError",
    "Entitlement",
    "Event",
    "ExecError",
    "FrontendError",
    "InternalError",
    "InvalidDefinitionError",
    "MatchState",
    "NotFoundError",
    "NullReporter",
    "PathEscapeError",
    "PatternError",
    "PatternMatcher",
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
    "clean_rel",
    "error_from_record",
    "host_platform",
    "join_within",
    "mkdir_all_in_root",
    "now",
    "open_dir_in_root",
    "open_in_root",
    "resolve_in_root",
    "sha256_digest",
]
