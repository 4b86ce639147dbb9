"""eStargz layers: gzip that a lazy puller can seek in, and any gunzip reads as before.

The format (containerd/stargz-snapshotter, ``docs/estargz.md``) is a gzip stream made
of many members: a new member starts at the payload of every non-empty regular file
(and every ``chunk_size`` bytes inside a large one: 4 MiB by default, as the reference
writer), then one member holds the table of contents — a tar entry
``stargz.index.json`` with a JSON list of every entry, each regular file's and chunk's
compressed offset and digest — and the last 51 bytes are an empty gzip member whose
extra field names the TOC's offset (``SG`` subfield, ``%016xSTARGZ``).

What this writer does, as BuildKit's ``compression=estargz`` (which runs the reference
writer's lossless mode, ``AppendTarLossLess``):

- The layer tar passes through byte for byte: headers, payloads, padding and the
  end-of-archive blocks; only member boundaries are added. Uncompressed, the blob is
  the layer tar followed by the TOC's own small tar (header, JSON, end-of-archive).
  A tar reader (Go's ``archive/tar``, Python's ``tarfile``, GNU tar) stops at the first
  end-of-archive block, so extracting the layer never creates ``stargz.index.json``;
  containerd and Dockyard read the rest of the stream only to hash it.
- The layer's diff_id is the sha256 of that whole uncompressed stream (what containerd
  computes when it applies the layer), so it is not the plain tar's.
- No landmark file (``.prefetch.landmark``/``.no.prefetch.landmark``) is added: the
  lossless writer BuildKit uses adds none (only the reference ``Build`` converter,
  which reorders files for prioritized prefetch, does); stargz-snapshotter then
  prefetches by its own configured size.
- The TOC JSON is laid out as Go's ``json.MarshalIndent(toc, "", "\\t")`` writes it
  (fields in the reference struct's order, empty ones left out, a user or group name
  only where it changes for its id), and its sha256 is the layer's
  ``containerd.io/snapshot/stargz/toc.digest`` annotation.

Compression work is cut into pieces that depend only on the bytes (a member longer
than :data:`~dockyard.exporter._compress.BLOCK_SIZE` is deflated in blocks primed with
the previous block's last 32 KiB, the way the gzip writer does it), batched and run on
the shared compression pool: the blob is the same for any number of threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import struct
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, cast

from zlib_ng import zlib_ng

from dockyard.core import ContentError, Digest

from ._compress import BLOCK_SIZE, ByteSink, compression_pool, gzip_header

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FOOTER_SIZE",
    "TOC_DIGEST_ANNOTATION",
    "TOC_NAME",
    "UNCOMPRESSED_SIZE_ANNOTATION",
    "EStargzInfo",
    "EStargzWriter",
    "empty_layer_diff_id",
    "estargz_footer",
    "existing_estargz",
    "parse_estargz_footer",
]

#: the largest piece of a regular file's payload in one gzip member (the reference's)
DEFAULT_CHUNK_SIZE = 4 << 20
TOC_NAME = "stargz.index.json"
FOOTER_SIZE = 51
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"

_TAR_BLOCK = 512
_WINDOW = 32 * 1024
_MAX_IN_FLIGHT = 8
_ZLIB_ERROR = cast("type[Exception]", zlib_ng.error)  # its stub types it oddly
_EMPTY_SHA256 = "sha256:" + hashlib.sha256(b"").hexdigest()

# parser states
_HEADER = 0  # collecting a 512-byte header block
_EXTENDED = 1  # collecting a PAX ('x') or GNU long name/link ('L'/'K') entry's data
_PAYLOAD = 2  # inside a regular file's payload
_SKIP = 3  # padding after a payload
_END = 4  # past the end-of-archive block: everything passes through

_TYPES = {
    b"0": "reg",
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "char",
    b"4": "block",
    b"5": "dir",
    b"6": "fifo",
}


def estargz_footer(toc_offset: int) -> bytes:
    """The 51-byte footer: an empty gzip member (stored, no compression) whose extra
    field holds the subfield ``SG`` = ``%016x`` of ``toc_offset`` + ``STARGZ``."""
    subfield = b"%016xSTARGZ" % toc_offset
    extra = b"SG" + struct.pack("<H", len(subfield)) + subfield
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff" + struct.pack("<H", len(extra)) + extra
    # a final stored block of length 0, then CRC-32 and size of nothing
    return header + b"\x01\x00\x00\xff\xff" + b"\x00" * 8


def parse_estargz_footer(footer: bytes) -> int:
    """The TOC offset an eStargz footer (the blob's last 51 bytes) names; a
    :class:`~dockyard.core.ContentError` if it is not one."""
    if (
        len(footer) != FOOTER_SIZE
        or footer[:4] != b"\x1f\x8b\x08\x04"
        or footer[10:12] != b"\x1a\x00"
        or footer[12:16] != b"SG\x16\x00"
        or footer[32:38] != b"STARGZ"
    ):
        raise ContentError("not an eStargz blob (no eStargz footer)")
    try:
        return int(footer[16:32], 16)
    except ValueError:
        raise ContentError("not an eStargz blob (bad TOC offset in the footer)") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class EStargzInfo:
    """What an eStargz blob's descriptor and image config need: ``diff_id`` (sha256 of
    the whole uncompressed stream, TOC included), its size, and the TOC JSON's
    digest."""

    diff_id: Digest
    uncompressed_size: int
    toc_digest: Digest

    def annotations(self) -> tuple[tuple[str, str], ...]:
        """The layer descriptor's annotations, sorted by key."""
        return (
            (TOC_DIGEST_ANNOTATION, str(self.toc_digest)),
            (UNCOMPRESSED_SIZE_ANNOTATION, str(self.uncompressed_size)),
        )


