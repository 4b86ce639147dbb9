"""Hostile sizes: long words, many stages and deep nesting cost time linear in the input
and fail with errors that name a Dockerfile line (found by fuzzing, third review)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.core import FrontendError, NotFoundError
from dockyard.dockerfile import parse_dockerfile
from dockyard.dockerfile._text import _distance_below, suggest

from .test_convert_stages import conv


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@settings(max_examples=300, deadline=None)
@given(st.text("abc", max_size=9), st.text("abc", max_size=9), st.integers(1, 4))
def test_banded_distance_is_the_edit_distance_below_the_limit(a: str, b: str, limit: int) -> None:
    assert _distance_below(a, b, limit) == min(_levenshtein(a, b), limit)


def test_suggestions_for_long_words_are_cheap() -> None:
    started = time.perf_counter()
    word = "x" * 200_000
    assert suggest(word, [word[:-1] + "y", "RUN"], case_sensitive=True) == word[:-1] + "y"
    assert suggest(word, ["RUN", "COPY", word + "abc"], case_sensitive=True) is None
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "text",
    [
        "FROM busybox\n" + "R" * 100_000 + " x\n",  # unknown instruction: 4.7 s before
        "FROM busybox\nCOPY --" + "f" * 100_000 + "=1 a b\n",  # unknown flag: 1.1 s
        "FROM busybox\nRUN --mount=type=cache," + "t" * 100_000 + "=1 x\n",  # 3.1 s
    ],
)
def test_a_long_unknown_word_fails_fast(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(FrontendError, match=r"^Dockerfile:2: "):
        parse_dockerfile(text)
    assert time.perf_counter() - started < 0.5


async def test_many_stages_on_a_missing_image_fail_in_linear_time() -> None:
    # every stage's base fails at once; each suggested a name from all the others:
    # 1000 stages took 2.6 s, 4000 stages 45 s
    count = 3000
    text = "FROM nope AS s0\n" + "".join(
        f"FROM nope AS s{i + 1}\nCOPY --from=s{i} /x /x\n" for i in range(count)
    )
    started = time.perf_counter()
    with pytest.raises(NotFoundError, match=r"^Dockerfile:\d+: nope: image not found"):
        await conv(text)
    assert time.perf_counter() - started < 3.0


async def test_splitting_a_long_value_into_words_is_linear() -> None:
    # the word being split grew by `str +=` on an attribute: a 650 000-character
    # value took 17 s to convert (and as long again to lint)
    text = "FROM busybox\nENV A=xxxxx\n" + "ENV A=$A$A\n" * 17 + "RUN echo $A\n"
    started = time.perf_counter()
    await conv(text)
    assert time.perf_counter() - started < 3.0


async def test_one_env_of_many_pairs_is_linear() -> None:
    # each pair copied the whole environment twice: 6000 pairs took 10 s
    text = "FROM busybox\nENV " + " ".join(f"A{i}={i}" for i in range(20_000)) + " A5=x\n"
    started = time.perf_counter()
    result, _ = await conv(text)
    assert time.perf_counter() - started < 3.0
    env = result.image_config.config.env
    assert env[-1] == "A19999=19999"
    assert "A5=x" in env
    assert len(env) == 20_001  # and PATH


async def test_a_base_image_of_many_variables_is_linear() -> None:
    from .test_convert_golden import FakeResolver

    # a registry's config: its variables were set on the state one at a time
    config = {"config": {"Env": [f"V{i}={i}" for i in range(30_000)]}}
    resolver = FakeResolver({"docker.io/library/huge:1": {"config": config}})
    started = time.perf_counter()
    result, _ = await conv("FROM huge:1\nRUN true\n", resolver)
    assert time.perf_counter() - started < 3.0
    assert len(result.image_config.config.env) == 30_001


async def test_every_location_shares_the_dockerfiles_text() -> None:
    # each location read the source's bytes field again, a new copy each time: a
    # Dockerfile of 8000 stages (360 KB) took 2.9 GB and 8.7 s to load as a Definition
    text = "# " + "x" * 100_000 + "\nFROM busybox\n" + "RUN echo $((1))\n" * 50
    result, _ = await conv(text)
    texts = {id(location.data) for node in result.definition() for location in node.locations}
    assert len(texts) == 1
