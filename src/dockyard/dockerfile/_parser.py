"""Dockerfile bytes → AST: one :class:`Node` per instruction, with its line range.

This follows BuildKit's ``frontend/dockerfile/parser`` rule for rule, so that the same
file gives the same tree (and :meth:`Ast.dump` prints the same s-expressions):

- parser directives (``syntax``, ``escape``, ``check``) only before anything else;
- ``#`` comment lines are dropped, also in the middle of a continued instruction;
- a trailing escape character (``\\`` or the ``escape`` directive's backtick) continues
  the instruction on the next line; empty continuation lines are skipped with a warning;
- flags (``--name=value``) are split off the front of the arguments;
- arguments are kept per instruction family: JSON arrays, whitespace-separated words,
  key/value pairs (``ENV``, ``LABEL``), name[=value] (``ARG``), a sub-instruction
  (``ONBUILD``) or the raw rest of the line;
- heredocs (``<<EOF``, ``<<-EOF``, quoted delimiters, several per line) are read for
  ``RUN``, ``COPY`` and ``ADD`` (also behind ``ONBUILD``) in shell form.

Nothing is expanded here: variables stay as written for the later stages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dockyard.core import FrontendError, SourceLocation, SourceRange

from ._directives import Directive, DirectiveParser
from ._shell import ShellLex
from ._text import GO_SPACE, go_quote, go_quote_list, go_trim_space

__all__ = ["Ast", "Heredoc", "Node", "ParseWarning", "parse_ast", "parse_heredoc"]

# Instructions the parser knows how to split; anything else is kept (and rejected by
# the instruction stage with a suggestion).
_KNOWN = frozenset(
    {
        "add",
        "arg",
        "cmd",
        "copy",
        "entrypoint",
        "env",
        "expose",
        "from",
        "healthcheck",
        "label",
        "maintainer",
        "onbuild",
        "run",
        "shell",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)
_HEREDOC_INSTRUCTIONS = frozenset({"add", "copy", "run"})

_WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_RE = re.compile(r"(\d*)<<(-?)([^<]*)\Z")
_LEADING_TABS_RE = re.compile(r"^\t+", re.MULTILINE)
_CONTINUATION_RE = {
    "\\": re.compile(r"([^\\])\\[ \t]*\Z|^\\[ \t]*\Z"),
    "`": re.compile(r"([^`])`[ \t]*\Z|^`[ \t]*\Z"),
}
_NO_CONTINUATION = "\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class Heredoc:
    """A here-document attached to an instruction.

    ``content`` is the raw body (line endings kept); ``text`` is what the instruction
    uses (leading tabs removed for ``<<-``). ``expand`` is false when any part of the
    delimiter was quoted (``<<"EOF"``, ``<<'EOF'``): then the body is not expanded.
    """

    name: str
    fd: int = 0
    expand: bool = True
    chomp: bool = False
    content: str = ""

    @property
    def text(self) -> str:
        return chomp_heredoc(self.content) if self.chomp else self.content


def chomp_heredoc(content: str) -> str:
    return _LEADING_TABS_RE.sub("", content)


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One instruction as written.

    ``instruction`` keeps the original spelling (``RUN``, ``run``); ``keyword`` is it in
    lower case. ``args`` are the arguments after flag extraction and per-instruction
    splitting (quotes and escapes still in place, except in JSON arrays); ``json`` says
    they came from a JSON array. ``sub`` is the trigger of an ``ONBUILD``. ``original``
    is the whole instruction on one line (continuations joined) and ``start_line`` ..
    ``end_line`` its 1-based line range, heredoc bodies included.
    """

    instruction: str
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    json: bool = False
    sub: Node | None = None
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    heredocs: tuple[Heredoc, ...] = ()
    comments: tuple[str, ...] = ()

    @property
    def keyword(self) -> str:
        return self.instruction.lower()

    def dump(self) -> str:
        """This node as BuildKit's ``Node.Dump`` prints it: ``run "echo hi"``."""
        parts = [self.instruction.lower()]
        if self.flags:
            parts.append(go_quote_list(self.flags))
        if self.sub is not None:
            parts.append("(" + self.sub.dump() + ")")
        parts.extend(go_quote(arg) for arg in self.args)
        return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseWarning:
    """A problem the parser tolerates (today: empty continuation lines)."""

    message: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ast:
    """A parsed Dockerfile: its instructions, escape character, directives and warnings."""

    nodes: tuple[Node, ...]
    escape: str = "\\"
    directives: tuple[Directive, ...] = ()
    warnings: tuple[ParseWarning, ...] = ()
    filename: str = "Dockerfile"
    source: bytes = b""

    @property
    def start_line(self) -> int:
        """First line of the first instruction."""
        return self.nodes[0].start_line

    @property
    def end_line(self) -> int:
        """Last line of the last instruction."""
        return self.nodes[-1].end_line

    def dump(self) -> str:
        """The whole tree, one ``(instruction args...)`` line per instruction."""
        return "".join("(" + node.dump() + ")\n" for node in self.nodes)

    def location(self, start: int, end: int | None = None) -> SourceLocation:
        """A :class:`SourceLocation` in this file (with the file content attached)."""
        return SourceLocation(
            filename=self.filename,
            ranges=(SourceRange(start, start if end is None else end),),
            data=self.source,
        )

    def directive(self, name: str) -> Directive | None:
        for directive in self.directives:
            if directive.name == name:
                return directive
        return None


