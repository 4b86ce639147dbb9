"""``WWW-Authenticate`` challenges (RFC 7235) and token scopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Challenge", "merge_scopes", "parse_challenges", "repository_scope"]

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One authentication challenge: ``scheme`` (lower case: ``basic``, ``bearer``) and
    its parameters (names lower-cased: ``realm``, ``service``, ``scope``, ``error``)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())

    @property
    def error(self) -> str:
        return self.params.get("error", "")


class _Scanner:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def skip_separators(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t,":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def token68(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] in "-._~+/"
        ):
            self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] == "=":
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        # At the opening quote. An unterminated string runs to the end (be lenient).
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                break
            else:
                out.append(ch)
        return "".join(out)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse every challenge in the given ``WWW-Authenticate`` header values.

    Handles several challenges in one header (``Basic realm="x", Bearer realm="y"``),
    quoted strings with escapes, unquoted values and token68 credentials. Malformed
    pieces are skipped rather than failing: a registry's odd header should still leave
    the challenges that can be read.
    """
    out: list[Challenge] = []
    for header in headers:
        s = _Scanner(header)
        while True:
            s.skip_separators()
            scheme = s.token()
            if not scheme:
                if s.peek() == "":
                    break
                s.pos += 1  # junk: skip a character and try again
                continue
            params: dict[str, str] = {}
            s.skip_space()
            # Parameters until the next "<token> <not =>" (the next scheme) or the end.
            while True:
                s.skip_separators()
                mark = s.pos
                name = s.token()
                if not name:
                    if s.peek() and s.peek() not in ",":
                        value = s.token68()
                        if value and not params:
                            params[""] = value
                            continue
                        if not value:
                            s.pos += 1
                            continue
                    break
                s.skip_space()
                if s.peek() != "=":
                    if not params and s.peek() in ("", ","):
                        params[""] = name  # a token68 credential
                        continue
                    s.pos = mark  # a new challenge's scheme
                    break
                s.pos += 1
                s.skip_space()
                if s.peek() == "=":  # token68 ending in '=' after a name: not a param
                    s.pos = mark
                    value = s.token68()
                    params.setdefault("", value)
                    continue
                value = s.quoted() if s.peek() == '"' else s.token()
                params.setdefault(name.lower(), value)
            out.append(Challenge(scheme=scheme.lower(), params=MappingProxyType(params)))
    return out


def repository_scope(repository: str, actions: Iterable[str]) -> str:
    """``repository:<name>:<actions>`` with actions sorted (``pull,push``)."""
    return f"repository:{repository}:{','.join(sorted(set(actions)))}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Combine scopes on the same resource (``pull`` + ``push`` → ``pull,push``), sorted.

    Scopes that are not ``type:name:actions`` are kept as they are.
    """
    merged: dict[tuple[str, str], set[str]] = {}
    opaque: set[str] = set()
    for scope in scopes:
        kind, sep, rest = scope.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not name:
            opaque.add(scope)
            continue
        merged.setdefault((kind, name), set()).update(a for a in actions.split(",") if a)
    out = {f"{kind}:{name}:{','.join(sorted(actions))}" for (kind, name), actions in merged.items()}
    return tuple(sorted(out | opaque))
