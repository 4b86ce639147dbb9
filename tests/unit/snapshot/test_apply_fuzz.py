"""Generated tar streams through the layer applier and ADD's unpack: odd names, links to
missing or escaping targets, symlink chains, duplicates, device nodes, whiteouts, PAX
headers with odd values, truncation. Either the archive is extracted inside its root or
the error is a Dockyard error; nothing outside the root changes."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.core import DockyardError
from dockyard.llbsolver._actions import CopyAction
from dockyard.llbsolver._copy import copy
from dockyard.snapshot._apply import apply_tar

EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "60"))

NAMES = [
    "a",
    "b",
    "a/b",
    "a/b/c",
    "..",
    "../x",
    "a/../../x",
    "/abs",
    "./a",
    "a//b",
    ".wh.a",
    "a/.wh..wh..opq",
    ".wh.",
    "x" * 300,
    "n\0ul",
    "é",
    "a/",
    "//",
    ".",
]
TARGETS = ["a", "/a", "../../outside", "/", "a/b", "missing", "b", "..", "x" * 5000, ""]
PAX = [
    {},
    {"mtime": "1e400"},
    {"mtime": "nan"},
    {"mtime": "-99999999999999999999"},
    {"uid": "99999999999999999999999"},
    {"gid": "-1"},
    {"size": "-5"},
    {"path": "../escape"},
    {"linkpath": "/../../x"},
    {"SCHILY.xattr.trusted.overlay.opaque": "y"},
    {"SCHILY.xattr.security.capability": "\x01\x02"},
    {"SCHILY.xattr.user.x" + "y" * 300: "v"},
    {
        "GNU.sparse.map": "0,1,2",
        "GNU.sparse.size": "99999999999999",
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "sp",
        "GNU.sparse.realsize": "10",
    },
]
KINDS = [
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.FIFOTYPE,
    tarfile.GNUTYPE_SPARSE,
    b"Z",
]

member = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(KINDS),
    st.sampled_from(TARGETS),
    st.sampled_from(PAX),
    st.integers(0, 0o7777),
)


def _stream(members: list[tuple[str, bytes, str, dict[str, str], int]], cut: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, target, pax, mode in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.pax_headers = dict(pax)
            data = b""
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = target
            elif kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            elif kind == tarfile.REGTYPE:
                data = b"content"
            info.size = len(data)
            try:
                tar.addfile(info, io.BytesIO(data) if data else None)
            except (ValueError, UnicodeError):
                continue  # tarfile cannot write it: not a stream this test can make
    raw = out.getvalue()
    return raw[: len(raw) - cut] if cut else raw


def _snapshot(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p), p.lstat().st_mode) for p in path.rglob("*"))


streams = st.tuples(st.lists(member, max_size=8), st.sampled_from([0, 0, 1, 100, 512, 1500]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.booleans())
def test_layer_applier(spec: tuple[list, int], overlay: bool) -> None:  # type: ignore[type-arg]
    data = _stream(*spec)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "outside").mkdir()
        (base / "outside" / "keep").write_text("k")
        lower = base / "lower"
        (lower / "a").mkdir(parents=True)
        (lower / "a" / "f").write_text("l")
        root = base / "root"
        root.mkdir()
        before = _snapshot(base / "outside"), _snapshot(lower)
        try:
            apply_tar(io.BytesIO(data), str(root), [str(lower)] if overlay else None)
        except DockyardError:
            pass
        assert (_snapshot(base / "outside"), _snapshot(lower)) == before
        assert (base / "outside" / "keep").read_text() == "k"
        _make_removable(base)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_add_unpack(spec: tuple[list, int]) -> None:  # type: ignore[type-arg]
    data = _stream(*spec)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "outside").mkdir()
        (base / "outside" / "keep").write_text("k")
        src = base / "src"
        src.mkdir()
        (src / "a.tar").write_bytes(data)
        dest = base / "dest"
        dest.mkdir()
        before = _snapshot(base / "outside")
        try:
            copy(
                src,
                dest,
                CopyAction(src="/a.tar", dest="/dst/", unpack=True, create_dest_path=True),
                None,
            )
        except DockyardError:
            pass
        assert _snapshot(base / "outside") == before
        _make_removable(base)


def _make_removable(base: Path) -> None:
    for dirpath, dirnames, _ in os.walk(base):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    shutil.rmtree(base, ignore_errors=True)
