"""The conversion and the outline do work in proportion to the Dockerfile, measured by
counting, not by the clock: each ENV, ARG, LABEL, EXPOSE or VOLUME line (and every
history entry) used to copy the stage's whole config, environment or history, and the
outline merged the environments per instruction and sliced the stage list per stage
(6000 ``ENV`` lines took ~5 s). ``python -m bench.dockerfile_scaling`` times them."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from dockyard import llb, oci
from dockyard.dockerfile import (
    ConvertOptions,
    ShellLex,
    _convert_dispatch,
    _lint,
    convert,
    lint,
    outline_target,
    parse_dockerfile,
)
from dockyard.dockerfile._convert_image import DEFAULT_PATH, ImageDraft

from .test_convert_stages import AMD64


class _Work:
    """Counts what conversion copies: the entries of the growing lists of each image
    config built (env, labels, ports, volumes, triggers, history) and the variables read
    out of LLB states as dicts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.copied = 0
        container_init = oci.ContainerConfig.__post_init__
        image_init = oci.ImageConfig.__post_init__
        state_env = llb.State.env

        def container(config: oci.ContainerConfig) -> None:
            container_init(config)
            self.copied += len(config.env) + len(config.labels) + len(config.exposed_ports)
            self.copied += len(config.volumes) + len(config.on_build)

        def image(config: oci.ImageConfig) -> None:
            image_init(config)
            self.copied += len(config.history)

        def env(state: llb.State) -> dict[str, str]:
            value: dict[str, str] = state_env.fget(state)  # type: ignore[attr-defined]
            self.copied += len(value)
            return value

        monkeypatch.setattr(oci.ContainerConfig, "__post_init__", container)
        monkeypatch.setattr(oci.ImageConfig, "__post_init__", image)
        monkeypatch.setattr(llb.State, "env", property(env))

    def convert(self, text: str, build_args: Mapping[str, str] | None = None) -> int:
        dockerfile = parse_dockerfile(text)
        options = ConvertOptions(build_platform=AMD64, build_args=dict(build_args or {}))
        self.copied = 0
        asyncio.run(_convert(dockerfile, options))
        return self.copied


async def _convert(dockerfile: Any, options: ConvertOptions) -> None:
    await convert(dockerfile, options)


def _lines(head: str, line: Callable[[int], str], n: int, tail: str = "") -> str:
    return head + "".join(line(i) + "\n" for i in range(n)) + tail


