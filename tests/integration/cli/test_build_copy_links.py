"""A first build's ``COPY`` from the context hard-links the context layer's files
instead of writing them again; every result stays what it was when later steps modify
the copied file, and when the context changes."""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.cli.main import main


def build(state: Path, ctx: Path, out: Path) -> None:
    code = main(["build", "--state-dir", str(state), "-q", "-o", f"type=local,dest={out}",
                 str(ctx)])  # fmt: skip
    assert code == 0


def shared_copies(state: Path, content: bytes) -> int:
    """How many files under the state directory hold ``content`` and have another link."""
    found = 0
    for dirpath, _, names in os.walk(state / "snapshots"):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_nlink > 1 and st.st_size == len(content):
                with open(path, "rb") as f:
                    found += f.read() == content
    return found


def test_copied_context_files_are_linked_and_results_stay_intact(
    state: Path, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("one\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /a.txt\nRUN echo more >> /a.txt\n")
    build(state, ctx, tmp_path / "out1")
    assert (tmp_path / "out1/a.txt").read_text() == "one\nmore\n"
    assert shared_copies(state, b"one\n") == 2  # the context's file and the COPY's: one inode

    # the COPY's own result (cached) was not changed by the RUN above it
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a.txt /a.txt\n")
    build(state, ctx, tmp_path / "out2")
    assert (tmp_path / "out2/a.txt").read_text() == "one\n"

    # a new content: a new context layer and a new copy; the old ones are untouched
    (ctx / "a.txt").write_text("two\n")
    build(state, ctx, tmp_path / "out3")
    assert (tmp_path / "out3/a.txt").read_text() == "two\n"
    (ctx / "a.txt").write_text("one\n")
    build(state, ctx, tmp_path / "out4")
    assert (tmp_path / "out4/a.txt").read_text() == "one\n"
