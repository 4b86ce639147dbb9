"""The conversions of one multi-platform request share the Dockerfile's substitution
total (``dockerfile._shell.MAX_EXPANDED_TOTAL``): each had a total of its own, so a
request for many platforms multiplied it."""

from __future__ import annotations

import pytest

from dockyard.core import FrontendError, Platform
from dockyard.dockerfile import _shell
from dockyard.frontend import DockerfileFrontend, DockerfileOptions

from .fakes import FakeContext

# A is 1 MiB, B0 and B1 copy it: about 3 MiB of substitutions per conversion
DOCKERFILE = "\n".join(
    ["FROM scratch", "ENV A=aaaaaaaaaaaaaaaa", *["ENV A=$A$A"] * 16, "ENV B0=$A.", "ENV B1=$A."]
).encode()
PLATFORMS = tuple(Platform.parse(p) for p in ("linux/amd64", "linux/arm64", "linux/s390x"))


def _ctx() -> FakeContext:
    return FakeContext(directories={"dockerfile": {"Dockerfile": DOCKERFILE}, "context": {}})


async def test_the_platforms_of_one_request_share_the_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_shell, "MAX_EXPANDED_TOTAL", 6 << 20)
    await DockerfileFrontend().solve(_ctx(), DockerfileOptions(platform=PLATFORMS[0]))
    await DockerfileFrontend().solve(_ctx(), DockerfileOptions(platforms=PLATFORMS[:1]))
    with pytest.raises(FrontendError, match="in all"):
        await DockerfileFrontend().solve(_ctx(), DockerfileOptions(platforms=PLATFORMS))
