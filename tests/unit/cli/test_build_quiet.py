"""``dockyard build -q`` prints what ``docker buildx build -q`` prints on success: the
image ID (the config's digest, else the manifest's or index's) and a newline — an empty
line when the build made no image (``-o type=local``, ``tar``) — and, before a ``--call``
answer, the same empty line (buildx prints the ID first whatever was asked)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from dockyard.cli import _build
from dockyard.client import BuildOptions, BuildResult

from .test_build_call import ANSWER, _Client

CONFIG = "sha256:" + "c" * 64
MANIFEST = "sha256:" + "m" * 64
INDEX = "sha256:" + "i" * 64


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, "\n"),  # type=local / type=tar: no image
        ({"containerimage.config.digest": CONFIG, "containerimage.digest": MANIFEST}, CONFIG),
        ({"containerimage.digest": INDEX}, INDEX),  # multi-platform: the index
    ],
    ids=["no-image", "image", "multi-platform"],
)
def test_quiet_prints_the_image_id_or_an_empty_line(
    capsys: pytest.CaptureFixture[str], metadata: dict[str, str], expected: str
) -> None:
    client = _Client(BuildResult(metadata=MappingProxyType(metadata)))
    code = _build.run_build(
        client,  # type: ignore[arg-type]  # a stand-in
        BuildOptions(context="."),
        progress="quiet",
        quiet=True,
    )
    assert code == 0
    printed = capsys.readouterr()
    assert printed.out == expected.rstrip("\n") + "\n"
    assert printed.err == ""


def test_quiet_prints_an_empty_line_before_a_call_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = _Client(ANSWER)
    code = _build.run_build(
        client,  # type: ignore[arg-type]
        BuildOptions(context=".", subrequest="targets"),
        progress="quiet",
        quiet=True,
    )
    assert code == 0
    assert capsys.readouterr().out == "\nTARGET DESCRIPTION\napp    \n"


def test_without_quiet_nothing_but_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code = _build.run_build(
        _Client(ANSWER),  # type: ignore[arg-type]
        BuildOptions(context=".", subrequest="targets"),
        progress="quiet",
    )
    assert code == 0
    assert capsys.readouterr().out == "TARGET DESCRIPTION\napp    \n"
