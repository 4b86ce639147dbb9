"""Contexts as directories the session serves: a local directory and -f, a Dockerfile or
a tarball on stdin (extracted contained), and git/http URLs fetched through the engine
(here a fake fetch)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from dockyard import llb
from dockyard.client import BuildOptions
from dockyard.client._context import PreparedContext, Scratch, prepare_context
from dockyard.core import ContentError, NotFoundError, PathEscapeError, UsageError


class FakeFetch:
    """Records what the client asks the engine to fetch and writes ``files`` there."""

    def __init__(self, *trees: dict[str, bytes]) -> None:
        self.trees = list(trees)
        self.calls: list[tuple[list[str], Path, str]] = []

    async def __call__(self, definition: llb.Definition, dest: Path, name: str) -> None:
        kinds = [op.kind for op in definition.ops]
        sources = [op.op.source.identifier for op in definition.ops if op.kind == "source"]
        self.calls.append((kinds + sources, dest, name))
        write_tree(dest, self.trees.pop(0))


def write_tree(dest: Path, files: dict[str, bytes]) -> None:
    dest.mkdir(parents=True)
    for path, data in files.items():
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        (dest / path).write_bytes(data)


async def never(definition: llb.Definition, dest: Path, name: str) -> None:
    raise AssertionError("nothing to fetch")


def tarball(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


async def prepare(options: BuildOptions, scratch: Path, fetch: object = never) -> PreparedContext:
    def make() -> Path:
        os.makedirs(scratch, exist_ok=True)
        return scratch

    return await prepare_context(options, make, fetch)  # type: ignore[arg-type]


async def test_a_local_context_makes_no_scratch_directory(tmp_path: Path) -> None:
    # a build killed before its end leaves nothing in /tmp: the usual context needs no
    # scratch directory, so none is made
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    scratch = Scratch()
    made: list[Path] = []

    def watched() -> Path:
        made.append(scratch())
        return made[-1]

    prepared = await prepare_context(BuildOptions(context=str(ctx)), watched, never)
    assert prepared.context == ctx
    assert made == []
    scratch.close()  # nothing to remove


async def test_a_stdin_context_goes_into_the_scratch_directory_close_removes(
    tmp_path: Path,
) -> None:
    scratch = Scratch()
    stdin = io.BytesIO(tarball({"Dockerfile": b"FROM scratch\n", "a.txt": b"a"}))
    prepared = await prepare_context(BuildOptions(context="-", stdin=stdin), scratch, never)
    where = scratch()
    assert where.name.startswith("dockyard-")
    assert prepared.context.is_relative_to(where)
    assert (prepared.context / "a.txt").read_bytes() == b"a"
    scratch.close()
    assert not where.exists()


async def test_a_local_directory(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "sub" / "Other.Dockerfile").write_text("FROM scratch\n")
    prepared = await prepare(BuildOptions(context=str(ctx)), tmp_path / "s")
    assert (prepared.context, prepared.dockerfile_dir, prepared.filename) == (
        ctx,
        ctx,
        "Dockerfile",
    )
    again = await prepare(BuildOptions(context=str(ctx)), tmp_path / "s")
    assert again.shared_key == prepared.shared_key  # the engine's copy is reused
    other = await prepare(
        BuildOptions(context=str(ctx), dockerfile=str(ctx / "sub" / "Other.Dockerfile")),
        tmp_path / "s",
    )
    assert (other.dockerfile_dir, other.filename) == (ctx / "sub", "Other.Dockerfile")


async def test_local_mistakes(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match='path "nope" not found'):
        await prepare(BuildOptions(context="nope"), tmp_path / "s")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        await prepare(BuildOptions(context=str(tmp_path / "file")), tmp_path / "s")
    with pytest.raises(
        NotFoundError, match=r"failed to read dockerfile: open .*/Dockerfile: no such"
    ):
        await prepare(BuildOptions(context=str(tmp_path)), tmp_path / "s")


async def test_a_dockerfile_on_stdin(tmp_path: Path) -> None:
    stdin = io.BytesIO(b"FROM busybox\nRUN true\n")
    prepared = await prepare(
        BuildOptions(context=str(tmp_path), dockerfile="-", stdin=stdin), tmp_path / "s"
    )
    assert prepared.context == tmp_path
    assert (prepared.dockerfile_dir / prepared.filename).read_bytes() == b"FROM busybox\nRUN true\n"
    with pytest.raises(UsageError, match="empty"):
        await prepare(
            BuildOptions(context=str(tmp_path), dockerfile="-", stdin=io.BytesIO(b" \n")),
            tmp_path / "s2",
        )


async def test_stdin_is_a_dockerfile_with_an_empty_context(tmp_path: Path) -> None:
    text = b"FROM busybox\n" + b"# padding\n" * 100
    prepared = await prepare(BuildOptions(context="-", stdin=io.BytesIO(text)), tmp_path / "s")
    assert list(prepared.context.iterdir()) == []
    assert (prepared.dockerfile_dir / prepared.filename).read_bytes() == text
    with pytest.raises(UsageError, match="-f does not apply"):
        await prepare(
            BuildOptions(context="-", dockerfile="x", stdin=io.BytesIO(text)), tmp_path / "s2"
        )
    with pytest.raises(UsageError, match="nothing on stdin"):
        await prepare(BuildOptions(context="-", stdin=io.BytesIO(b"")), tmp_path / "s3")


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
async def test_stdin_tarball_contexts(tmp_path: Path, compression: str) -> None:
    data = tarball(
        {"Dockerfile": b"FROM busybox\n", "app/main.txt": b"hi", "build/x.df": b"FROM x\n"}
    )
    if compression == "gzip":
        data = gzip.compress(data)
    elif compression == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    prepared = await prepare(BuildOptions(context="-", stdin=io.BytesIO(data)), tmp_path / "s")
    assert (prepared.context / "app" / "main.txt").read_bytes() == b"hi"
    assert prepared.dockerfile_dir == prepared.context
    assert prepared.filename == "Dockerfile"
    inner = await prepare(
        BuildOptions(context="-", dockerfile="build/x.df", stdin=io.BytesIO(data)), tmp_path / "t"
    )
    assert inner.filename == "build/x.df"
    with pytest.raises(UsageError, match="name a file inside it"):
        await prepare(
            BuildOptions(context="-", dockerfile="../x", stdin=io.BytesIO(data)), tmp_path / "u"
        )
    with pytest.raises(NotFoundError, match="nope: no such file in the context -"):
        await prepare(
            BuildOptions(context="-", dockerfile="nope", stdin=io.BytesIO(data)), tmp_path / "v"
        )


def _hostile(*entries: tuple[str, str, str | bytes]) -> bytes:
    """A tarball of (kind, name, data-or-link-target) entries in order: ``file``,
    ``symlink``, ``hardlink``, ``fifo``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = 13
        tar.addfile(info, io.BytesIO(b"FROM busybox\n"))
        for kind, name, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(value, bytes)
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
                continue
            info.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = str(value)
            tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ((("file", "../escape", b"x"),), PathEscapeError),
        (
            (("symlink", "out", str(Path("..", "..", ".."))), ("file", "out/escape", b"x")),
            PathEscapeError,
        ),
        ((("symlink", "abs", "/"), ("file", "abs/tmp/escape", b"x")), PathEscapeError),
        ((("hardlink", "h", "../../../etc/hostname"),), PathEscapeError),
        ((("hardlink", "h", "/etc/hostname"),), PathEscapeError),
        ((("symlink", "etc", "/etc"), ("hardlink", "h", "etc/hostname")), PathEscapeError),
        ((("fifo", "pipe", ""),), ContentError),
    ],
)
async def test_hostile_tarballs_are_contained(
    tmp_path: Path, entries: tuple[tuple[str, str, str | bytes], ...], error: type[Exception]
) -> None:
    """Nothing is written outside the context (through a name, or a link the archive
    made), no host file is hard-linked into it, no device or FIFO is made."""
    data = _hostile(*entries)
    with pytest.raises(error):
        await prepare(BuildOptions(context="-", stdin=io.BytesIO(data)), tmp_path / "s" / "t")
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "s" / "escape").exists()


