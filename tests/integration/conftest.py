"""Shared fixtures of the integration tests (real mounts, real OCI runtimes, as root).

Requirements fail loudly in CI (``CI`` set in the environment): a missing system tool
there is a bug of the install step (``scripts/setup``), not a reason to skip. On a
developer machine they skip with the reason instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.core import Platform
from dockyard.snapshot.types import Mount
from dockyard.testing.rootfs import BUSYBOX, busybox_for, make_busybox_rootfs


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def requirement_missing(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if _in_ci():
        pytest.fail(f"integration requirement missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_root() -> None:
    if os.geteuid() != 0:
        requirement_missing("needs root (mounts, namespaces, OCI runtimes)")


def need_tools(*names: str) -> dict[str, str]:
    """Paths of the named executables; fails (CI) or skips when one is missing."""
    found: dict[str, str] = {}
    for name in names:
        path = shutil.which(name)
        if path is None:
            requirement_missing(f"{name} not found in PATH (scripts/setup installs it)")
            raise AssertionError  # unreachable: requirement_missing raised
        found[name] = path
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _integration_needs_root() -> None:
    need_root()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem (see :mod:`dockyard.testing.rootfs`), made once per
    session. Treat it as read-only: write through :func:`busybox_overlay`."""
    if not BUSYBOX.is_file():
        requirement_missing(f"{BUSYBOX} not found (Debian package busybox-static)")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def need_emulation(platform: Platform) -> None:
    """Fails (CI) or skips unless this host runs ``platform`` (natively or under a QEMU
    handler registered in binfmt_misc with the F flag, as scripts/setup does)."""
    from dockyard.executor import host_platforms

    found = host_platforms(wanted=platform)
    if found.find(platform) is None:
        requirement_missing(
            f"this host cannot run {platform}: {found.why_not(platform)}"
            " (scripts/setup installs qemu-user-static and registers its handlers)"
        )


@pytest.fixture(scope="session")
def foreign_busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem of the other architecture (arm64 beside an amd64 host:
    Debian's busybox-static:arm64 that scripts/setup unpacks), made once per session."""
    from tests.integration.platforms import other_platform

    platform = other_platform()
    binary = busybox_for(platform)
    if not binary.is_file():
        requirement_missing(
            f"{binary} not found (scripts/setup fetches busybox-static:{platform.architecture})"
        )
    return make_busybox_rootfs(
        tmp_path_factory.mktemp("busybox-foreign") / "rootfs", busybox=binary
    )


@dataclass(frozen=True, slots=True)
class Overlay:
    """Mount specs of a writable overlay over the busybox rootfs, and its upper dir."""

    mounts: tuple[Mount, ...]
    lower: Path
    upper: Path


@pytest.fixture
def busybox_overlay(busybox_rootfs: Path, tmp_path: Path) -> Overlay:
    upper, work = tmp_path / "overlay-upper", tmp_path / "overlay-work"
    upper.mkdir()
    work.mkdir()
    mount = Mount(
        type="overlay",
        source="overlay",
        options=(f"lowerdir={busybox_rootfs}", f"upperdir={upper}", f"workdir={work}"),
    )
    return Overlay(mounts=(mount,), lower=busybox_rootfs, upper=upper)


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        # drop the mount id and parent id: they are not stable across remounts elsewhere
        return sorted(" ".join(line.split(" ")[2:]) for line in f)


@pytest.fixture
def mountinfo_unchanged(tmp_path: Path) -> Iterator[None]:
    """Asserts that the test left no mount behind under its temporary directory and that
    it removed none anywhere (other tests may mount elsewhere concurrently)."""
    before = _mountinfo()
    yield
    after = _mountinfo()
    ours = str(tmp_path)
    added = [line for line in after if line not in before and ours in line]
    removed = [line for line in before if line not in after and ours in line]
    assert not added, f"mounts left behind: {added}"
    assert not removed, f"mounts removed: {removed}"
