"""RUN steps of another platform under QEMU user-mode emulation (binfmt_misc handlers
with the F flag, registered by scripts/setup): a real arm64 busybox (Debian's
busybox-static:arm64) runs ``uname -m`` in a ``--platform linux/arm64`` build and in a
multi-platform build beside the host's; without a usable handler the RUN fails at its
line with what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.core import DockyardError, Platform, host_platform
from dockyard.engine import Engine
from dockyard.frontend import DockerfileOptions
from dockyard.oci import MediaType
from tests.integration.conftest import need_emulation, need_tools
from tests.integration.platforms import (
    UNAME,
    index_architectures,
    other_platform,
    store_busybox_index,
)

from .conftest import open_engine
from .test_builds import dockerfile_build

UNAME_RUN = """\
FROM busybox
ARG TARGETARCH
RUN uname -m > /uname && echo "$TARGETARCH" > /targetarch
RUN ls /bin/busybox > /listed
"""


@pytest.fixture
async def multi_engine(
    busybox_rootfs: Path, foreign_busybox_rootfs: Path, tmp_path: Path, mountinfo_unchanged: None
) -> AsyncIterator[Engine]:
    """An engine whose busybox is an index: the host's and the other architecture's."""
    need_tools("crun")
    need_emulation(other_platform())
    state = tmp_path / "state"
    await store_busybox_index(
        state, {host_platform(): busybox_rootfs, other_platform(): foreign_busybox_rootfs}
    )
    async with open_engine(state) as engine:
        yield engine


def _context(tmp_path: Path, dockerfile: str = UNAME_RUN) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


async def test_a_single_foreign_platform_build_runs_under_emulation(
    multi_engine: Engine, tmp_path: Path
) -> None:
    other = other_platform()
    out = tmp_path / "out"
    await dockerfile_build(
        multi_engine, _context(tmp_path), options=DockerfileOptions(platforms=(other,)),
        outputs=(f"type=local,dest={out}", "type=image,name=example.test/emulated:1"),
    )  # fmt: skip
    assert (out / "uname").read_text() == UNAME[other.architecture] + "\n"
    assert (out / "targetarch").read_text() == other.architecture + "\n"
    local = await multi_engine.images.resolve("example.test/emulated:1", platform=other)
    assert local.config.architecture == other.architecture


async def test_a_multi_platform_build_runs_each_platforms_steps(
    multi_engine: Engine, tmp_path: Path
) -> None:
    host, other = host_platform(), other_platform()
    both = DockerfileOptions(platforms=(host, other))
    out = tmp_path / "out"
    await dockerfile_build(
        multi_engine, _context(tmp_path), options=both,
        outputs=(f"type=local,dest={out}", "type=image,name=example.test/both:1"),
    )  # fmt: skip
    for platform in (host, other):
        directory = out / f"{platform.os}_{platform.architecture}"
        assert (directory / "uname").read_text() == UNAME[platform.architecture] + "\n"
        assert (directory / "targetarch").read_text() == platform.architecture + "\n"
        assert (directory / "listed").read_text() == "/bin/busybox\n"
    stored = await multi_engine.images.get("example.test/both:1")
    assert stored.target.media_type == MediaType.OCI_INDEX
    archs = await index_architectures(multi_engine.content, stored.target.digest)
    assert archs == [host.architecture, other.architecture]


def _handlers_without_f(fake: Path) -> Path:
    """A fake binfmt_misc directory: the host's QEMU handlers, their F flags taken away."""
    fake.mkdir()
    (fake / "status").write_text("enabled\n")
    (fake / "register").write_text("")
    for entry in Path("/proc/sys/fs/binfmt_misc").iterdir():
        if entry.name.startswith("qemu-"):
            text = entry.read_text()
            flags = next(line for line in text.splitlines() if line.startswith("flags:"))
            (fake / entry.name).write_text(text.replace(flags, flags.replace("F", "")))
    return fake


async def test_without_a_usable_handler_the_run_fails_with_what_to_do(
    multi_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = other_platform()
    options = DockerfileOptions(platforms=(other,))
    # a handler for the platform registered without the F flag: detection (pointed at a
    # fake binfmt_misc; the real handlers stay) does not count it
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(_handlers_without_f(tmp_path / "binfmt")))
    (tmp_path / "a").mkdir()
    with pytest.raises(DockyardError) as info:
        await dockerfile_build(multi_engine, _context(tmp_path / "a"), options=options)
    message = str(info.value)
    assert f"Dockerfile:3: cannot run a {other} process" in message
    assert "lacks the F (fix-binary) flag" in message
    assert "apt-get install qemu-user-static" in message
    assert f"dockyard debug binfmt --install {other.architecture}" in message
    # no binfmt_misc at all
    monkeypatch.setenv("DOCKYARD_BINFMT_MISC", str(tmp_path / "not-mounted"))
    (tmp_path / "b").mkdir()
    with pytest.raises(DockyardError, match="binfmt_misc is not mounted"):
        await dockerfile_build(multi_engine, _context(tmp_path / "b"), options=options)
    # the real handlers again: the same build runs
    monkeypatch.delenv("DOCKYARD_BINFMT_MISC")
    (tmp_path / "c").mkdir()
    await dockerfile_build(multi_engine, _context(tmp_path / "c"), options=options)


def test_the_host_runs_its_own_platform_and_the_emulated_one() -> None:
    from dockyard.executor import detect_host_platforms

    need_emulation(other_platform())
    found = detect_host_platforms()
    native = found.find(host_platform())
    assert native is not None
    assert native.native
    emulated = found.find(other_platform())
    assert emulated is not None
    assert emulated.handler is not None
    assert emulated.handler.fix_binary
    if host_platform().architecture == "amd64":  # Debian's kernel runs i386 natively
        i386 = found.find(Platform.parse("linux/386"))
        assert i386 is not None
