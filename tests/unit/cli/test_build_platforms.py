"""``dockyard build --platform``: one platform, a comma list, repeated flags, normalized
and deduplicated into BuildOptions (nothing is built: the run is replaced)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import Platform

from .test_build_flags import Captured, build, captured  # noqa: F401 - fixture

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64")


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)


@pytest.mark.parametrize(
    ("flags", "platform", "platforms"),
    [
        ([], None, ()),
        (["--platform", "linux/arm64/v8"], ARM64, ()),
        (["--platform", "linux/amd64,linux/arm64"], None, (AMD64, ARM64)),
        (["--platform", "linux/amd64", "--platform", "linux/arm64"], None, (AMD64, ARM64)),
        (
            ["--platform", "linux/arm64/v8,linux/x86_64", "--platform", "linux/arm64"],
            None,
            (ARM64, AMD64),
        ),
        (["--platform", "linux/aarch64,linux/arm64"], ARM64, ()),
    ],
)
def test_platform_flags(
    captured: Captured,  # noqa: F811 - the fixture
    tmp_path: Path,
    flags: list[str],
    platform: Platform | None,
    platforms: tuple[Platform, ...],
) -> None:
    assert build(tmp_path, *flags, ".") == 0
    assert captured.options.platform == platform
    assert captured.options.platforms == platforms
