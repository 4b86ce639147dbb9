"""Shell-word lexer: quotes, escapes and ``$VAR`` / ``${VAR...}`` expansion, the way
BuildKit's ``shell.Lex`` does it (a small subset of POSIX sh; nothing is executed).

Supported forms: ``$VAR``, ``${VAR}``, ``${VAR:-w}``, ``${VAR-w}``, ``${VAR:+w}``,
``${VAR+w}``, ``${VAR:?msg}``, ``${VAR?msg}``, ``${VAR#p}``, ``${VAR##p}``, ``${VAR%p}``,
``${VAR%%p}``, ``${VAR/p/r}`` and ``${VAR//p/r}``. Positional and special parameters
(``$1``, ``$@``, ``$#`` ...) are never set. The escape character is ``\\`` or, in files
with ``# escape=`````, the backtick.

Expansion returns an :class:`ExpansionResult`: the expanded word, the same text split
into words (splitting happens after expansion, quoted blanks stay inside a word), and the
names that were looked up and found (``matched``) or not found (``unmatched``) — the
converter reports the latter as ``UndefinedVar`` build checks.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from dockyard.core import FrontendError

from ._glob import GlobPattern, GlobSyntaxError
from ._text import GO_SPACE, go_quote, is_go_space

__all__ = [
    "MAX_COPIED_CONFIG",
    "MAX_EXPANDED_TOTAL",
    "ExpansionResult",
    "ShellLex",
    "charge_config_copy",
    "expand_word",
    "expand_words",
    "expansion_budget",
]

_EOF = ""
_MAX_NESTING = 100
_MAX_EXPANDED = 1 << 20  # characters substitutions may produce for one word
MAX_EXPANDED_TOTAL = 32 << 20
"""Characters substitutions may produce in one conversion (its lint pass included): a
1 MiB value, within the word cap, copied by every line after it (``ENV Bn=$A.``) cost
a megabyte and 0.16 s a line, without bound."""


MAX_COPIED_CONFIG = 4_000_000
"""Image-config entries (``Env``, labels, ports, volumes) the stages of one conversion
may copy from their base stages in all: each stage starts from a copy of its base's
config, so a chain of stages each adding an ``ENV`` and a ``LABEL`` holds memory in the
square of its length (8000 such stages, 386 KB of Dockerfile, took 2.2 GB in the
daemon's frontend). 4 million entries is ~150 MB of peak memory and a chain of ~1600
such stages; BuildKit copies the same way and has no limit."""


class _Budget:
    __slots__ = ("copies_left", "left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.copies_left = MAX_COPIED_CONFIG


_BUDGET: ContextVar[_Budget | None] = ContextVar("dockyard.dockerfile.expansion", default=None)


@contextlib.contextmanager
def expansion_budget(*, limit: int | None = None) -> Iterator[None]:
    """Bound what substitutions produce in the enclosed conversion (or lint) to
    ``limit`` characters in all (:data:`MAX_EXPANDED_TOTAL`); within an enclosing
    budget, that one counts (tasks started inside share it: the conversions of a
    multi-platform request)."""
    if _BUDGET.get() is not None:
        yield
        return
    token = _BUDGET.set(_Budget(MAX_EXPANDED_TOTAL if limit is None else limit))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def charge_config_copy(entries: int) -> None:
    """Count ``entries`` copied from a base stage's image config against the enclosing
    budget (:func:`expansion_budget`); a :class:`ValueError` saying so past
    :data:`MAX_COPIED_CONFIG` (the caller names the ``FROM`` line)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.copies_left -= entries
    if budget.copies_left < 0:
        raise ValueError(
            f"the stages copy more than {MAX_COPIED_CONFIG} image config entries (Env, "
            "labels, ports, volumes) from their base stages in all: a chain of stages "
            "this long holds memory in the square of its length"
        )


def expansion_exhausted() -> bool:
    """Whether the enclosing budget (:func:`expansion_budget`) is spent: a caller that
    skips words it cannot expand must stop on this error instead."""
    budget = _BUDGET.get()
    return budget is not None and budget.left < 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpansionResult:
    """The outcome of expanding one word."""

    value: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


class _ShellError(Exception):
    pass


class _Words:
    # The word being built is a list of pieces: `str +=` on an attribute copies the
    # whole word each time (CPython reuses the buffer only for a local), which made a
    # value of 650 000 characters take 17 s to split.
    __slots__ = ("in_word", "parts", "size", "words")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.parts: list[str] = []
        self.size = 0
        self.in_word = False

    def _end_word(self) -> None:
        if self.in_word and self.size:
            self.words.append("".join(self.parts))
            self.parts.clear()
            self.size = 0
            self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_go_space(ch):
            self._end_word()
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.add_raw_string(ch)

    def add_string(self, text: str) -> None:
        """``add_char`` for each character of ``text``, a blank-separated piece at once."""
        for index, piece in enumerate(_BLANKS.split(text)):
            if index:
                self._end_word()
            if piece:
                self.add_raw_string(piece)

    def add_raw_string(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.size:
            self.words.append("".join(self.parts))
            self.parts.clear()
            self.size = 0
            self.in_word = False
        return self.words


_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_BLANKS = re.compile("[" + re.escape(GO_SPACE) + "]")
_NOTHING: frozenset[str] = frozenset()


class ShellLex:
    """A configured lexer. Instances are cheap and hold no per-word state between calls.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps escape
    characters, ``skip_process_quotes`` treats quotes as ordinary characters (used for
    heredoc bodies) and ``skip_unset_env`` leaves references to unset variables as
    written instead of expanding them to nothing.
    """

    __slots__ = ("escape", "raw_escapes", "raw_quotes", "skip_process_quotes", "skip_unset_env")

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_process_quotes: bool = False,
        skip_unset_env: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"invalid escape token {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    def process(self, word: str, env: Mapping[str, str]) -> ExpansionResult:
        """Expand ``word`` with ``env``; raises :class:`FrontendError` on bad syntax
        (unterminated quotes, ``${}``, unsupported modifiers, ``${VAR:?msg}``)."""
        if (
            "$" not in word
            and self.escape not in word
            and (self.skip_process_quotes or ("'" not in word and '"' not in word))
        ):
            # nothing to expand, unquote or unescape (most words of a Dockerfile): the
            # word itself, split at blanks as the character loop below would
            return ExpansionResult(
                value=word,
                words=tuple(w for w in _BLANKS.split(word) if w),
                matched=_NOTHING,
                unmatched=_NOTHING,
            )
        run = _Run(self, word, env)
        try:
            value, words = run.process_stop_on(_EOF, self.raw_escapes)
        except _ShellError as exc:
            raise FrontendError(f"failed to process {go_quote(word)}: {exc}") from None
        return ExpansionResult(
            value=value,
            words=tuple(words),
            matched=frozenset(run.matched),
            unmatched=frozenset(run.unmatched),
        )


def expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand one word (no splitting): the value ``ENV``, ``WORKDIR``, ``COPY`` ... use."""
    return ShellLex(escape).process(word, env).value


def expand_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> tuple[str, ...]:
    """Expand and split into words (``EXPOSE``)."""
    return ShellLex(escape).process(word, env).words


class _Run:
    """The state of one expansion: a cursor over the input and the names looked up."""

    __slots__ = (
        "depth",
        "env",
        "escape",
        "expanded",
        "lex",
        "matched",
        "pos",
        "raw_escapes",
        "text",
        "unmatched",
    )

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.escape = lex.escape
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        self.depth = 0
        self.expanded = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            return ch
        return _EOF

    def get_env(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
            return "", False
        self.matched.add(name)
        return value, True

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _process_stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        quotes = not self.lex.skip_process_quotes
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(result), words.get_words()
            if ch == "$":
                tmp = self.process_dollar()
                result.append(tmp)
                words.add_string(tmp)
            elif quotes and ch == "'":
                tmp = self.process_single_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            elif quotes and ch == '"':
                tmp = self.process_double_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            else:
                self.pos += 1
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise _ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        result: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            result.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise _ShellError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lex.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        result: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            result.append(ch)
        while True:
            peek = self.peek()
            if peek == _EOF:
                raise _ShellError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if peek == '"':
                ch = self.next()
                if self.lex.raw_quotes:
                    result.append(ch)
                return "".join(result)
            if peek == "$":
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following == _EOF:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def process_dollar(self) -> str:
        value = self._process_dollar()
        self.expanded += len(value)
        if self.expanded > _MAX_EXPANDED:
            # `ENV A=$A$A` forty times asks for 10 TiB (BuildKit runs out of memory);
            # no usable value is this long (Linux refuses an environment string over
            # 128 KiB at exec)
            raise _ShellError(f"substitutions produce more than {_MAX_EXPANDED} characters")
        budget = _BUDGET.get()
        if budget is not None:
            budget.left -= len(value)
            if budget.left < 0:
                raise _ShellError(
                    f"substitutions produce more than {budget.limit} characters in all"
                )
        return value

    def _process_dollar(self) -> str:
        self.next()  # the '$'
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value

        self.next()  # the '{'
        if self.depth >= _MAX_NESTING:
            # each level is a few Python frames: a word of '${a:-' 10 000 times was a
            # RecursionError (BuildKit's Go stack grows; no Dockerfile nests this deep)
            raise _ShellError(f"syntax error: substitutions nested more than {_MAX_NESTING} deep")
        self.depth += 1
        try:
            return self._process_braces()
        finally:
            self.depth -= 1

    def _process_braces(self) -> str:
        peek = self.peek()
        if peek == _EOF:
            raise _ShellError("syntax error: missing '}'")
        if peek in ("{", "}", ":"):
            raise _ShellError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        modifier = ch if ch != _EOF else "\ufffd"

        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value

        if ch in (":", "+", "-", "?", "#", "%"):
            null_is_unset = False
            if ch == ":":
                null_is_unset = True
                ch = self.next()
                modifier += ch if ch != _EOF else "\ufffd"
            raw = ch in ("#", "%")
            try:
                word, _ = self.process_stop_on("}", raw)
            except _ShellError:
                if self.peek() == _EOF:
                    raise _ShellError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + modifier + word + "}"
            if ch == "-":
                if not found or (null_is_unset and value == ""):
                    return word
                return value
            if ch == "+":
                if not found or (null_is_unset and value == ""):
                    return ""
                return word
            if ch == "?":
                if not found:
                    raise _ShellError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _ShellError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch in ("#", "%"):
                greedy = False
                if word and word[0] == ch:
                    greedy = True
                    word = word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise _ShellError(f"unsupported modifier ({modifier}) in substitution")

        if ch == "/":
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.process_stop_on("/", True)
            except _ShellError:
                if self.peek() == _EOF:
                    raise _ShellError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.process_stop_on("}", True)
            except _ShellError:
                if self.peek() == _EOF:
                    raise _ShellError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            return _pattern(pattern).replace(value, replacement, replace_all=replace_all)

        raise _ShellError(f"unsupported modifier ({modifier}) in substitution")

    def process_name(self) -> str:
        name: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if not name and ch.isdecimal():
                while self.pos < len(self.text) and self.text[self.pos].isdecimal():
                    name.append(self.text[self.pos])
                    self.pos += 1
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                self.pos += 1
                return ch
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(ch)
            self.pos += 1
        return "".join(name)


def _pattern(pattern: str, *, reverse: bool = False) -> GlobPattern:
    try:
        if reverse:
            return GlobPattern.parse_reversed(pattern)
        return GlobPattern.parse(pattern)
    except GlobSyntaxError as exc:
        raise _ShellError(str(exc)) from None


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    end = _pattern(pattern).prefix_end(value, longest=greedy)
    return value if end is None else value[end:]


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # the shortest or longest suffix is the prefix of the reversed text that the
    # reversed pattern matches
    end = _pattern(pattern, reverse=True).prefix_end(value[::-1], longest=greedy)
    return value if end is None else value[: len(value) - end]