SHAPES: dict[str, Callable[[int], str]] = {
    "ENV": lambda n: _lines("FROM scratch\n", lambda i: f"ENV K{i}=v{i}", n),
    "ARG": lambda n: _lines("FROM scratch\n", lambda i: f"ARG A{i}=v{i}", n),
    "LABEL": lambda n: _lines("FROM scratch\n", lambda i: f"LABEL L{i}=v{i}", n),
    "EXPOSE": lambda n: _lines("FROM scratch\n", lambda i: f"EXPOSE {i + 1}", n),
    "VOLUME": lambda n: _lines("FROM scratch\n", lambda i: f"VOLUME /v{i}", n),
    "USER": lambda n: _lines("FROM scratch\n", lambda i: f"USER u{i}", n),
    "RUN": lambda n: _lines("FROM scratch\n", lambda i: f"RUN echo {i}", n),
    "COPY": lambda n: _lines("FROM scratch\n", lambda i: f"COPY f{i} /f{i}", n),
    "WORKDIR": lambda n: _lines("FROM scratch\n", lambda i: f"WORKDIR /w{i}", n),
    "ONBUILD ENV": lambda n: _lines(
        "FROM scratch AS base\n", lambda i: f"ONBUILD ENV K{i}=v{i}", n, "FROM base\n"
    ),
    "ONBUILD LABEL": lambda n: _lines(
        "FROM scratch AS base\n", lambda i: f"ONBUILD LABEL L{i}=v{i}", n, "FROM base\n"
    ),
    "stages": lambda n: _lines("FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}", n),
    "COPY --from": lambda n: _lines(
        "FROM scratch AS s0\n",
        lambda i: f"FROM scratch AS s{i + 1}\nCOPY --from=s{i} /f /f",
        n,
    ),
    # each stage inherits the history (and ARGs) of those before it
    "stages, a RUN each": lambda n: _lines(
        "FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}\nRUN echo {i}", n
    ),
    "stages, an ARG each": lambda n: _lines(
        "FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}\nARG A{i}=1", n
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_conversion_work_grows_linearly(monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    work = _Work(monkeypatch)
    small = work.convert(SHAPES[shape](200))
    large = work.convert(SHAPES[shape](400))
    # before: 400 ENV lines copied ~80 000 entries, four times what 200 lines copied
    assert large <= 2.2 * small + 100, (small, large)


def test_build_args_given_and_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    work = _Work(monkeypatch)

    def counted(n: int) -> int:
        text = _lines("FROM scratch\n", lambda i: f"ARG A{i}", n, "RUN true\n")
        return work.convert(text, {f"A{i}": f"v{i}" for i in range(n)})

    small, large = counted(200), counted(400)
    assert large <= 2.2 * small + 100, (small, large)


def test_the_config_is_the_one_built_line_by_line() -> None:
    text = (
        "FROM scratch\nENV A=1 B=2\nLABEL x=1\nEXPOSE 80 53/udp\nVOLUME /v\nENV A=3\n"
        "LABEL x=2 y=3\nEXPOSE 80\nUSER u\nONBUILD RUN x\nMAINTAINER m\nCMD a\n"
        'ENTRYPOINT ["e"]\nSTOPSIGNAL 9\nSHELL ["/bin/bash", "-c"]\nWORKDIR /w\n'
    )
    result = asyncio.run(_result(text))
    image = result.image_config
    config = image.config
    assert config.env == (f"PATH={DEFAULT_PATH}", "A=3", "B=2")
    assert dict(config.labels) == {"x": "2", "y": "3"}
    assert config.exposed_ports == ("53/udp", "80/tcp")
    assert config.volumes == ("/v",)
    assert config.user == "u"
    assert config.on_build == ("RUN x",)
    assert image.author == "m"
    assert config.entrypoint == ("e",)
    assert config.cmd == ("/bin/sh", "-c", "a")  # set in the stage: ENTRYPOINT keeps it
    assert config.stop_signal == "9"
    assert config.shell == ("/bin/bash", "-c")
    assert config.working_dir == "/w"
    assert [h.created_by for h in image.history][:2] == ["ENV A=1 B=2", "LABEL x=1"]
    assert len(image.history) == 14  # every line but FROM and ONBUILD


async def _result(text: str) -> Any:
    return await convert(parse_dockerfile(text), ConvertOptions(build_platform=AMD64))


def test_stages_from_one_base_keep_their_own_history_and_args() -> None:
    text = (
        "FROM scratch AS base\nARG A=1\nRUN base\n"
        "FROM base AS one\nARG B=2\nRUN one\n"
        "FROM base AS two\nRUN two\n"
        "FROM one AS three\nRUN three\n"
        "FROM scratch\nCOPY --from=two /a /a\nCOPY --from=three /b /b\n"
    )
    result = asyncio.run(_result(text))

    def history(index: int) -> list[str]:
        return [h.created_by for h in result.stages[index].image_config.history]

    assert history(0) == ["ARG A=1", "RUN |1 A=1 /bin/sh -c base # buildkit"]
    assert history(1) == [*history(0), "ARG B=2", "RUN |2 A=1 B=2 /bin/sh -c one # buildkit"]
    assert history(2) == [*history(0), "RUN |1 A=1 /bin/sh -c two # buildkit"]
    assert history(3) == [*history(1), "RUN |2 A=1 B=2 /bin/sh -c three # buildkit"]
    assert result.stages[2].image_config is result.stages[2].image_config  # made once


def test_a_draft_replaces_the_first_of_a_repeated_name_as_set_envs_did() -> None:
    # a base image's config may list a name twice: the first entry is the one replaced
    base = oci.ImageConfig(
        architecture="amd64",
        os="linux",
        config=oci.ContainerConfig(env=("A=1", "B=2", "A=3")),
    )
    draft = ImageDraft(base)
    assert draft.image() is base  # nothing changed: the same config
    draft.set_envs([("A", "x"), ("C", "4")])
    assert draft.image().config.env == ("A=x", "B=2", "A=3", "C=4")


# -- the outline ------------------------------------------------------------------------


class _CountingStages(tuple):  # type: ignore[type-arg]
    """A Dockerfile's stage list that counts the stages read through slices."""

    read = 0

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if isinstance(key, slice):
            _CountingStages.read += len(value)
        return value


def _outline_work(monkeypatch: pytest.MonkeyPatch, text: str) -> int:
    """What the outline reads: the stages of slices of the stage list, and the size of
    each distinct environment it expands words with (a merged copy per instruction
    was quadratic)."""
    seen: dict[int, Mapping[str, str]] = {}
    process = ShellLex.process

    def counting(self: ShellLex, word: str, env: Mapping[str, str]) -> Any:
        seen.setdefault(id(env), env)
        return process(self, word, env)

    dockerfile = parse_dockerfile(text)
    counted = dataclasses.replace(dockerfile, stages=_CountingStages(dockerfile.stages))
    _CountingStages.read = 0
    with monkeypatch.context() as patch:
        patch.setattr(ShellLex, "process", counting)
        outline_target(counted, build_platform=AMD64)
    return _CountingStages.read + sum(len(env) for env in seen.values())


OUTLINE_SHAPES: dict[str, Callable[[int], str]] = {
    "ARG": lambda n: _lines("FROM scratch\n", lambda i: f"ARG A{i}=${{A{i - 1}:-x}}", n),
    "ENV": lambda n: _lines("FROM scratch\n", lambda i: f"ENV K{i}=$K0", n),
    "RUN --mount": lambda n: _lines(
        "FROM scratch\nARG T=/m\n",
        lambda i: f"ENV E{i}=1\nRUN --mount=type=tmpfs,target=$T x",
        n,
    ),
    "stages": lambda n: _lines("FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}", n),
    "COPY --from": lambda n: _lines(
        "FROM scratch AS s0\n",
        lambda i: f"FROM scratch AS s{i + 1}\nCOPY --from=s{i} /f /f",
        n,
    ),
    "global ARGs, many stages": lambda n: (
        _lines("", lambda i: f"ARG G{i}=1", n)
        + _lines("FROM scratch AS s0\nARG G0\n", lambda i: f"FROM s{i} AS s{i + 1}\nARG G0", n)
    ),
}


@pytest.mark.parametrize("shape", list(OUTLINE_SHAPES))
def test_outline_work_grows_linearly(monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    small = _outline_work(monkeypatch, OUTLINE_SHAPES[shape](200))
    large = _outline_work(monkeypatch, OUTLINE_SHAPES[shape](400))
    assert large <= 2.2 * small + 100, (small, large)


# -- the build checks -------------------------------------------------------------------


def test_lint_copies_a_stage_only_for_a_second_stage_based_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copied = 0
    copy = _lint._StageState.copy

    def counting(state: Any) -> Any:
        nonlocal copied
        copied += len(state.env) + len(state.build_args)
        return copy(state)

    monkeypatch.setattr(_lint._StageState, "copy", counting)

    def work(n: int) -> int:
        nonlocal copied
        copied = 0
        lint(parse_dockerfile(SHAPES["stages, an ARG each"](n)))
        return copied

    small, large = work(200), work(400)
    # before: each stage of the chain copied the ARGs of all before it
    assert large <= 2.2 * small + 100, (small, large)


def test_lint_keeps_stages_from_one_base_apart() -> None:
    text = (
        "FROM scratch AS base\nARG X=1\n"
        "FROM base AS one\nENV Y=2\nLABEL z=$Y$X\n"
        "FROM base AS two\nLABEL z=$Y$X\n"
        "FROM one\nLABEL z=$Y$X\n"
    )
    report = lint(parse_dockerfile(text))
    undefined = [w.short for w in report.warnings if w.rule == "UndefinedVar"]
    assert undefined == [
        "UndefinedVar: Usage of undefined variable '$Y' (did you mean $X?) (line 7)"
    ]


def test_a_chain_of_stages_with_an_env_each_sets_each_variable_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # each stage applied its base's config Env to its environment again: a chain of N
    # stages with an ENV each set N*N/2 variables
    count = 0
    set_env = _convert_dispatch.StageDispatcher.set_env

    def counting(self: Any, env: Mapping[str, str]) -> None:
        nonlocal count
        count += len(env)
        set_env(self, env)

    monkeypatch.setattr(_convert_dispatch.StageDispatcher, "set_env", counting)

    def work(n: int) -> int:
        nonlocal count
        count = 0
        text = _lines("FROM scratch AS s0\n", lambda i: f"FROM s{i} AS s{i + 1}\nENV K{i}=v", n)
        asyncio.run(_result(text))
        return count

    small, large = work(200), work(400)
    assert large <= 2.2 * small + 100, (small, large)


CHAINS = [
    "FROM scratch AS a\nENV A=1\nFROM a AS b\nENV B=2\nFROM b\nENV C=3\nRUN env\n",
    "FROM scratch AS a\nENV A=1 B=2\nFROM a AS b\nENV A=3\nFROM b\nRUN env\n",
    "FROM scratch AS a\nENV A=1 B=2 A=3\nFROM a\nRUN env\n",
    "FROM scratch AS a\nENV B=1\nENV B=2\nFROM a\nENV C=1\nRUN env\n",
    "FROM scratch AS a\nENV PATH=/x\nFROM a\nRUN env\n",
    "FROM scratch AS a\nARG A=1\nENV B=2\nFROM a AS b\nRUN env\nFROM b\nENV A=4\nRUN env\n",
    "FROM scratch AS a\nENV A=1\nARG B=2\nFROM a\nENV C=$B\nRUN env\n",
    "FROM scratch AS a\nENV A=1\nFROM a AS b\nENV B=1\nFROM a AS c\nENV A=2\n"
    "FROM b\nCOPY --from=c /x /x\nRUN env\n",
]


@pytest.mark.parametrize("text", CHAINS)
def test_a_stage_skips_the_env_it_inherits_unchanged(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    def outcome() -> tuple[list[str], list[tuple[str, ...]]]:
        result = asyncio.run(_result(text))
        digests = [op.digest for op in result.definition()]
        configs = [stage.image_config.config.env for stage in result.stages.values()]
        return digests, configs

    fast = outcome()
    monkeypatch.setattr(_convert_dispatch, "env_applied", lambda base: False)
    assert outcome() == fast


def test_random_chains_skip_only_what_applying_would_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(76)
    texts = []
    for _ in range(60):
        lines = ["FROM scratch AS s0"]
        for stage in range(1, rng.randint(2, 5)):
            lines.append(f"FROM s{rng.randrange(stage)} AS s{stage}")
            for _ in range(rng.randint(0, 3)):
                names = [rng.choice("ABC") for _ in range(rng.randint(1, 3))]
                if rng.random() < 0.25:
                    lines.append(f"ARG {names[0]}={stage}")
                else:
                    lines.append("ENV " + " ".join(f"{n}={stage}" for n in names))
            lines.append("RUN env")
        texts.append("\n".join(lines) + "\n")

    def outcomes() -> list[list[str]]:
        return [[op.digest for op in asyncio.run(_result(text)).definition()] for text in texts]

    fast = outcomes()
    monkeypatch.setattr(_convert_dispatch, "env_applied", lambda base: False)
    assert outcomes() == fast