async def test_links_out_of_the_context_are_kept_as_links(tmp_path: Path) -> None:
    """As docker and BuildKit take a context tarball: a symbolic link is data whatever it
    points at (a virtualenv's ``python -> /usr/bin/python3``), and modes are kept."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, target in (("venv/bin/python", "/usr/bin/python3"), ("up", "../../..")):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
        info = tarfile.TarInfo("Dockerfile")
        info.size = 13
        info.mode = 0o4775
        tar.addfile(info, io.BytesIO(b"FROM busybox\n"))
        info = tarfile.TarInfo("inside")
        info.type = tarfile.LNKTYPE
        info.linkname = "Dockerfile"
        info.mode = 0o4775  # a hard link's entry carries the file's mode again
        tar.addfile(info)
    prepared = await prepare(
        BuildOptions(context="-", stdin=io.BytesIO(buf.getvalue())), tmp_path / "s"
    )
    context = prepared.context
    assert os.readlink(context / "venv" / "bin" / "python") == "/usr/bin/python3"
    assert os.readlink(context / "up") == "../../.."
    assert (context / "Dockerfile").stat().st_mode & 0o7777 == 0o4775
    assert (context / "inside").stat().st_ino == (context / "Dockerfile").stat().st_ino


async def test_absolute_names_land_inside(tmp_path: Path) -> None:
    data = tarball({"Dockerfile": b"FROM busybox\n", "/abs/x": b"x"})
    prepared = await prepare(BuildOptions(context="-", stdin=io.BytesIO(data)), tmp_path / "s")
    assert (prepared.context / "abs" / "x").read_bytes() == b"x"


async def test_a_corrupt_tarball(tmp_path: Path) -> None:
    data = gzip.compress(b"\0" * 100)[:-4] + b"xxxx"
    with pytest.raises(ContentError):
        await prepare(BuildOptions(context="-", stdin=io.BytesIO(data)), tmp_path / "s")


async def test_git_contexts_are_fetched_by_the_engine(tmp_path: Path) -> None:
    fetch = FakeFetch({"Dockerfile": b"FROM busybox\n", "sub/Dockerfile.dev": b"FROM x\n"})
    url = "https://example.com/app.git#main:sub"
    prepared = await prepare(BuildOptions(context=url), tmp_path / "s", fetch)
    (kinds, dest, name) = fetch.calls[0]
    assert "source" in kinds
    assert any(k.startswith("git://example.com/app.git") for k in kinds)
    assert dest == tmp_path / "s" / "context"
    assert name == f"git context {url}"
    assert prepared.context == dest
    assert prepared.filename == "Dockerfile"
    fetch = FakeFetch({"sub/Dockerfile.dev": b"FROM x\n"})
    prepared = await prepare(
        BuildOptions(context="git@example.com:app.git", dockerfile="sub/Dockerfile.dev"),
        tmp_path / "t",
        fetch,
    )
    assert prepared.filename == "sub/Dockerfile.dev"


async def test_http_contexts_tarball_or_dockerfile(tmp_path: Path) -> None:
    archive = gzip.compress(tarball({"Dockerfile": b"FROM busybox\n"}))
    fetch = FakeFetch({"context": archive}, {"Dockerfile": b"FROM busybox\n"})
    prepared = await prepare(
        BuildOptions(context="https://example.com/ctx.tar.gz"), tmp_path / "s", fetch
    )
    assert len(fetch.calls) == 2  # the download, then its contained unpacking
    assert fetch.calls[0][0][-1] == "https://example.com/ctx.tar.gz"
    assert "file" in fetch.calls[1][0]
    assert prepared.context == tmp_path / "s" / "context"

    fetch = FakeFetch({"context": b"FROM busybox\nRUN true\n"})
    prepared = await prepare(
        BuildOptions(context="https://example.com/Dockerfile"), tmp_path / "t", fetch
    )
    assert len(fetch.calls) == 1
    assert list(prepared.context.iterdir()) == []
    assert (prepared.dockerfile_dir / prepared.filename).read_bytes().startswith(b"FROM busybox")