class _ParseError(Exception):
    pass


def _is_comment(line: str) -> bool:
    return line.lstrip(GO_SPACE).startswith("#")


class _State:
    __slots__ = ("continuation", "directives", "escape", "parser")

    def __init__(self) -> None:
        self.parser = DirectiveParser()
        self.escape = "\\"
        self.continuation = _CONTINUATION_RE["\\"]
        self.directives: list[Directive] = []

    def process_line(self, raw: str, *, strip_left: bool) -> tuple[str, bool]:
        token = raw.rstrip("\r\n")
        if strip_left:
            token = token.lstrip(GO_SPACE)
        directive = self.parser.parse_line(token)
        is_directive = directive is not None
        if directive is not None:
            self.directives.append(directive)
            if directive.name == "escape":
                if directive.value not in ("\\", "`"):
                    raise _ParseError(
                        f"invalid escape token '{directive.value}' does not match ` or \\"
                    )
                self.escape = directive.value
                self.continuation = _CONTINUATION_RE[directive.value]
        if _is_comment(token):
            return "", is_directive
        return token, is_directive

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        match = self.continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False


def parse_ast(data: bytes | str, *, filename: str = "Dockerfile") -> Ast:
    """Parse a Dockerfile into its :class:`Ast`.

    Raises :class:`FrontendError` located at the offending lines for malformed input
    (bad directives, non-string JSON arrays, key/value syntax, unterminated heredocs, a
    file without instructions).
    """
    if isinstance(data, str):
        source = data.encode("utf-8", "surrogateescape")
        text = data
    else:
        source = data
        text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]

    def fail(message: str, start: int, end: int | None = None) -> FrontendError:
        return FrontendError(
            message,
            locations=(
                SourceLocation(
                    filename=filename,
                    ranges=(SourceRange(max(start, 1), max(end or start, start, 1)),),
                    data=source,
                ),
            ),
        )

    lines = text.split("\n")
    trailing_newline = bool(lines) and lines[-1] == ""
    if trailing_newline:
        lines.pop()
    count = len(lines)
    state = _State()
    nodes: list[Node] = []
    warnings: list[ParseWarning] = []
    comments: list[str] = []
    current = 0
    index = 0

    while index < count:
        raw = lines[index]
        index += 1
        if _is_comment(raw):
            comment = go_trim_space(raw[1:])
            if comment == "":
                comments = []
            else:
                comments.append(comment)
        try:
            token, is_directive = state.process_line(raw, strip_left=True)
        except (_ParseError, FrontendError) as exc:
            raise fail(_message(exc), current + 1) from None
        if is_directive and comments:
            comments.pop()
        current += 1
        start = current
        token, is_end = state.trim_continuation(token)
        if is_end and token == "":
            if not _is_comment(raw):
                comments = []  # a blank line ends a description comment block
            continue
        buffer = [token]
        has_empty_continuation = False
        while not is_end and index < count:
            raw = lines[index]
            index += 1
            try:
                token, _ = state.process_line(raw, strip_left=False)
            except (_ParseError, FrontendError) as exc:
                raise fail(_message(exc), current + 1) from None
            current += 1
            if _is_comment(raw):
                continue
            if not token.lstrip(GO_SPACE):
                has_empty_continuation = True
                continue
            token, is_end = state.trim_continuation(token)
            buffer.append(token)
        line = "".join(buffer)
        if has_empty_continuation:
            warnings.append(
                ParseWarning(message=f"Empty continuation line found in: {line}", line=current)
            )
        try:
            node = _node_from_line(line, state, tuple(comments))
        except _ParseError as exc:
            raise fail(str(exc), start, current) from None

        target = node.sub if node.keyword == "onbuild" and node.sub is not None else node
        if target.keyword in _HEREDOC_INSTRUCTIONS and not target.json and "<<" in line:
            try:
                docs = _heredocs_from_line(line)
            except FrontendError as exc:
                raise fail(exc.message, start, current) from None
            filled: list[Heredoc] = []
            for doc in docs:
                body: list[str] = []
                terminated = False
                while index < count:
                    raw = lines[index]
                    index += 1
                    current += 1
                    candidate = raw.rstrip("\r\n")
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    # Keep the line ending, as BuildKit does (only the file's very last
                    # line may lack one).
                    body.append(raw + "\n" if index < count or trailing_newline else raw)
                if not terminated:
                    raise fail("unterminated heredoc", start, current)
                filled.append(_with_content(doc, "".join(body)))
            node = _replace_heredocs(node, tuple(filled))
        nodes.append(_with_lines(node, start, current))
        comments = []

    if not nodes:
        raise fail("file with no instructions", current)
    return Ast(
        nodes=tuple(nodes),
        escape=state.escape,
        directives=tuple(state.directives),
        warnings=tuple(warnings),
        filename=filename,
        source=source,
    )


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, FrontendError) else str(exc)