def existing_estargz(blob: BinaryIO, *, max_toc: int = 64 << 20) -> tuple[Digest, int] | None:
    """The TOC digest and uncompressed size of ``blob`` if it already is eStargz (BuildKit's
    ``Is``: a footer naming a gzip member whose tar holds ``stargz.index.json`` and
    nothing after it), else ``None``. Reads the whole blob to count its uncompressed
    size (a pulled layer's descriptor annotations are not kept). Blocking."""
    size = blob.seek(0, 2)
    if size < FOOTER_SIZE:
        return None
    blob.seek(size - FOOTER_SIZE)
    try:
        toc_offset = parse_estargz_footer(blob.read(FOOTER_SIZE))
    except ContentError:
        return None
    if not 0 <= toc_offset < size - FOOTER_SIZE or size - FOOTER_SIZE - toc_offset > max_toc:
        return None
    blob.seek(toc_offset)
    d = zlib_ng.decompressobj(wbits=31)
    try:
        tar = d.decompress(blob.read(size - FOOTER_SIZE - toc_offset), max_toc)
    except _ZLIB_ERROR:
        return None
    if not d.eof or d.unused_data or len(tar) < 3 * _TAR_BLOCK:
        return None
    header = tar[:_TAR_BLOCK]
    try:
        _check_sum(header)
        length = _number(header[124:136])
    except ContentError:
        return None
    if _cstr(header[:100]) != TOC_NAME.encode() or header[156:157] not in (b"0", b"\0"):
        return None
    end = _TAR_BLOCK + length + (-length) % _TAR_BLOCK
    if (
        length < 0
        or len(tar) < end + _TAR_BLOCK
        or tar[end : end + _TAR_BLOCK].count(0) != _TAR_BLOCK
    ):
        return None  # the TOC must be the member's only entry
    toc_digest = Digest(
        "sha256:" + hashlib.sha256(tar[_TAR_BLOCK : _TAR_BLOCK + length]).hexdigest()
    )
    blob.seek(0)
    total = 0
    d = zlib_ng.decompressobj(wbits=31)
    pending = b""
    try:
        while True:
            if not pending:
                pending = blob.read(1 << 20)
                if not pending:
                    break
            if d.eof:
                d = zlib_ng.decompressobj(wbits=31)
            total += len(d.decompress(pending, 4 << 20))
            pending = d.unused_data if d.eof else d.unconsumed_tail
    except _ZLIB_ERROR:
        return None
    if not d.eof:
        return None
    return toc_digest, total


