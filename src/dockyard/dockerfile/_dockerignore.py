""".dockerignore files: reading them and choosing which one applies.

A ``.dockerignore`` has one pattern per line (see :mod:`dockyard.core.pathmatch`);
lines starting with ``#`` are comments, blank lines are skipped, surrounding blanks are
trimmed, ``!`` re-includes, and each pattern is cleaned (``./a`` → ``a``, ``/a`` → ``a``).

Which file applies: ``<Dockerfile name>.dockerignore`` next to the Dockerfile (e.g.
``build/app.Dockerfile.dockerignore`` for ``build/app.Dockerfile``) wins over
``.dockerignore`` at the root of the build context.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import FrontendError, NotFoundError, SourceLocation, SourceRange
from dockyard.core.pathmatch import PatternError, PatternMatcher, clean_path

__all__ = [
    "DOCKERIGNORE",
    "IgnoreFile",
    "dockerignore_candidates",
    "load_dockerignore",
    "parse_dockerignore",
    "read_dockerignore",
]

DOCKERIGNORE = ".dockerignore"


@dataclass(frozen=True, slots=True, kw_only=True)
class IgnoreFile:
    """The patterns of an ignore file, with the line each came from."""

    patterns: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()
    filename: str = DOCKERIGNORE

    def matcher(self) -> PatternMatcher:
        """A :class:`PatternMatcher` for these patterns; a malformed pattern raises
        :class:`FrontendError` at its line."""
        try:
            return PatternMatcher(self.patterns)
        except PatternError:
            pass
        for pattern, line in zip(self.patterns, self.lines, strict=True):
            try:
                PatternMatcher([pattern])
            except PatternError as exc:
                raise FrontendError(
                    str(exc),
                    locations=(
                        SourceLocation(filename=self.filename, ranges=(SourceRange(line, line),)),
                    ),
                ) from None
        raise AssertionError("unreachable: some pattern failed")  # pragma: no cover


def parse_dockerignore(data: bytes | str, *, filename: str = DOCKERIGNORE) -> IgnoreFile:
    """Parse the content of an ignore file (see module doc for the rules)."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    if text.startswith("\ufeff"):
        text = text[1:]
    patterns: list[str] = []
    lines: list[int] = []
    for number, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
        lines.append(number)
    return IgnoreFile(patterns=tuple(patterns), lines=tuple(lines), filename=filename)


def read_dockerignore(data: bytes | str) -> tuple[str, ...]:
    """Just the patterns of an ignore file's content, in order."""
    return parse_dockerignore(data).patterns


def dockerignore_candidates(dockerfile: str) -> tuple[str, str]:
    """The ignore files to try, best first: ``<dockerfile>.dockerignore`` (a path
    relative to wherever ``dockerfile`` is) and ``.dockerignore`` in the context root."""
    return dockerfile + DOCKERIGNORE, DOCKERIGNORE


def load_dockerignore(context: Path, dockerfile: Path | None = None) -> IgnoreFile:
    """Read the ignore file that applies to a build of ``context`` with ``dockerfile``
    (an empty :class:`IgnoreFile` when there is none)."""
    candidates: list[Path] = []
    if dockerfile is not None:
        candidates.append(dockerfile.with_name(dockerfile.name + DOCKERIGNORE))
    candidates.append(context / DOCKERIGNORE)
    for candidate in candidates:
        try:
            data = candidate.read_bytes()
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            raise NotFoundError(f"{candidate}: is a directory, not an ignore file") from None
        except OSError as exc:
            raise NotFoundError(f"{candidate}: cannot read: {exc.strerror}") from exc
        name = posixpath.basename(str(candidate))
        return parse_dockerignore(data, filename=name)
    return IgnoreFile()