def _with_content(doc: Heredoc, content: str) -> Heredoc:
    return Heredoc(name=doc.name, fd=doc.fd, expand=doc.expand, chomp=doc.chomp, content=content)


def _replace_heredocs(node: Node, docs: tuple[Heredoc, ...]) -> Node:
    return Node(
        instruction=node.instruction,
        args=node.args,
        flags=node.flags,
        json=node.json,
        sub=node.sub,
        original=node.original,
        start_line=node.start_line,
        end_line=node.end_line,
        heredocs=docs,
        comments=node.comments,
    )


def _with_lines(node: Node, start: int, end: int) -> Node:
    sub = _with_lines(node.sub, start, end) if node.sub is not None else None
    return Node(
        instruction=node.instruction,
        args=node.args,
        flags=node.flags,
        json=node.json,
        sub=sub,
        original=node.original,
        start_line=start,
        end_line=end,
        heredocs=node.heredocs,
        comments=node.comments,
    )


def _node_from_line(line: str, state: _State, comments: tuple[str, ...]) -> Node:
    instruction, flags, rest = _split_command(line)
    keyword = instruction.lower()
    args: tuple[str, ...] = ()
    is_json = False
    sub: Node | None = None
    if keyword in ("add", "copy", "volume"):
        args, is_json = _parse_maybe_json_to_list(rest)
    elif keyword == "arg":
        args = tuple(_parse_words(rest, state.escape))
    elif keyword in ("cmd", "entrypoint", "run", "shell"):
        args, is_json = _parse_maybe_json(rest)
    elif keyword in ("env", "label"):
        args = _parse_name_val(rest, keyword.upper(), state.escape)
    elif keyword in ("expose", "from"):
        args = _split_whitespace(rest)
    elif keyword == "healthcheck":
        args, is_json = _parse_health_config(rest)
    elif keyword in ("maintainer", "stopsignal", "user", "workdir"):
        args = (rest,) if rest else ()
    elif keyword == "onbuild" and rest:
        sub = _node_from_line(rest, state, ())
    return Node(
        instruction=instruction,
        args=args,
        flags=tuple(flags),
        json=is_json,
        sub=sub,
        original=line,
        comments=comments,
    )


def _split_command(line: str) -> tuple[str, list[str], str]:
    parts = _WHITESPACE_RE.split(go_trim_space(line), maxsplit=1)
    instruction = parts[0]
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = _extract_builder_flags(parts[1])
    return instruction, flags, go_trim_space(rest)


def _extract_builder_flags(line: str) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words off; a lone ``--`` ends the flags."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    in_quote = False
    quote = ""
    blank_ok = False
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if not in_word and not in_quote:
            if pos == n:
                break
            if ch in GO_SPACE:
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            in_word = True
        if pos == n:
            text = "".join(word)
            if text != "--" and (blank_ok or text):
                words.append(text)
            break
        if in_word:
            if ch in GO_SPACE:
                in_word = False
                text = "".join(word)
                if text == "--":
                    return line[pos:], words
                if blank_ok or text:
                    words.append(text)
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                in_word = False
                in_quote = True
                pos += 1
                continue
            if ch == "\\":
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = line[pos]
            word.append(ch)
            pos += 1
            continue
        # in a quote
        if ch == quote:
            in_quote = False
            in_word = True
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                in_quote = False
                in_word = True
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words