def empty_layer_diff_id(tar: bytes) -> Digest:
    """The diff_id of the eStargz blob of ``tar``, a tar without entries (its TOC lists
    none: ``"entries": null``, as the reference marshals a TOC it appended nothing to)."""
    toc = b'{\n\t"version": 1,\n\t"entries": null\n}'
    return Digest("sha256:" + hashlib.sha256(tar + _toc_tar(toc)).hexdigest())


class _Entry:
    """A TOC entry being made; ``member`` is the index of the gzip member its payload
    starts (turned into a compressed offset once every member is written)."""

    __slots__ = (
        "chunk_digest",
        "chunk_offset",
        "chunk_size",
        "dev_major",
        "dev_minor",
        "digest",
        "gid",
        "gname",
        "link_name",
        "member",
        "mode",
        "modtime",
        "name",
        "size",
        "type",
        "uid",
        "uname",
        "xattrs",
    )

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.type = kind
        self.size = 0
        self.modtime = ""
        self.link_name = ""
        self.mode = 0
        self.uid = 0
        self.gid = 0
        self.uname = ""
        self.gname = ""
        self.member = -1
        self.dev_major = 0
        self.dev_minor = 0
        self.xattrs: dict[str, bytes] = {}
        self.digest = ""
        self.chunk_offset = 0
        self.chunk_size = 0
        self.chunk_digest = ""

    def to_json(self, offsets: list[int]) -> dict[str, object]:
        """The entry as the reference's ``TOCEntry`` marshals (``omitempty`` fields)."""
        import base64

        out: dict[str, object] = {"name": self.name, "type": self.type}
        for key, value in (
            ("size", self.size),
            ("modtime", self.modtime),
            ("linkName", self.link_name),
            ("mode", self.mode),
            ("uid", self.uid),
            ("gid", self.gid),
            ("userName", self.uname),
            ("groupName", self.gname),
            ("offset", offsets[self.member] if self.member >= 0 else 0),
            ("devMajor", self.dev_major),
            ("devMinor", self.dev_minor),
        ):
            if value:
                out[key] = value
        if self.xattrs:
            out["xattrs"] = {
                k: base64.b64encode(v).decode("ascii") for k, v in sorted(self.xattrs.items())
            }
        for key, value in (
            ("digest", self.digest),
            ("chunkOffset", self.chunk_offset),
            ("chunkSize", self.chunk_size),
            ("chunkDigest", self.chunk_digest),
        ):
            if value:
                out[key] = value
        return out


# a piece of compression work: data, preset dictionary, last of its member, and the
# index of the member it starts (-1: continues one)
_Piece = tuple[bytes, bytes, bool, int]


def _deflate_pieces(pieces: list[_Piece], level: int) -> list[tuple[bytes, int]]:
    out = []
    for data, zdict, final, _start in pieces:
        if zdict:
            c = zlib_ng.compressobj(
                level, zlib_ng.DEFLATED, -15, 8, zlib_ng.Z_DEFAULT_STRATEGY, zdict
            )
        else:
            c = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 8)
        body = c.compress(data) + c.flush(zlib_ng.Z_FINISH if final else zlib_ng.Z_SYNC_FLUSH)
        out.append((body, zlib_ng.crc32(data)))
    return out


