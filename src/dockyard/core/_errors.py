"""The one error tree of Dockyard.

Every error a user can see is a :class:`DockyardError`. Foreign exceptions are translated
at the boundary where they happen (``raise NotFoundError(...) from exc``); code above that
boundary never catches ``OSError`` or ``grpc.RpcError`` to guess what went wrong::

    DockyardError                  base; ``exit_code`` 1, ``locations``, ``vertex``
    ├── UsageError                 bad command-line or API arguments (exit code 2)
    ├── ConfigError                a configuration file or value is invalid (exit code 2)
    ├── InvalidDefinitionError     an LLB Definition that cannot be loaded; names the op
    ├── FrontendError              a build description is wrong (Dockerfile syntax/semantics)
    ├── NotFoundError              a named thing does not exist (file, stage, image, ref)
    ├── PathEscapeError            a path would resolve outside its root
    ├── ContentError               a blob does not match its digest, or is corrupt/truncated
    ├── RegistryError              a registry request failed
    │   └── AuthError              credentials missing or refused
    ├── SessionError               the client session is gone or refused a request
    ├── ExecError                  a process exited non-zero (args, exit status, log tail)
    ├── CancelledError             the build was cancelled
    └── InternalError              a bug: an invariant did not hold

``vertex`` (a :class:`VertexRef`) says which step failed; ``locations`` point into the
build description (``Dockerfile:7``). Both are filled in by the layer that knows them —
the solver adds the vertex, the frontend adds source locations — with :meth:`with_vertex`
and :meth:`with_locations`, which return the same error enriched.

Errors cross process boundaries (gRPC) as plain records: :meth:`DockyardError.to_record`
and :func:`error_from_record` round-trip the class, message and context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "CancelledError",
    "ConfigError",
    "ContentError",
    "DockyardError",
    "ExecError",
    "FrontendError",
    "InternalError",
    "InvalidDefinitionError",
    "NotFoundError",
    "PathEscapeError",
    "RegistryError",
    "SessionError",
    "SourceLocation",
    "SourceRange",
    "UsageError",
    "VertexRef",
    "error_from_record",
    "first_error",
]


@dataclass(frozen=True, slots=True)
class SourceRange:
    """Lines ``start``..``end`` (1-based, inclusive) and optional 1-based columns."""

    start: int
    end: int
    start_column: int = 0
    end_column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceLocation:
    """Where in a build description something comes from: ``Dockerfile:7``."""

    filename: str
    ranges: tuple[SourceRange, ...] = ()
    data: bytes | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        if not self.ranges:
            return self.filename
        first = self.ranges[0]
        if first.end > first.start:
            return f"{self.filename}:{first.start}-{first.end}"
        return f"{self.filename}:{first.start}"

    def lines(self) -> list[str]:
        """The source lines this location covers, when the file content is attached."""
        if self.data is None or not self.ranges:
            return []
        text = self.data.decode("utf-8", "replace").splitlines()
        out: list[str] = []
        for rng in self.ranges:
            out.extend(text[max(rng.start - 1, 0) : rng.end])
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class VertexRef:
    """Names a step of a build: its digest and its display name."""

    digest: str
    name: str

    def __str__(self) -> str:
        return self.name or self.digest


class DockyardError(Exception):
    """Base of every error Dockyard reports. ``str(err)`` is the user-facing message."""

    exit_code: ClassVar[int] = 1
    _registry: ClassVar[dict[str, type[DockyardError]]] = {}

    def __init__(
        self,
        message: str,
        *,
        locations: tuple[SourceLocation, ...] = (),
        vertex: VertexRef | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.locations = locations
        self.vertex = vertex

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DockyardError._registry[cls.__name__] = cls

    def __str__(self) -> str:
        if self.locations:
            return f"{self.locations[0]}: {self.message}"
        return self.message

    def with_vertex(self, vertex: VertexRef) -> DockyardError:
        """Attach the failing step unless a more specific one is already attached."""
        if self.vertex is None:
            self.vertex = vertex
        return self

    def with_locations(self, locations: tuple[SourceLocation, ...]) -> DockyardError:
        """Attach source locations unless some are already attached."""
        if not self.locations:
            self.locations = locations
        return self

    def _extra(self) -> dict[str, Any]:
        return {}

    def to_record(self) -> dict[str, Any]:
        """A JSON-able record of this error (class, message, context) for the wire."""
        record: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        bases = [
            c.__name__
            for c in type(self).__mro__[1:]
            if issubclass(c, DockyardError) and c is not DockyardError
        ]
        if bases:  # for a reader that does not know this class (not imported there)
            record["bases"] = bases
        if self.vertex is not None:
            record["vertex"] = {"digest": self.vertex.digest, "name": self.vertex.name}
        if self.locations:
            record["locations"] = [
                {
                    "filename": loc.filename,
                    "ranges": [[r.start, r.end, r.start_column, r.end_column] for r in loc.ranges],
                }
                for loc in self.locations
            ]
        extra = self._extra()
        if extra:
            record["extra"] = extra
        return record


DockyardError._registry["DockyardError"] = DockyardError


class UsageError(DockyardError):
    """Bad command-line or API arguments."""

    exit_code: ClassVar[int] = 2


class ConfigError(DockyardError):
    """A configuration file or value is invalid."""

    exit_code: ClassVar[int] = 2


class InvalidDefinitionError(DockyardError):
    """An LLB Definition that cannot be loaded (corrupt bytes, bad references, cycles)."""


class FrontendError(DockyardError):
    """A build description (Dockerfile, build file) is invalid; carries source locations."""


class NotFoundError(DockyardError):
    """A named thing (file, stage, image, ref, blob) does not exist."""


class PathEscapeError(DockyardError):
    """A path from untrusted input would resolve outside its root."""


class ContentError(DockyardError):
    """A blob does not match its digest or size, or an archive is corrupt."""


class RegistryError(DockyardError):
    """A registry request failed."""


class AuthError(RegistryError):
    """Credentials are missing or were refused."""


class SessionError(DockyardError):
    """The client session is gone or refused a request."""


class UnreachableError(DockyardError):
    """The daemon cannot be reached (no socket, refused, dropped): nothing was solved."""


class CancelledError(DockyardError):
    """The build was cancelled (by the user, a disconnect or a failing sibling step)."""


class InternalError(DockyardError):
    """An invariant did not hold: a bug in Dockyard."""


class ExecError(DockyardError):
    """A process in a build step exited with a status it was not allowed to."""

    def __init__(
        self,
        message: str,
        *,
        args: tuple[str, ...] = (),
        exit_status: int = 0,
        log_tail: tuple[str, ...] = (),
        locations: tuple[SourceLocation, ...] = (),
        vertex: VertexRef | None = None,
    ) -> None:
        super().__init__(message, locations=locations, vertex=vertex)
        self.process_args = args
        self.exit_status = exit_status
        self.log_tail = log_tail

    def _extra(self) -> dict[str, Any]:
        return {
            "args": list(self.process_args),
            "exit_status": self.exit_status,
            "log_tail": list(self.log_tail),
        }


def error_from_record(record: dict[str, Any]) -> DockyardError:
    """Rebuild an error from :meth:`DockyardError.to_record` output: its class, else (a
    class this process has not imported, like the LLB solver's ``EntitlementError`` in a
    daemon's client) the nearest of its bases it knows, else :class:`DockyardError`."""
    registry = DockyardError._registry
    names = [str(record.get("type")), *(str(b) for b in record.get("bases") or ())]
    cls = next((registry[n] for n in names if n in registry), DockyardError)
    message = str(record.get("message", ""))
    vertex = None
    if isinstance(record.get("vertex"), dict):
        vertex = VertexRef(
            digest=str(record["vertex"]["digest"]), name=str(record["vertex"]["name"])
        )
    locations = tuple(
        SourceLocation(
            filename=str(loc["filename"]),
            ranges=tuple(SourceRange(*(int(x) for x in rng)) for rng in loc.get("ranges", [])),
        )
        for loc in record.get("locations", [])
    )
    extra = record.get("extra") or {}
    if cls is ExecError:
        return ExecError(
            message,
            args=tuple(str(a) for a in extra.get("args", [])),
            exit_status=int(extra.get("exit_status", 0)),
            log_tail=tuple(str(line) for line in extra.get("log_tail", [])),
            locations=locations,
            vertex=vertex,
        )
    return cls(message, locations=locations, vertex=vertex)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to report out of a task group (nested groups flattened; a user
    sees one clear error, not a tree): the first Dockyard error, else the first other
    ``Exception`` (not the cancellations the failure caused in sibling tasks), else the
    first of them all."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, DockyardError):
            return exc
    for exc in leaves:
        if isinstance(exc, Exception):
            return exc
    return leaves[0] if leaves else group
