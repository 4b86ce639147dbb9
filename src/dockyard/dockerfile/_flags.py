"""Instruction flags (``--name``, ``--name=value``) checked against what an instruction
accepts, with BuildKit's rules: booleans take no value or ``true``/``false``, strings need
a value, list flags may repeat, other flags may not."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._text import suggest

__all__ = ["FlagError", "FlagKind", "Flags", "parse_flags"]


class FlagKind(enum.Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"


class FlagError(Exception):
    """A flag problem; the instruction parser adds the instruction name and location."""


@dataclass(frozen=True, slots=True)
class Flags:
    """The parsed flags of one instruction."""

    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    used: tuple[str, ...] = ()

    def string(self, name: str) -> str | None:
        return self.values.get(name)

    def boolean(self, name: str) -> bool:
        return self.values.get(name) == "true"

    def optional_bool(self, name: str) -> bool | None:
        value = self.values.get(name)
        return None if value is None else value == "true"

    def strings(self, name: str) -> tuple[str, ...]:
        return self.lists.get(name, ())


def parse_flags(raw: Iterable[str], accepted: dict[str, FlagKind], instruction: str) -> Flags:
    """Check ``raw`` flag words (``--name=value``) against ``accepted``."""
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    used: list[str] = []
    for word in raw:
        if not word.startswith("--"):
            raise FlagError(f"{instruction} flag {word!r} should start with --")
        if word == "--":
            break
        name, sep, value = word[2:].partition("=")
        kind = accepted.get(name)
        if kind is None:
            if accepted:
                options = sorted(accepted)
                hint = suggest(name, options, case_sensitive=True)
                if hint is not None:
                    message = f"unknown flag --{name} for {instruction} (did you mean --{hint}?)"
                else:
                    known = ", ".join("--" + option for option in options)
                    message = f"unknown flag --{name} for {instruction} (it accepts {known})"
            else:
                message = f"unknown flag --{name}: {instruction} takes no flags"
            raise FlagError(message)
        if name in used:
            if kind is not FlagKind.STRINGS:
                raise FlagError(
                    f"duplicate flag specified: --{name} (give it once per {instruction})"
                )
        else:
            used.append(name)
        if kind is FlagKind.BOOL:
            if sep and value == "":
                raise FlagError(
                    f"missing a value on flag: --{name} (use --{name} or --{name}=true)"
                )
            lowered = value.lower()
            if lowered == "":
                values[name] = "true"
            elif lowered in ("true", "false"):
                values[name] = lowered
            else:
                raise FlagError(f"expecting boolean value for flag --{name}, not: {value}")
        elif not sep:
            raise FlagError(f"missing a value on flag: --{name} (use --{name}=<value>)")
        elif kind is FlagKind.STRING:
            values[name] = value
        else:
            lists.setdefault(name, []).append(value)
    return Flags(
        values=values,
        lists={name: tuple(items) for name, items in lists.items()},
        used=tuple(used),
    )