def _parse_words(rest: str, escape: str) -> list[str]:
    """Words separated by blanks; quotes and escapes are kept for later processing."""
    words: list[str] = []
    builder: list[str] = []
    phase = 0  # 0: between words, 1: in a word, 2: in a quote
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == 0:
            if pos == n:
                break
            if ch in GO_SPACE:
                pos += 1
                continue
            phase = 1
        if pos == n:
            if blank_ok or builder:
                words.append("".join(builder))
            break
        if phase == 1:
            if ch in GO_SPACE:
                phase = 0
                if blank_ok or builder:
                    words.append("".join(builder))
                builder = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = 2
            if ch == escape:
                if pos + 1 == n:
                    pos += 1
                    continue
                builder.append(ch)
                pos += 1
                ch = rest[pos]
            builder.append(ch)
            pos += 1
            continue
        # phase 2: inside quotes
        if ch == quote:
            phase = 1
        if ch == escape and quote != "'":
            if pos + 1 == n:
                phase = 1
                pos += 1
                continue
            builder.append(ch)
            pos += 1
            ch = rest[pos]
        builder.append(ch)
        pos += 1
    return words


def _parse_name_val(rest: str, keyword: str, escape: str) -> tuple[str, ...]:
    """``ENV``/``LABEL`` arguments as (key, value, separator) triples.

    The separator is ``=`` for ``KEY=value`` pairs and empty for the legacy
    ``KEY value`` form, which takes the whole rest of the line as the value.
    """
    words = _parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WHITESPACE_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ParseError(
                f"{keyword} must have two arguments: {keyword} {rest} has a name but no value "
                f"(write {keyword} {rest}=value)"
            )
        return (parts[0], parts[1], "")
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise _ParseError(
                f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value"
            )
        key, _, value = word.partition("=")
        out.extend((key, value, "="))
    return tuple(out)


def _split_whitespace(rest: str) -> tuple[str, ...]:
    if not rest:
        return ()
    return tuple(_WHITESPACE_RE.split(rest))


class _NotStringArray(Exception):
    pass


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid JSON constant {name}")


def _parse_json(rest: str) -> tuple[str, ...] | None:
    """The strings of a JSON array, ``None`` when ``rest`` is not one (then the caller
    falls back to the shell form); raises for arrays holding non-strings."""
    rest = rest.lstrip(GO_SPACE)
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    for item in value:
        if not isinstance(item, str):
            raise _NotStringArray
    return tuple(value)


_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


def _parse_maybe_json(rest: str) -> tuple[tuple[str, ...], bool]:
    if not rest:
        return (), False
    try:
        parsed = _parse_json(rest)
    except _NotStringArray:
        raise _ParseError(_NOT_STRINGS) from None
    if parsed is not None:
        return parsed, True
    return (rest,), False


def _parse_maybe_json_to_list(rest: str) -> tuple[tuple[str, ...], bool]:
    try:
        parsed = _parse_json(rest)
    except _NotStringArray:
        raise _ParseError(_NOT_STRINGS) from None
    if parsed is not None:
        return parsed, True
    return _split_whitespace(rest), False


def _parse_health_config(rest: str) -> tuple[tuple[str, ...], bool]:
    sep = 0
    n = len(rest)
    while sep < n and rest[sep] not in GO_SPACE:
        sep += 1
    following = sep
    while following < n and rest[following] in GO_SPACE:
        following += 1
    if sep == 0:
        return (), False
    command, is_json = _parse_maybe_json(rest[following:])
    return (rest[:sep], *command), is_json


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word like ``<<EOF``, ``<<-"EOF"`` or ``3<<EOF`` opens, else ``None``."""
    match = _HEREDOC_RE.match(word)
    if match is None:
        return None
    fd_text, dash, rest = match.groups()
    if not rest:
        return None
    plain = ShellLex("\\", skip_unset_env=True).process(rest, {}).words
    if len(plain) != 1:
        return None
    raw = ShellLex("\\", skip_unset_env=True, raw_quotes=True).process(rest, {}).words
    if len(raw) != len(plain):
        raise FrontendError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = plain[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(
        name=name,
        fd=int(fd_text) if fd_text else 0,
        expand=quotes == raw_quotes,
        chomp=dash == "-",
    )


_HEREDOC_LEX = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)


def _heredocs_from_line(line: str) -> list[Heredoc]:
    try:
        words = _HEREDOC_LEX.process(line, {}).words
    except FrontendError:
        return []
    docs: list[Heredoc] = []
    for word in words:
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs
