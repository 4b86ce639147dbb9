"""Helpers for the golden data files under tests/data/dockerfile.

Case files hold many cases::

    === case: name
    --- Dockerfile
    FROM busybox
    --- expect
    ...

Sections start with ``--- <section>`` lines; a case's text runs up to the next ``===``.
Trailing blank lines of a section are dropped; a section named ``Dockerfile`` keeps
one final newline.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

from dockyard.dockerfile import Chmod, Heredoc, Instruction, Node, Stage

DATA = Path(__file__).parents[2] / "data" / "dockerfile"


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    sections: dict[str, str]

    def __str__(self) -> str:
        return self.name


def load_cases(filename: str) -> list[Case]:
    text = (DATA / filename).read_text(encoding="utf-8")
    cases: list[Case] = []
    for chunk in ("\n" + text).split("\n=== case: ")[1:]:
        header, _, body = chunk.partition("\n")
        sections: dict[str, str] = {}
        current: str | None = None
        lines: list[str] = []
        for line in body.split("\n"):
            if line.startswith("--- ") and line[4:].strip() and " " not in line[4:].strip():
                if current is not None:
                    sections[current] = _finish(current, lines)
                current = line[4:].strip()
                lines = []
            elif current is not None:
                lines.append(line)
        if current is not None:
            sections[current] = _finish(current, lines)
        cases.append(Case(name=header.strip(), sections=sections))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), f"duplicate case names in {filename}"
    return cases


def _finish(section: str, lines: list[str]) -> str:
    while lines and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    return text + "\n" if section == "Dockerfile" else text


_SKIP = frozenset({"name", "location", "original"})


def render(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return "[" + " ".join(render(v) for v in value) + "]"
    if isinstance(value, Chmod):
        return render(value.text) + ("" if value.symbolic else f"({value.octal:o})")
    if isinstance(value, Node):
        return "(" + value.dump() + ")"
    if isinstance(value, Heredoc):
        return (
            "{"
            + f"name={render(value.name)} expand={render(value.expand)} "
            + (f"fd={value.fd} " if value.fd else "")
            + f"chomp={render(value.chomp)} content={render(value.content)}"
            + "}"
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return "{" + " ".join(_fields(value)) + "}"
    raise TypeError(f"cannot render {value!r}")


def _fields(value: object) -> list[str]:
    out = []
    for field in dataclasses.fields(value):  # type: ignore[arg-type]
        if field.name in _SKIP or field.name.startswith("_"):
            continue
        current = getattr(value, field.name)
        if field.default is not dataclasses.MISSING and current == field.default:
            continue
        if field.default_factory is not dataclasses.MISSING and current == field.default_factory():
            continue
        out.append(f"{field.name}={render(current)}")
    return out


def describe(instruction: Instruction) -> str:
    """``<line> <KEYWORD> field=value ...`` (fields at their default left out)."""
    line = instruction.location.ranges[0]
    span = f"{line.start}" if line.start == line.end else f"{line.start}-{line.end}"
    return " ".join([span, instruction.keyword, *_fields(instruction)])


def describe_stage(stage: Stage) -> list[str]:
    out = [f"stage {stage.index}: " + describe(stage.from_)]
    out.extend("  " + describe(command) for command in stage.commands)
    return out
