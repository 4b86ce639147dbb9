"""The eStargz writer, checked by an independent parser (``estargz_check``): the blob
is gzip that reads back as the same tar, its footer names the TOC, the TOC describes
every entry, and each chunk decompresses at its offset to its digest."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.core import ContentError
from dockyard.exporter._estargz import (
    FOOTER_SIZE,
    TOC_DIGEST_ANNOTATION,
    UNCOMPRESSED_SIZE_ANNOTATION,
    EStargzWriter,
    empty_layer_diff_id,
    estargz_footer,
    parse_estargz_footer,
)

from .estargz_check import check_chunks, normalized_toc, parse, xattr_values

GOLDEN = Path(__file__).parents[2] / "data" / "estargz"
CHUNK = 64 * 1024  # small chunks and blocks, so that a test tar crosses both
BLOCK = 16 * 1024
T = 1_700_000_000


@dataclass
class Spec:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    mtime: float = T
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def _specs() -> list[Spec]:
    rnd = random.Random(7)
    return [
        Spec("bin/", tarfile.DIRTYPE, mode=0o755),
        Spec(
            "bin/tool",
            data=b"\x7fELF" + rnd.randbytes(5000),
            mode=0o755,
            uid=1000,
            gid=1000,
            uname="user",
            gname="group",
        ),
        Spec("bin/tool2", data=b"same owner", uid=1000, gid=1000, uname="user", gname="group"),
        Spec("bin/alias", tarfile.SYMTYPE, linkname="tool", mode=0o777),
        Spec("bin/hard", tarfile.LNKTYPE, linkname="bin/tool"),
        Spec("data/", tarfile.DIRTYPE, mode=0o755, mtime=0),
        Spec("data/big", data=rnd.randbytes(2 * CHUNK + 1234), mtime=T + 0.6),
        Spec("data/exact", data=b"x" * CHUNK),
        Spec("data/empty"),
        Spec("data/fifo", tarfile.FIFOTYPE),
        Spec("data/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
        Spec("data/" + "long-name-" * 15, data=b"a long name"),
        Spec("data/donn\u00e9es <&> \u2028.txt", data=b"escaped"),
        Spec("data/xattr", data=b"x", pax={"SCHILY.xattr.user.k": "v\u00e9"}),
        Spec("data/.wh.gone"),
    ]


def _tar(specs: list[Spec], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for s in specs:
            ti = tarfile.TarInfo(s.name)
            ti.type = s.type
            ti.mode = s.mode
            ti.uid, ti.gid, ti.uname, ti.gname = s.uid, s.gid, s.uname, s.gname
            ti.mtime = s.mtime
            ti.linkname = s.linkname
            ti.devmajor, ti.devminor = s.devmajor, s.devminor
            ti.pax_headers = dict(s.pax)
            ti.size = len(s.data)
            tf.addfile(ti, io.BytesIO(s.data) if s.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def _estargz(
    tar: bytes,
    *,
    level: int = 6,
    pool: ThreadPoolExecutor | None = None,
    step: int = 10_000,
    chunk_size: int = CHUNK,
    block_size: int = BLOCK,
) -> tuple[bytes, EStargzWriter]:
    out = io.BytesIO()
    writer = EStargzWriter(out, level, chunk_size=chunk_size, pool=pool, block_size=block_size)
    for i in range(0, len(tar), step):
        writer.write(tar[i : i + step])
    writer.close()
    return out.getvalue(), writer


@pytest.fixture(scope="module")
def tar() -> bytes:
    return _tar(_specs())


def test_a_gunzip_reads_the_same_tar_and_the_toc_after_it(tar: bytes) -> None:
    blob, writer = _estargz(tar)
    parsed = parse(blob)
    plain = parsed.uncompressed
    # the layer tar passes through byte for byte; the TOC's tar follows its end marker
    assert plain[: len(tar)] == tar
    toc_tar = plain[len(tar) :]
    with tarfile.open(fileobj=io.BytesIO(toc_tar)) as tf:
        assert tf.getnames() == ["stargz.index.json"]
    # a tar reader stops at the layer's end marker: the TOC is never extracted
    with tarfile.open(fileobj=io.BytesIO(plain)) as tf:
        assert tf.getnames() == [s.name.rstrip("/") for s in _specs()]
    info = writer.info
    assert info.diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert info.diff_id != "sha256:" + hashlib.sha256(tar).hexdigest()
    assert info.uncompressed_size == len(plain)
    assert info.toc_digest == "sha256:" + hashlib.sha256(parsed.toc_json).hexdigest()
    assert dict(info.annotations()) == {
        TOC_DIGEST_ANNOTATION: info.toc_digest,
        UNCOMPRESSED_SIZE_ANNOTATION: str(len(plain)),
    }


def test_toc_entries_describe_the_tar(tar: bytes) -> None:
    parsed = parse(_estargz(tar)[0])
    files = check_chunks(parsed)
    specs = {s.name: s for s in _specs()}
    seen_names: list[str] = []
    for entry in parsed.entries:
        if entry["type"] == "chunk":
            continue
        spec = specs[entry["name"]]
        seen_names.append(spec.name)
        kind = {
            tarfile.REGTYPE: "reg",
            tarfile.DIRTYPE: "dir",
            tarfile.SYMTYPE: "symlink",
            tarfile.LNKTYPE: "hardlink",
            tarfile.FIFOTYPE: "fifo",
            tarfile.CHRTYPE: "char",
        }[spec.type]
        assert entry["type"] == kind
        assert entry.get("mode", 0) == spec.mode
        assert entry.get("uid", 0) == spec.uid
        assert entry.get("gid", 0) == spec.gid
        assert entry.get("linkName", "") == spec.linkname
        assert entry.get("devMajor", 0) == spec.devmajor
        assert entry.get("devMinor", 0) == spec.devminor
        assert entry.get("size", 0) == (len(spec.data) if kind == "reg" else 0)
        if kind == "reg":
            assert files[spec.name] == spec.data
            assert entry["digest"] == "sha256:" + hashlib.sha256(spec.data).hexdigest()
        expected_xattrs = {k.removeprefix("SCHILY.xattr."): v.encode() for k, v in spec.pax.items()}
        assert xattr_values(entry) == expected_xattrs
    assert seen_names == [s.name for s in _specs()]
    by_name = {e["name"]: e for e in parsed.entries if e["type"] != "chunk"}
    # times: RFC 3339 UTC, rounded to the second; time 0 left out
    assert by_name["bin/"]["modtime"] == "2023-11-14T22:13:20Z"
    assert by_name["data/big"]["modtime"] == "2023-11-14T22:13:21Z"
    assert "modtime" not in by_name["data/"]
    # a user or group name is written where it changes for its id
    assert by_name["bin/tool"]["userName"] == "user"
    assert by_name["bin/tool"]["groupName"] == "group"
    assert "userName" not in by_name["bin/tool2"]
    # large files are chunked: the last chunk's chunkSize is left out, one of exactly
    # the chunk size keeps it (as the reference writer does)
    big = [e for e in parsed.entries if e["name"] == "data/big"]
    assert [e["type"] for e in big] == ["reg", "chunk", "chunk"]
    assert [e.get("chunkOffset", 0) for e in big] == [0, CHUNK, 2 * CHUNK]
    assert [e.get("chunkSize", 0) for e in big] == [CHUNK, CHUNK, 0]
    assert by_name["data/exact"]["chunkSize"] == CHUNK
    assert by_name["data/empty"]["digest"] == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_toc_text_is_laid_out_as_go_marshals_it(tar: bytes) -> None:
    parsed = parse(_estargz(tar)[0])
    text = parsed.toc_json.decode()
    assert text.startswith('{\n\t"version": 1,\n\t"entries": [\n\t\t{\n\t\t\t"name": "bin/",')
    # Go's encoder escapes <, > and & (and U+2028) inside strings
    assert "\\u003c\\u0026\\u003e \\u2028.txt" in text
    assert "<" not in text
    # the whole text is what an indenting encoder writes (xattrs nested one level more)
    again = json.dumps(json.loads(text), indent="\t", ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        again = again.replace(char, escaped)
    assert text == again.replace("\u2028", "\\u2028")
    keys = list(parsed.entries[1])
    order = ["name", "type", "size", "modtime", "linkName", "mode", "uid", "gid", "userName"]
    order += ["groupName", "offset", "innerOffset", "devMajor", "devMinor", "xattrs", "digest"]
    order += ["chunkOffset", "chunkSize", "chunkDigest"]
    assert keys == [k for k in order if k in keys]


def test_golden_structure(tar: bytes) -> None:
    """Names, types, fields and which gzip member each payload starts (by ordinal)."""
    parsed = parse(_estargz(tar)[0])
    got = json.dumps(normalized_toc(parsed), indent="\t", ensure_ascii=False) + "\n"
    golden = GOLDEN / "toc.normalized.json"
    assert got == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("level", [0, 1, 9])
def test_levels(tar: bytes, level: int) -> None:
    blob, _ = _estargz(tar, level=level)
    assert parse(blob).uncompressed.startswith(tar)
    check_chunks(parse(blob))
    assert blob[8] == {0: 0, 1: 4, 9: 2}[level]  # XFL as Go writes it


def test_the_same_bytes_whatever_the_threads_and_write_sizes(tar: bytes) -> None:
    with ThreadPoolExecutor(1) as one, ThreadPoolExecutor(4) as four:
        a, wa = _estargz(tar, pool=one, step=len(tar))
        b, wb = _estargz(tar, pool=four, step=511)
        c, _ = _estargz(tar, step=100_000)
    assert a == b == c
    assert wa.info == wb.info


def test_an_ustar_tar_and_a_gnu_tar(tar: bytes) -> None:
    specs = [s for s in _specs() if not s.pax and len(s.name) < 100 and s.name.isascii()]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT):
        raw = _tar(specs, fmt=fmt)
        parsed = parse(_estargz(raw)[0])
        assert parsed.uncompressed.startswith(raw)
        check_chunks(parsed)
        assert [e["name"] for e in parsed.entries if e["type"] != "chunk"] == [
            s.name for s in specs
        ]
    long_gnu = _tar([Spec("d/" + "n" * 150, data=b"1", linkname="")], fmt=tarfile.GNU_FORMAT)
    assert parse(_estargz(long_gnu)[0]).entries[0]["name"] == "d/" + "n" * 150


def test_an_empty_tar() -> None:
    for tar in (b"\0" * 1024, b"\0" * 10240, b""):
        blob, writer = _estargz(tar)
        parsed = parse(blob)
        assert parsed.toc["entries"] is None
        assert parsed.uncompressed.startswith(tar)
        if tar:
            assert writer.info.diff_id == empty_layer_diff_id(tar)


def test_footer_bytes() -> None:
    footer = estargz_footer(0x1234)
    assert len(footer) == FOOTER_SIZE
    header = bytes.fromhex("1f8b08040000000000ff1a0053471600")
    tail = bytes.fromhex("010000ffff") + b"\0" * 8
    assert footer == header + b"0000000000001234STARGZ" + tail
    assert parse_estargz_footer(footer) == 0x1234
    with pytest.raises(ContentError, match="not an eStargz blob"):
        parse_estargz_footer(b"\x1f\x8b" + b"\0" * 49)


def _broken(tar: bytes) -> Iterator[tuple[str, bytes]]:
    yield "cut short", tar[:2000]
    bad = bytearray(tar)
    bad[0] ^= 0x01  # the first header's name, not its checksum
    yield "checksum", bytes(bad)
    sparse = bytearray(_tar([Spec("s", data=b"1")], fmt=tarfile.USTAR_FORMAT))
    sparse[156:157] = b"S"
    sparse[148:156] = b"%06o\0 " % (sum(sparse[:148]) + 256 + sum(sparse[156:512]))
    yield "type 'S'", bytes(sparse)


@pytest.mark.parametrize("case", ["cut short", "checksum", "type 'S'"])
def test_a_tar_it_cannot_index(tar: bytes, case: str) -> None:
    data = dict(_broken(tar))[case]
    writer = EStargzWriter(io.BytesIO(), chunk_size=CHUNK, block_size=BLOCK)

    def run() -> None:
        writer.write(data)
        writer.close()

    with pytest.raises(ContentError):
        run()
    with pytest.raises(ValueError, match="not finished"):
        _ = writer.info
