"""Parser directives: ``# syntax=``, ``# escape=`` and ``# check=`` at the top of a file.

Directives are comments of the form ``# key=value`` before any instruction, blank line
or other comment; keys are case-insensitive and each may appear once. ``syntax`` may also
be written ``// syntax=...`` or as a JSON object, and a leading ``#!`` line is skipped
when looking for it (the rules of BuildKit's ``DetectSyntax``/``ParseDirective``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.core import FrontendError, SourceLocation, SourceRange, jsontext

from ._text import GO_SPACE, parse_go_bool

__all__ = ["CheckConfig", "Directive", "DirectiveParser", "find_directive"]

VALID_DIRECTIVES = frozenset({"syntax", "escape", "check"})

# Go's \s is [\t\n\f\r ]: spell it out, Python's \s is wider.
_DIRECTIVE_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Directive:
    """One parser directive: lower-cased ``name``, its ``value`` and 1-based ``line``."""

    name: str
    value: str
    line: int


class DirectiveParser:
    """Feeds lines one at a time; stops for good at the first line that is not a directive."""

    __slots__ = ("_comment", "_line", "_seen", "done")

    def __init__(self, *, comment: str = "#", first_line: int = 0) -> None:
        self._comment = comment
        self._line = first_line
        self._seen: set[str] = set()
        self.done = False

    def parse_line(self, line: str) -> Directive | None:
        """The directive on ``line`` or ``None``; raises on a repeated directive."""
        self._line += 1
        if self.done:
            return None
        if not line.startswith(self._comment):
            self.done = True
            return None
        match = _DIRECTIVE_RE.match(line[len(self._comment) :].lstrip(GO_SPACE))
        if match is None:
            self.done = True
            return None
        key = match.group(1).lower()
        if key not in VALID_DIRECTIVES:
            self.done = True
            return None
        if key in self._seen:
            raise FrontendError(f"only one {key} parser directive can be used")
        self._seen.add(key)
        return Directive(name=key, value=match.group(2), line=self._line)


def _parse_all(text: str, parser: DirectiveParser) -> list[Directive]:
    found: list[Directive] = []
    for line in text.split("\n"):
        if parser.done:
            break
        try:
            directive = parser.parse_line(line.rstrip("\r"))
        except FrontendError:
            break
        if directive is not None:
            found.append(directive)
    return found


def find_directive(text: str, key: str, *, any_format: bool = False) -> Directive | None:
    """Find directive ``key`` in a Dockerfile's text (BOM and a ``#!`` line skipped).

    With ``any_format`` (used for ``syntax``), ``// key=value`` comments and a JSON object
    ``{"key": "value"}`` are accepted too.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    first = 0
    head, sep, rest = text.partition("\n")
    if head.startswith("#!"):
        text = rest if sep else ""
        first = 1
    for directive in _parse_all(text, DirectiveParser(first_line=first)):
        if directive.name == key:
            return directive
    if not any_format:
        return None
    for directive in _parse_all(text, DirectiveParser(comment="//", first_line=first)):
        if directive.name == key:
            return directive
    try:
        obj = jsontext.loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get(key), str):
        return Directive(name=key, value=obj[key], line=first)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckConfig:
    """Build-check settings from ``# check=skip=<rules>|all;error=<bool>;
    experimental=<rules>|all``. An experimental rule runs only when ``experimental``
    names it (or is ``all``), whatever ``skip`` says; naming a rule there also takes it
    out of ``skip`` (as BuildKit does)."""

    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False
    experimental: frozenset[str] = frozenset()
    experimental_all: bool = False

    def enabled(self, rule: str, *, experimental: bool = False) -> bool:
        if experimental:
            return self.experimental_all or rule in self.experimental
        return not self.skip_all and (rule not in self.skip or rule in self.experimental)

    @classmethod
    def parse(cls, value: str, *, location: SourceLocation | None = None) -> CheckConfig:
        """Parse the value of a ``check`` directive (or the ``BUILDKIT_DOCKERFILE_CHECK``
        build argument); raises :class:`FrontendError` for unknown options."""
        locations = (location,) if location is not None else ()
        value = value.strip()
        if not value:
            return cls()
        skip: frozenset[str] = frozenset()
        skip_all = False
        error = False
        experimental: frozenset[str] = frozenset()
        experimental_all = False
        for part in value.split(";"):
            key, sep, val = part.partition("=")
            if not sep:
                raise FrontendError(
                    f"failed to parse check options: invalid check option {part!r} "
                    "(expected skip=<rules>|all or error=<true|false>)",
                    locations=locations,
                )
            key = key.strip()
            if key == "skip":
                val = val.strip()
                if val == "all":
                    skip_all = True
                else:
                    skip = frozenset(rule.strip() for rule in val.split(","))
            elif key == "experimental":
                val = val.strip()
                if val == "all":
                    experimental_all = True
                else:
                    experimental = frozenset(rule.strip() for rule in val.split(","))
            elif key == "error":
                parsed = parse_go_bool(val.strip())
                if parsed is None:
                    raise FrontendError(
                        f"failed to parse check options: invalid value {val.strip()!r} for "
                        "error (expected true or false)",
                        locations=locations,
                    )
                error = parsed
            else:
                raise FrontendError(
                    f"failed to parse check options: invalid check option {key!r} "
                    "(expected skip, error or experimental)",
                    locations=locations,
                )
        return cls(
            skip=skip,
            skip_all=skip_all,
            error=error,
            experimental=experimental,
            experimental_all=experimental_all,
        )

    @classmethod
    def from_directive(cls, directive: Directive | None, filename: str) -> CheckConfig:
        if directive is None:
            return cls()
        location = SourceLocation(
            filename=filename, ranges=(SourceRange(directive.line, directive.line),)
        )
        return cls.parse(directive.value, location=location)
