"""Fixtures of the Dockerfile end-to-end suite: one state directory for the session
(busybox in its image store, as ``examples/busybox_image.py`` makes it) and the busybox
image saved as Dockyard exports it (the base the trees are compared against)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.conftest import need_root, need_tools
from tests.integration.engine.conftest import store_busybox

from .images import SavedImage, read_saved_image
from .runner import dockyard_build


@pytest.fixture(scope="session")
def e2e_state(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_root()
    need_tools("crun", "git", "ssh-agent", "ssh-add", "ssh-keygen", "docker-registry")
    state = tmp_path_factory.mktemp("e2e") / "state"
    asyncio.run(store_busybox(state, busybox_rootfs))
    return state


@pytest.fixture(scope="session")
def e2e_base(e2e_state: Path, tmp_path_factory: pytest.TempPathFactory) -> SavedImage:
    ctx = tmp_path_factory.mktemp("e2e-base")
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    out = ctx / "base.tar"
    outcome = dockyard_build(e2e_state, ctx, ["-o", f"type=docker,dest={out}"])
    assert outcome.code == 0, outcome.stderr
    return read_saved_image(out)
