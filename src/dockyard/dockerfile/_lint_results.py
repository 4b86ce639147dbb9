"""The answer of a check run (``--call=check``, BuildKit's ``frontend.lint``
subrequest) as a value: :class:`LintResults`, BuildKit's ``lint.LintResults`` document.

:meth:`LintResults.to_json` writes it as BuildKit's frontend does (``json.MarshalIndent``
of the Go structs, their field names, order and ``omitempty`` rules)::

    {"warnings": [{"ruleName", "description", "url", "detail", "location"}] | null,
     "sources": [{"filename", "data" (base64), "language": "Dockerfile"}],
     "buildError": {"message", "location"}}      # only when the checks could not run

A location is a ``pb.Location`` in source 0 (``sourceIndex`` 0 is left out, as Go does).
The source's ``definition`` (the LLB that read the Dockerfile, in BuildKit) is left out:
Dockyard reads the Dockerfile from the client's session without one.

``buildError`` holds what stopped the checks, as BuildKit's lint request reports it
rather than failing: a Dockerfile that does not parse, or ``# check=error=true`` with
warnings (``lint violation found for rules: ...``). :meth:`LintResults.from_json` reads
a document back and :meth:`LintResults.error` gives that failure as the
:class:`~dockyard.core.FrontendError` a build would have raised (at its line, with the
Dockerfile attached), for a caller that prints it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.core import (
    BuildWarning,
    DockyardError,
    FrontendError,
    SourceLocation,
    SourceRange,
    jsontext,
)

from ._gojson import dumps, location_json, put
from ._rules import warning_message

__all__ = ["LINT_VERSION", "LintFailure", "LintResults", "LintWarning"]

#: The version of BuildKit's ``frontend.lint`` subrequest this document follows.
LINT_VERSION = "1.0.0"
_LANGUAGE = "Dockerfile"


@dataclass(frozen=True, slots=True, kw_only=True)
class LintWarning:
    """One warning of a check run (BuildKit's ``lint.Warning``): the ``rule``, its
    ``description`` and ``url``, the ``detail`` the rule reported this time (the
    warning's message without the rule name and line) and where."""

    rule: str
    description: str = ""
    url: str = ""
    detail: str = ""
    location: SourceLocation | None = None

    @classmethod
    def from_warning(cls, warning: BuildWarning) -> LintWarning:
        """A build-check warning (:class:`~dockyard.core.BuildWarning`) as reported."""
        return cls(
            rule=warning.rule,
            description=warning.detail[0] if warning.detail else "",
            url=warning.url,
            detail=warning_message(warning),
            location=warning.locations[0] if warning.locations else None,
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ruleName": self.rule}
        put(out, "description", self.description)
        put(out, "url", self.url)
        put(out, "detail", self.detail)
        put(out, "location", location_json(self.location))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LintFailure:
    """What stopped a check run (BuildKit's ``lint.BuildError``): the error's message
    (without its location) and where in the Dockerfile."""

    message: str
    location: SourceLocation | None = None

    @classmethod
    def from_error(cls, error: DockyardError) -> LintFailure:
        return cls(message=error.message, location=error.locations[0] if error.locations else None)

    def as_json(self) -> dict[str, Any]:
        # ``location`` is a struct without omitempty in BuildKit: always there, maybe {}
        return {"message": self.message, "location": location_json(self.location) or {}}


@dataclass(frozen=True, slots=True, kw_only=True)
class LintResults:
    """A check run's answer: its ``warnings`` in the order they were found, the
    Dockerfile they are about (``filename``, its bytes as ``source``) and the
    ``failure`` that stopped the checks, if any."""

    warnings: tuple[LintWarning, ...] = ()
    filename: str = "Dockerfile"
    source: bytes = b""
    failure: LintFailure | None = None

    @classmethod
    def from_warnings(
        cls,
        warnings: Iterable[BuildWarning],
        *,
        filename: str,
        source: bytes,
        failure: DockyardError | None = None,
    ) -> LintResults:
        """The document of a check run that reported ``warnings`` (and, when it could
        not finish, ``failure``) about the Dockerfile ``filename`` with ``source``."""
        return cls(
            warnings=tuple(LintWarning.from_warning(w) for w in warnings),
            filename=filename,
            source=source,
            failure=LintFailure.from_error(failure) if failure is not None else None,
        )

    @property
    def status_code(self) -> int:
        """BuildKit's ``result.statuscode``: 1 when there are warnings or a failure."""
        return 1 if self.warnings or self.failure is not None else 0

    def as_json(self) -> dict[str, Any]:
        source: dict[str, Any] = {"filename": self.filename}
        put(source, "data", base64.b64encode(self.source).decode("ascii"))
        put(source, "language", _LANGUAGE)
        out: dict[str, Any] = {
            # a nil slice in Go: ``null`` when there is no warning
            "warnings": [w.as_json() for w in self.warnings] or None,
            "sources": [source],
        }
        if self.failure is not None:
            out["buildError"] = self.failure.as_json()
        return out

    def to_json(self) -> str:
        """BuildKit's ``lint.LintResults`` document (no final newline)."""
        return dumps(self.as_json())

    def error(self) -> FrontendError | None:
        """The failure as the error a build raises for it (``None``: none)."""
        if self.failure is None:
            return None
        location = self.failure.location
        if location is not None and location.data is None:
            location = SourceLocation(
                filename=location.filename, ranges=location.ranges, data=self.source or None
            )
        return FrontendError(
            self.failure.message, locations=(location,) if location is not None else ()
        )

    @classmethod
    def from_json(cls, text: str) -> LintResults:
        """Read a ``lint.LintResults`` document (as :meth:`to_json` or BuildKit writes
        it); a :class:`~dockyard.core.FrontendError` for one that is not."""
        try:
            document = jsontext.loads(text)
            return _Reader(document).results()
        except (ValueError, TypeError, KeyError, IndexError, binascii.Error) as exc:
            raise FrontendError(f"the check result is not a lint document: {exc}") from None


class _Reader:
    """Reads a decoded ``lint.LintResults`` document; wrong shapes raise ``TypeError``,
    ``KeyError`` or ``IndexError``."""

    def __init__(self, document: Any) -> None:
        self.document = _object(document)
        self.sources: list[tuple[str, bytes]] = []
        for item in self.document.get("sources") or ():
            source = _object(item)
            name = str(source.get("filename", ""))
            data = base64.b64decode(str(source.get("data", "")), validate=True)
            self.sources.append((name, data))

    def results(self) -> LintResults:
        warnings = tuple(
            LintWarning(
                rule=str(w["ruleName"]),
                description=str(w.get("description", "")),
                url=str(w.get("url", "")),
                detail=str(w.get("detail", "")),
                location=self.location(w.get("location")),
            )
            for w in map(_object, self.document.get("warnings") or ())
        )
        failure: LintFailure | None = None
        found = self.document.get("buildError")
        if found is not None:
            error = _object(found)
            failure = LintFailure(
                message=str(error["message"]), location=self.location(error.get("location"))
            )
        filename, source = self.sources[0] if self.sources else ("Dockerfile", b"")
        return LintResults(warnings=warnings, filename=filename, source=source, failure=failure)

    def location(self, value: Any) -> SourceLocation | None:
        if value is None:
            return None
        location = _object(value)
        ranges = tuple(
            SourceRange(
                int(_object(r.get("start", {})).get("line", 0)),
                int(_object(r.get("end", {})).get("line", 0)),
                int(_object(r.get("start", {})).get("character", 0)),
                int(_object(r.get("end", {})).get("character", 0)),
            )
            for r in map(_object, location.get("ranges") or ())
        )
        if not ranges:
            return None
        index = int(location.get("sourceIndex", 0))
        if index < 0:
            raise IndexError(f"sourceIndex {index}")
        filename, data = self.sources[index]
        return SourceLocation(filename=filename, ranges=ranges, data=data or None)


def _object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value