class EStargzWriter:
    """A :class:`~dockyard.exporter._compress.LayerCompressor` writing eStargz.

    Takes the layer's uncompressed tar (as the differ writes it) and passes the blob
    to ``out``; :meth:`close` writes the TOC and footer, after which :attr:`info`
    holds the diff_id, uncompressed size and TOC digest. A tar it cannot index (an
    entry type eStargz has no name for, a global PAX header, a bad header checksum, a
    stream cut short inside an entry) is a :class:`~dockyard.core.ContentError`, as in
    BuildKit. Blocking: feed it from one thread.
    """

    def __init__(
        self,
        out: ByteSink,
        level: int = 6,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pool: ThreadPoolExecutor | None = None,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._out = out
        self._level = level
        self._chunk_size = chunk_size
        self._pool = pool
        self._block = block_size
        self._closed = False
        self._info: EStargzInfo | None = None
        # the uncompressed stream
        self._sha = hashlib.sha256()
        self._size = 0
        # tar parsing
        self._state = _HEADER
        self._hdr = bytearray()
        self._need = _TAR_BLOCK
        self._ext_kind = b""
        self._ext_size = 0
        self._pax: dict[str, bytes] = {}
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._skip_left = 0
        self._file_left = 0
        self._file_offset = 0
        self._file_entry: _Entry | None = None
        self._chunk_entry: _Entry | None = None
        self._chunk_left = 0
        self._file_hash: hashlib._Hash | None = None
        self._chunk_hash = hashlib.sha256()
        self._last_mtime: float = 0
        self._last_modtime = ""
        self._last_uname: dict[int, str] = {}
        self._last_gname: dict[int, str] = {}
        self._entries: list[_Entry] = []
        # members being cut into pieces
        self._members = 0
        self._member = -1
        self._member_blocks = 0
        self._mbuf = bytearray()
        self._tail = b""
        self._batch: list[_Piece] = []
        self._batch_bytes = 0
        # compressed output
        self._pending: deque[tuple[Future[list[tuple[bytes, int]]], list[_Piece]]] = deque()
        self._written = 0
        self._offsets: list[int] = []
        self._out_crc = 0
        self._out_isize = 0

    # -- the LayerCompressor protocol ----------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._closed:
            raise ValueError("write to a closed compressor")
        view = memoryview(data).cast("B")
        n = len(view)
        pos = 0
        while pos < n:
            state = self._state
            if state == _END:
                self._emit(view[pos:])
                break
            if state == _PAYLOAD:
                take = min(n - pos, self._chunk_left)
                piece = view[pos : pos + take]
                self._chunk_hash.update(piece)
                if self._file_hash is not None:
                    self._file_hash.update(piece)
                self._emit(piece)
                pos += take
                self._chunk_left -= take
                self._file_left -= take
                if self._chunk_left == 0:
                    self._end_chunk()
                continue
            if state == _SKIP:
                take = min(n - pos, self._skip_left)
                self._emit(view[pos : pos + take])
                pos += take
                self._skip_left -= take
                if self._skip_left == 0:
                    self._state = _HEADER
                continue
            take = min(n - pos, self._need - len(self._hdr))
            piece = view[pos : pos + take]
            self._hdr += piece
            self._emit(piece)
            pos += take
            if len(self._hdr) == self._need:
                if state == _HEADER:
                    self._header(bytes(self._hdr))
                else:
                    self._extended(bytes(self._hdr[: self._ext_size]))
        return n

    def flush(self) -> None:
        return None

    def close(self) -> None:
        if self._closed:
            return
        if self._state in (_PAYLOAD, _EXTENDED, _SKIP) or (self._state == _HEADER and self._hdr):
            self.abort()
            raise ContentError("the layer tar ends inside an entry (cut short)")
        self._closed = True
        self._cut()
        self._submit_batch()
        self._drain(everything=True)
        toc = self._toc_json()
        toc_tar = _toc_tar(toc)
        toc_offset = self._written
        self._emit(memoryview(toc_tar))
        self._cut()
        self._submit_batch()
        self._drain(everything=True)
        self._out.write(estargz_footer(toc_offset))
        self._info = EStargzInfo(
            diff_id=Digest("sha256:" + self._sha.hexdigest()),
            uncompressed_size=self._size,
            toc_digest=Digest("sha256:" + hashlib.sha256(toc).hexdigest()),
        )

    def abort(self) -> None:
        """Drop what is queued (after a failure elsewhere)."""
        self._closed = True
        for fut, _pieces in self._pending:
            fut.cancel()
        self._pending.clear()
        self._batch = []

    @property
    def info(self) -> EStargzInfo:
        """The blob's diff_id, uncompressed size and TOC digest (after :meth:`close`)."""
        if self._info is None:
            raise ValueError("the eStargz blob is not finished (close it first)")
        return self._info

    # -- tar entries ---------------------------------------------------------------------
    def _header(self, block: bytes) -> None:
        self._hdr = bytearray()
        self._need = _TAR_BLOCK
        if block.count(0) == _TAR_BLOCK:
            self._state = _END  # the end-of-archive marker: the rest passes as it is
            return
        _check_sum(block)
        kind = block[156:157]
        size = _number(block[124:136])
        if kind in (b"x", b"L", b"K"):
            if size < 0:
                raise ContentError("invalid layer tar: negative extended header size")
            self._ext_kind = kind
            self._ext_size = size
            padded = size + (-size) % _TAR_BLOCK
            if padded:
                self._state = _EXTENDED
                self._need = padded
            else:
                self._extended(b"")
            return
        self._entry(block, kind, size)

    def _extended(self, data: bytes) -> None:
        self._hdr = bytearray()
        self._need = _TAR_BLOCK
        self._state = _HEADER
        if self._ext_kind == b"x":
            self._pax.update(_pax_records(data))
        else:
            text = _text(data.split(b"\0", 1)[0])
            if self._ext_kind == b"L":
                self._long_name = text
            else:
                self._long_link = text

    def _entry(self, block: bytes, kind: bytes, size: int) -> None:
        magic = block[257:265]
        ustar = magic[:6] == b"ustar\x00"
        gnu = magic == b"ustar  \x00"
        name = _text(_cstr(block[0:100]))
        if ustar:
            prefix = _cstr(block[345:500])
            if prefix:
                name = _text(prefix) + "/" + name
        link = _text(_cstr(block[157:257])) if kind in (b"1", b"2") else ""
        uname = gname = ""
        if ustar or gnu:
            raw_uname = _cstr(block[265:297])
            raw_gname = _cstr(block[297:329])
            uname = _text(raw_uname) if raw_uname else ""
            gname = _text(raw_gname) if raw_gname else ""
        uid = _number(block[108:116])
        gid = _number(block[116:124])
        mtime: float = _number(block[136:148])
        if self._long_name is not None:
            name = self._long_name
        if self._long_link is not None:
            link = self._long_link
        pax, self._pax = self._pax, {}
        self._long_name = self._long_link = None
        xattrs: dict[str, bytes] = {}
        for key, value in pax.items():
            if key == "path":
                name = _text(value)
            elif key == "linkpath":
                link = _text(value)
            elif key == "uname":
                uname = _text(value)
            elif key == "gname":
                gname = _text(value)
            elif key in ("size", "uid", "gid"):
                number = _pax_int(key, value)
                if key == "size":
                    size = number
                elif key == "uid":
                    uid = number
                else:
                    gid = number
            elif key == "mtime":
                mtime = _pax_time(value)
            elif key.startswith("SCHILY.xattr."):
                xattrs[key[len("SCHILY.xattr.") :]] = value
        if kind == b"\0":
            kind = b"5" if name.endswith("/") else b"0"
        if posixpath.normpath("/" + name).lstrip("/") == TOC_NAME:
            # a lazy puller hides a root stargz.index.json (it takes it for the TOC):
            # the image would differ between a lazy and a full pull; BuildKit's
            # lossless writer refuses it the same way
            raise ContentError(
                f"the layer holds /{TOC_NAME}, the name of eStargz's table of contents:"
                " it cannot be exported as estargz (decompress it, or use gzip)"
            )
        toc_type = _TYPES.get(kind)
        if toc_type is None:
            shown = kind.decode("latin-1") if kind else "(none)"
            raise ContentError(
                f"layer tar entry {name!r} has type {shown!r}, which eStargz cannot index"
            )
        entry = _Entry(name, toc_type)
        entry.mode = _number(block[100:108])
        entry.uid = uid
        entry.gid = gid
        entry.uname = _name_if_changed(self._last_uname, uid, uname)
        entry.gname = _name_if_changed(self._last_gname, gid, gname)
        if mtime != self._last_mtime:  # most entries of a layer share a time
            self._last_mtime, self._last_modtime = mtime, _modtime(mtime)
        entry.modtime = self._last_modtime
        entry.xattrs = xattrs
        if toc_type in ("hardlink", "symlink"):
            entry.link_name = link
        elif toc_type in ("char", "block") and (ustar or gnu):
            entry.dev_major = _number(block[329:337])
            entry.dev_minor = _number(block[337:345])
        if toc_type != "reg":
            self._entries.append(entry)
            self._state = _HEADER  # every other type is a header alone
            return
        if size < 0:
            raise ContentError(f"layer tar entry {name!r} has a negative size")
        entry.size = size
        if size == 0:
            entry.digest = _EMPTY_SHA256
            self._entries.append(entry)
            self._state = _HEADER
            return
        self._file_entry = entry
        self._file_left = size
        self._file_offset = 0
        self._file_hash = hashlib.sha256() if size > self._chunk_size else None
        self._skip_left = (-size) % _TAR_BLOCK
        self._state = _PAYLOAD
        self._begin_chunk(entry)

    def _begin_chunk(self, entry: _Entry) -> None:
        """A new gzip member starts where this chunk's payload does."""
        self._cut()
        chunk = self._chunk_size
        if self._file_left < chunk:
            chunk = self._file_left
        else:
            entry.chunk_size = chunk
        entry.member = self._members  # the member the payload's first byte opens
        entry.chunk_offset = self._file_offset
        self._chunk_entry = entry
        self._chunk_left = chunk
        self._chunk_hash = hashlib.sha256()

    def _end_chunk(self) -> None:
        entry = self._chunk_entry
        file_entry = self._file_entry
        assert entry is not None
        assert file_entry is not None
        entry.chunk_digest = "sha256:" + self._chunk_hash.hexdigest()
        self._entries.append(entry)
        self._file_offset += entry.chunk_size or (file_entry.size - self._file_offset)
        if self._file_left > 0:
            self._begin_chunk(_Entry(file_entry.name, "chunk"))
            return
        if self._file_hash is not None:
            file_entry.digest = "sha256:" + self._file_hash.hexdigest()
        else:
            file_entry.digest = file_entry.chunk_digest
        self._file_entry = self._chunk_entry = None
        self._file_hash = None
        self._state = _SKIP if self._skip_left else _HEADER

    def _toc_json(self) -> bytes:
        entries = [e.to_json(self._offsets) for e in self._entries]
        if not entries:
            text = '{\n\t"version": 1,\n\t"entries": null\n}'
        else:
            # json.dumps(..., indent="\t") in Python's own encoder costs ~9 µs an entry;
            # an entry's fields through the C encoder with the indentation as the item
            # separator give the same text (an entry with xattrs nests: the slow way)
            flat = json.JSONEncoder(ensure_ascii=False, separators=(",\n\t\t\t", ": "))
            texts = []
            for entry in entries:
                if "xattrs" in entry:
                    nested = json.dumps(entry, indent="\t", ensure_ascii=False)
                    texts.append(nested.replace("\n", "\n\t\t"))
                else:
                    one = flat.encode(entry)
                    texts.append("{\n\t\t\t" + one[1:-1] + "\n\t\t}")
            text = '{\n\t"version": 1,\n\t"entries": [\n\t\t' + ",\n\t\t".join(texts) + "\n\t]\n}"
        # Go's encoder also escapes these (they only occur inside strings here)
        for char, escaped in (
            ("&", "\\u0026"),
            ("<", "\\u003c"),
            (">", "\\u003e"),
            ("\u2028", "\\u2028"),
            ("\u2029", "\\u2029"),
        ):
            text = text.replace(char, escaped)
        return text.encode("utf-8")

    # -- members, pieces, output -----------------------------------------------------------
    def _emit(self, data: memoryview) -> None:
        """``data`` joins the uncompressed stream, in the member open now."""
        if not data:
            return
        self._sha.update(data)
        self._size += len(data)
        if self._member < 0:
            self._member = self._members
            self._members += 1
            self._member_blocks = 0
            self._tail = b""
        self._mbuf += data
        block = self._block
        while len(self._mbuf) > block:
            piece = bytes(memoryview(self._mbuf)[:block])
            del self._mbuf[:block]
            self._add_piece(piece, final=False)

    def _cut(self) -> None:
        """End the member open now (if any): what follows starts a new one."""
        if self._member < 0:
            return
        self._add_piece(bytes(self._mbuf), final=True)
        self._mbuf = bytearray()
        self._member = -1

    def _add_piece(self, data: bytes, *, final: bool) -> None:
        start = self._member if self._member_blocks == 0 else -1
        self._batch.append((data, self._tail, final, start))
        self._member_blocks += 1
        self._tail = data[-_WINDOW:]
        self._batch_bytes += len(data)
        if self._batch_bytes >= self._block:
            self._submit_batch()

    def _submit_batch(self) -> None:
        if not self._batch:
            return
        pieces, self._batch, self._batch_bytes = self._batch, [], 0
        pool = self._pool if self._pool is not None else compression_pool()
        self._pending.append((pool.submit(_deflate_pieces, pieces, self._level), pieces))
        self._drain()

    def _drain(self, *, everything: bool = False) -> None:
        """Write the finished batches, in order; wait for the oldest while too many are
        in flight (or for all of them: ``everything``)."""
        while self._pending:
            if not (
                everything or len(self._pending) > _MAX_IN_FLIGHT or self._pending[0][0].done()
            ):
                break
            fut, pieces = self._pending.popleft()
            parts: list[bytes] = []
            offset = self._written
            for (data, _zdict, final, start), (body, crc) in zip(pieces, fut.result(), strict=True):
                if start >= 0:
                    self._offsets.append(offset)
                    header = gzip_header(self._level)
                    parts.append(header)
                    offset += len(header)
                    self._out_crc = crc
                    self._out_isize = len(data)
                else:
                    self._out_crc = zlib_ng.crc32_combine(self._out_crc, crc, len(data))
                    self._out_isize += len(data)
                parts.append(body)
                offset += len(body)
                if final:
                    parts.append(
                        struct.pack("<II", self._out_crc & 0xFFFFFFFF, self._out_isize & 0xFFFFFFFF)
                    )
                    offset += 8
            self._out.write(b"".join(parts))
            self._written = offset


# -- tar field helpers ---------------------------------------------------------------------


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _text(raw: bytes) -> str:
    """A tar string as Go's JSON encoder shows it (bytes that are not UTF-8 become
    U+FFFD)."""
    return raw.decode("utf-8", "replace")


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 (first byte's top bit)."""
    if field and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:  # negative (two's complement)
            value -= 1 << (8 * len(field) - 1)
        return value
    text = field.strip(b" \0")  # as Go's parseOctal trims
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ContentError(f"invalid layer tar: bad numeric header field {field!r}") from None


def _check_sum(block: bytes) -> None:
    stored = _number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    if stored == unsigned:
        return
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b > 127)
    if stored != signed:
        raise ContentError("invalid layer tar: a header's checksum does not match")


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``LEN KEY=VALUE\\n`` records of a PAX extended header."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ContentError("invalid layer tar: bad PAX record length") from None
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ContentError("invalid layer tar: bad PAX record")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "replace")] = value
        pos += length
    return out


