"""An eStargz blob checked by the standard library alone (not Dockyard's writer): its
gzip members, footer, TOC, and every chunk at the offset the TOC gives. Shared by the
unit and integration tests."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import tarfile
import zlib
from dataclasses import dataclass
from typing import Any

FOOTER_SIZE = 51
TOC_NAME = "stargz.index.json"


@dataclass
class Member:
    offset: int
    data: bytes


@dataclass
class Parsed:
    members: list[Member]
    toc_offset: int
    toc_json: bytes
    toc: dict[str, Any]

    @property
    def uncompressed(self) -> bytes:
        return b"".join(m.data for m in self.members)

    @property
    def entries(self) -> list[dict[str, Any]]:
        entries = self.toc["entries"]
        return list(entries) if entries else []


def gzip_members(blob: bytes) -> list[Member]:
    """Every gzip member of ``blob``, decompressed one by one."""
    view = memoryview(blob)
    out: list[Member] = []
    pos = 0
    while pos < len(blob):
        d = zlib.decompressobj(wbits=31)
        parts = []
        fed = pos
        while not d.eof:
            assert fed < len(blob), f"member at {pos} is cut short"
            piece = view[fed : fed + 65536]
            fed += len(piece)
            parts.append(d.decompress(piece))
        end = fed - len(d.unused_data)
        out.append(Member(offset=pos, data=b"".join(parts)))
        pos = end
    return out


def parse_footer(footer: bytes) -> int:
    """The TOC offset, from the 51-byte footer as the spec lays it out."""
    assert len(footer) == FOOTER_SIZE
    assert footer[:3] == b"\x1f\x8b\x08"
    assert footer[3] == 0x04  # FEXTRA only
    (xlen,) = struct.unpack("<H", footer[10:12])
    assert xlen == 26
    assert footer[12:14] == b"SG"
    (sublen,) = struct.unpack("<H", footer[14:16])
    assert sublen == 22
    assert footer[32:38] == b"STARGZ"
    assert footer[38:43] == b"\x01\x00\x00\xff\xff"  # final stored block, LEN 0
    assert footer[43:] == b"\x00" * 8  # CRC-32 and size of nothing
    return int(footer[16:32], 16)


def parse(blob: bytes) -> Parsed:
    """Parse and check the structure every eStargz blob must have."""
    members = gzip_members(blob)
    footer = members[-1]
    assert footer.offset == len(blob) - FOOTER_SIZE
    assert footer.data == b""
    toc_offset = parse_footer(blob[-FOOTER_SIZE:])
    assert len(members) >= 2
    toc_member = members[-2]
    assert toc_member.offset == toc_offset
    with tarfile.open(fileobj=io.BytesIO(toc_member.data)) as tf:
        infos = tf.getmembers()
        assert [i.name for i in infos] == [TOC_NAME]
        extracted = tf.extractfile(infos[0])
        assert extracted is not None
        toc_json = extracted.read()
    toc = json.loads(toc_json)
    assert toc["version"] == 1
    return Parsed(members=members, toc_offset=toc_offset, toc_json=toc_json, toc=toc)


def check_chunks(parsed: Parsed) -> dict[str, bytes]:
    """Every ``reg``/``chunk`` entry's payload, decompressed from the member at its
    ``offset`` and checked against ``chunkDigest``; the files' contents (checked against
    ``digest``). Also: members start only where a payload does (or at 0, the TOC, the
    footer), and every payload offset is a member start."""
    starts = {m.offset: m for m in parsed.members}
    files: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    digests: dict[str, str] = {}
    payload_offsets: list[int] = []
    last_reg = ""
    for entry in parsed.entries:
        kind = entry["type"]
        if kind == "reg":
            last_reg = entry["name"]
            sizes[last_reg] = entry.get("size", 0)
            files[last_reg] = b""
            digests[last_reg] = entry["digest"]
            if not entry.get("size"):
                assert "offset" not in entry
                continue
        elif kind == "chunk":
            assert entry["name"] == last_reg
        else:
            assert "offset" not in entry
            continue
        name = entry["name"]
        offset = entry["offset"]
        assert offset in starts, f"{name}: offset {offset} is not a gzip member's start"
        payload_offsets.append(offset)
        assert entry.get("chunkOffset", 0) == len(files[name])
        size = entry.get("chunkSize") or sizes[name] - entry.get("chunkOffset", 0)
        assert "innerOffset" not in entry
        data = starts[offset].data[:size]
        assert len(data) == size
        assert "sha256:" + hashlib.sha256(data).hexdigest() == entry["chunkDigest"]
        files[name] += data
    for name, data in files.items():
        assert len(data) == sizes[name]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digests[name]
    assert len(payload_offsets) == len(set(payload_offsets))
    assert payload_offsets == sorted(payload_offsets)
    allowed = {0, parsed.toc_offset, parsed.members[-1].offset, *payload_offsets}
    assert set(starts) <= allowed
    return files


def normalized_toc(parsed: Parsed) -> dict[str, Any]:
    """The TOC with each ``offset`` replaced by the ordinal of its gzip member (offsets
    depend on the deflate library's output; the member layout does not)."""
    ordinal = {m.offset: i for i, m in enumerate(parsed.members)}
    entries = []
    for entry in parsed.entries:
        entry = dict(entry)
        if "offset" in entry:
            entry["offset"] = ordinal[entry["offset"]]
        entries.append(entry)
    return {"version": parsed.toc["version"], "entries": entries}


def xattr_values(entry: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in entry.get("xattrs", {}).items()}
