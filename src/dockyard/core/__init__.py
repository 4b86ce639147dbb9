"""Layer 0: digests, the error tree, progress events, platforms. Standard library only.

``dockyard.core.singleflight`` and ``dockyard.core.procs`` (asyncio) are imported on their
own where needed.
"""

from typing import TYPE_CHECKING

from dockyard._lazy import lazy_getattr

if TYPE_CHECKING:
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
    from ._platform import Platform, host_platform, normalize_platforms
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

_LAZY = {
    "Digest": "._digest",
    "sha256_digest": "._digest",
    "Entitlement": "._entitlements",
    "AuthError": "._errors",
    "CancelledError": "._errors",
    "ConfigError": "._errors",
    "ContentError": "._errors",
    "DockyardError": "._errors",
    "ExecError": "._errors",
    "FrontendError": "._errors",
    "InternalError": "._errors",
    "InvalidDefinitionError": "._errors",
    "NotFoundError": "._errors",
    "PathEscapeError": "._errors",
    "RegistryError": "._errors",
    "SessionError": "._errors",
    "SourceLocation": "._errors",
    "SourceRange": "._errors",
    "UsageError": "._errors",
    "VertexRef": "._errors",
    "error_from_record": "._errors",
    "Platform": "._platform",
    "host_platform": "._platform",
    "normalize_platforms": "._platform",
    "BuildWarning": "._progress",
    "CollectingReporter": "._progress",
    "Event": "._progress",
    "NullReporter": "._progress",
    "Reporter": "._progress",
    "TeeReporter": "._progress",
    "VertexLog": "._progress",
    "VertexProgress": "._progress",
    "VertexStatus": "._progress",
    "now": "._progress",
    "clean_rel": ".fspath",
    "join_within": ".fspath",
    "mkdir_all_in_root": ".fspath",
    "open_dir_in_root": ".fspath",
    "open_in_root": ".fspath",
    "resolve_in_root": ".fspath",
    "MatchState": ".pathmatch",
    "PatternError": ".pathmatch",
    "PatternMatcher": ".pathmatch",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

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
    "normalize_platforms",
    "now",
    "open_dir_in_root",
    "open_in_root",
    "resolve_in_root",
    "sha256_digest",
]
