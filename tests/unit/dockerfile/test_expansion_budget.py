"""What substitutions produce over a whole Dockerfile is bounded, not only per word
(4a8fb07): a 1 MiB variable (within the word cap) copied by every line after it made
each line cost a megabyte of memory and 0.16 s of the daemon's frontend — 100 lines
of 14 bytes took 16 s and 1.1 GB, and ten thousand lines would take hours."""

from __future__ import annotations

import time

import pytest

from dockyard.core import FrontendError, Platform
from dockyard.dockerfile import Outline, _shell, lint, outline_target, parse_dockerfile
from dockyard.dockerfile._shell import expand_word, expansion_budget

from .test_convert_stages import conv

_MEBIBYTE_A = ["ENV A=aaaaaaaaaaaaaaaa"] + ["ENV A=$A$A"] * 16  # A is 1 MiB


def _dockerfile(copies: int) -> str:
    lines = ["FROM scratch", *_MEBIBYTE_A, *(f"ENV B{i}=$A." for i in range(copies))]
    return "\n".join(lines) + "\n"


@pytest.fixture
def small_total(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shell, "MAX_EXPANDED_TOTAL", 6 << 20)


def test_the_total_is_well_above_the_word_cap() -> None:
    assert _shell.MAX_EXPANDED_TOTAL == 32 << 20


@pytest.mark.usefixtures("small_total")
async def test_copies_of_a_large_value_stop_at_the_total() -> None:
    started = time.perf_counter()
    with pytest.raises(FrontendError, match=r"^Dockerfile:\d+: .*more than .* characters in all"):
        await conv(_dockerfile(40))
    assert time.perf_counter() - started < 3


@pytest.mark.usefixtures("small_total")
async def test_a_few_large_values_still_convert() -> None:
    result, _ = await conv(_dockerfile(2))
    value = result.image_config.config.env_value("B1")
    assert value is not None
    assert len(value) == (1 << 20) + 1


@pytest.mark.usefixtures("small_total")
def test_lint_alone_is_bounded_too() -> None:
    # lint skips what it cannot expand; once the budget is spent that is at once
    started = time.perf_counter()
    lint(parse_dockerfile(_dockerfile(40)))
    assert time.perf_counter() - started < 3


def test_the_budget_is_per_conversion() -> None:
    env = {"A": "a" * 1000}
    with expansion_budget(limit=2500):
        expand_word("$A$A", env)
        with pytest.raises(FrontendError, match="in all"):
            expand_word("$A", env)
    # outside any conversion (and in the next one) nothing is left over
    assert expand_word("$A$A$A", env) == "a" * 3000
    with expansion_budget(limit=2500):
        expand_word("$A$A", env)


def _outline(text: str) -> Outline:
    return outline_target(parse_dockerfile(text), build_platform=Platform.parse("linux/amd64"))


@pytest.mark.usefixtures("small_total")
@pytest.mark.parametrize("keyword", ["ARG", "ENV"])
def test_the_outline_has_the_total_of_a_conversion(keyword: str) -> None:
    # ARG values are listed; an ENV the outline cannot expand is skipped, but not once the
    # total is spent: either way the error names the line, as the build's does
    lines = [
        "FROM scratch",
        "ARG A=aaaaaaaaaaaaaaaa",
        *(["ARG A=$A$A"] * 16),
        *(f"{keyword} B{i}=$A." for i in range(40)),
    ]
    with pytest.raises(FrontendError, match=r"more than .* characters in all") as caught:
        _outline("\n".join(lines) + "\n")
    line = caught.value.locations[0].ranges[0].start
    assert lines[line - 1].startswith(f"{keyword} B")


@pytest.mark.usefixtures("small_total")
def test_an_outline_within_the_total_lists_its_arguments() -> None:
    text = "FROM scratch\nARG A=aaaaaaaaaaaaaaaa\n" + "ARG A=$A$A\n" * 16 + "ARG B=$A.\n"
    outline = _outline(text)
    assert [(a.name, len(a.value)) for a in outline.args] == [("A", 1 << 20), ("B", (1 << 20) + 1)]


# -- config copies along a chain of stages (security audit 2, row 128) -------------------


def _chain(stages: int) -> str:
    lines = ["FROM scratch AS s0"]
    for i in range(1, stages):
        lines += [f"FROM s{i - 1} AS s{i}", f"ENV V{i}=v", f"LABEL l{i}=x"]
    return "\n".join(lines) + "\n"


async def test_a_long_chain_of_stages_stops_at_the_copy_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stage i copies ~3i entries of its base's config (Env twice: its positions, labels)
    monkeypatch.setattr(_shell, "MAX_COPIED_CONFIG", 600)
    with pytest.raises(FrontendError, match=r"^Dockerfile:\d+: the stages copy more than 600") as e:
        await conv(_chain(40))
    line = int(str(e.value).split(":")[1])
    assert _chain(40).splitlines()[line - 1].startswith("FROM s"), str(e.value)
    # within the total it converts, every variable and label carried down the chain
    result, _ = await conv(_chain(15))
    config = result.image_config.config
    assert config.env_value("V14") == "v"
    assert config.env_value("V1") == "v"
    assert config.labels["l1"] == "x"


async def test_the_copy_total_leaves_room_for_a_chain_of_a_thousand_stages() -> None:
    # ~1.5 million entries copied: far beyond any real Dockerfile, within the total
    result, _ = await conv(_chain(1000))
    assert result.image_config.config.env_value("V999") == "v"
