"""Hostile input stays contained: build contexts, copy paths and image layers cannot
reach the host's files."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import DockyardError, NotFoundError, PathEscapeError
from dockyard.engine import BuildRequest, Engine
from dockyard.session import Session

from .conftest import open_engine, solve_tree, store_image


async def test_context_symlink_to_a_host_file_is_copied_as_a_link(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "passwd").symlink_to("/etc/passwd")
    (ctx / "dir-link").symlink_to("/etc")
    (ctx / "plain").write_text("plain")
    state = llb.scratch().file(llb.copy(llb.local("ctx"), "/", "/out/", create_dest_path=True))
    tree = await solve_tree(engine, state.marshal(), session=Session(directories={"ctx": ctx}))
    assert tree["out/passwd"] == ("link", "/etc/passwd")
    assert tree["out/dir-link"] == ("link", "/etc")
    assert tree["out/plain"] == b"plain"
    assert not any(p.startswith("out/dir-link/") for p in tree)

    # following the link resolves it inside the context's tree, where there is no /etc
    follow = llb.scratch().file(
        llb.copy(llb.local("ctx"), "/passwd", "/copied", follow_symlinks=True)
    )
    with pytest.raises(DockyardError, match=r"not found|does not exist"):
        await solve_tree(engine, follow.marshal(), session=Session(directories={"ctx": ctx}))


async def test_copy_source_outside_the_context_is_rejected(engine: Engine, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "x").write_text("outside")
    state = llb.scratch().file(llb.copy(llb.local("ctx"), "../x", "/x"))
    session = Session(directories={"ctx": ctx})
    async with engine.sessions.attach(session):
        # ``..`` stops at the context's root (BuildKit cleans the path): /x, not there
        with pytest.raises((PathEscapeError, NotFoundError)) as info:
            await engine.solve(BuildRequest(definition=state.marshal(), session_id=session.id))
    assert "outside" not in str(info.value)
    assert info.value.vertex is not None


def _layer(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """A layer tar of (name, file content, symlink target) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                tar.addfile(info)
            else:
                assert data is not None
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


HOSTILE = {
    "dotdot": lambda out: [("../../../../../../../.." + str(out / "f"), b"pwned", None)],
    "absolute": lambda out: [(str(out / "f"), b"pwned", None)],
    "through-absolute-link": lambda out: [
        ("escape", None, str(out)),
        ("escape/f", b"pwned", None),
    ],
    "through-relative-link": lambda out: [
        ("escape", None, "../../../../../../../.." + str(out)),
        ("escape/f", b"pwned", None),
    ],
    "through-link-in-lower-layer": None,  # two layers, see below
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_image_layers_cannot_write_outside(
    state: Path, tmp_path: Path, case: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    make = HOSTILE[case]
    if make is None:
        layers = [
            _layer([("escape", None, str(outside)), ("kept", b"ordinary", None)]),
            _layer([("escape/f", b"pwned", None)]),
        ]
    else:
        layers = [_layer([*make(outside), ("kept", b"ordinary", None)])]
    await store_image(state, "docker.io/library/hostile:latest", layers)
    async with open_engine(state) as engine:
        try:
            tree: dict[str, object] | None = await solve_tree(
                engine, llb.image("hostile").marshal()
            )
        except PathEscapeError:
            tree = None  # refused
    assert os.listdir(outside) == []
    if tree is not None:  # contained: the write landed inside the image's tree
        assert tree["kept"] == b"ordinary"
        assert b"pwned" in [v for v in tree.values() if isinstance(v, bytes)]