def _pax_int(key: str, value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise ContentError(f"invalid layer tar: PAX {key} {value!r} is not a number") from None


def _pax_time(value: bytes) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):  # (float() takes inf and nan; Go's tar does not)
        raise ContentError(f"invalid layer tar: PAX mtime {value!r} is not a time")
    return seconds


def _modtime(mtime: float) -> str:
    """RFC 3339 in UTC, rounded to the second; empty for time 0 (Go's formatModtime)."""
    seconds = int(mtime // 1)
    if seconds == 0:
        return ""
    if mtime - seconds >= 0.5:
        seconds += 1
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return ""


def _name_if_changed(last: dict[int, str], ident: int, name: str) -> str:
    """The reference writes a user or group name only where it changes for its id."""
    if not name or last.get(ident) == name:
        return ""
    last[ident] = name
    return name


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _toc_tar(toc: bytes) -> bytes:
    """The TOC's tar: a ustar header as Go's ``archive/tar`` writes one for a plain
    regular file (mode, owner and time 0), the JSON, padding, end-of-archive."""
    header = bytearray(_TAR_BLOCK)
    header[0 : len(TOC_NAME)] = TOC_NAME.encode("ascii")
    header[100:108] = _octal(0, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _octal(len(toc), 12)
    header[136:148] = _octal(0, 12)
    header[148:156] = b" " * 8
    header[156:157] = b"0"
    header[257:265] = b"ustar\x0000"
    header[329:337] = _octal(0, 8)
    header[337:345] = _octal(0, 8)
    header[148:156] = b"%06o\0 " % sum(header)
    padding = b"\0" * ((-len(toc)) % _TAR_BLOCK)
    return bytes(header) + toc + padding + b"\0" * (2 * _TAR_BLOCK)
