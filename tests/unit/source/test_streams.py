"""The blocking streams of layer unpacking: tee, sniffing, decompression."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import threading

import pytest
import zstandard

from dockyard.core import CancelledError, ContentError
from dockyard.source._streams import Tee, decompressed, decompressed_ahead, sniff_compression

DATA = os.urandom(300_000) + b"tail" * 100_000


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write_sync(self, data: bytes | bytearray | memoryview) -> int:
        self.parts.append(bytes(data))
        return len(data)


class _Trickle(io.BytesIO):
    """Returns at most 1000 bytes per read (like a pipe)."""

    def read(self, n: int | None = -1) -> bytes:
        return super().read(1000 if n is None or n < 0 else min(n, 1000))


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (gzip.compress(DATA), "gzip"),
        (gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:]), "gzip"),  # two members
        (gzip.compress(DATA) + b"\0" * 600, "gzip"),  # zero padding
        (zstandard.ZstdCompressor().compress(DATA), "zstd"),
        (DATA, "uncompressed"),
    ],
    ids=["gzip", "gzip-members", "gzip-padding", "zstd", "plain"],
)
def test_decompressed_reads_exact_sizes(blob: bytes, kind: str) -> None:
    sink = _Collect()
    tee = Tee(_Trickle(blob), sink=sink)
    assert sniff_compression(tee.peek(4)) == kind
    stream = decompressed(tee)
    out = []
    while chunk := stream.read(4096):
        assert len(chunk) == 4096 or not stream.read(1)
        out.append(chunk)
    tee.drain()
    assert b"".join(out) == DATA
    assert b"".join(sink.parts) == blob
    assert tee.size == len(blob)
    assert tee.digest == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_truncated_and_corrupt_gzip_are_content_errors() -> None:
    blob = gzip.compress(DATA)
    with pytest.raises(ContentError, match="truncated"):
        decompressed(Tee(io.BytesIO(blob[: len(blob) // 2]))).read()
    bad = bytearray(blob)
    bad[10:30] = b"\xff" * 20
    with pytest.raises(ContentError, match="corrupt gzip"):
        decompressed(Tee(io.BytesIO(bytes(bad)))).read()
    with pytest.raises(ContentError, match="corrupt zstd"):
        decompressed(Tee(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\xff" * 100))).read()


def test_tee_stops_when_cancelled() -> None:
    stop = threading.Event()
    tee = Tee(io.BytesIO(DATA), cancelled=(stop,))
    assert tee.read(10) == DATA[:10]
    stop.set()
    with pytest.raises(CancelledError):
        tee.read(10)


def test_peek_does_not_consume() -> None:
    tee = Tee(io.BytesIO(b"abcdef"))
    assert tee.peek(4) == b"abcd"
    assert tee.peek(2) == b"ab"
    assert tee.read(3) == b"abc"
    assert tee.read() == b"def"
    assert tee.size == 6


def test_read_ahead_gives_the_same_bytes_and_stops_when_closed_early() -> None:
    data = os.urandom(3 << 20) + bytes(5 << 20)
    ahead = decompressed_ahead(Tee(io.BytesIO(gzip.compress(data, 1))))
    stream = ahead.stream
    out = [stream.read(512), stream.read(1 << 20)]
    with pytest.raises(ValueError, match="not read to its end"):
        stream.sha256_of_all()  # type: ignore[attr-defined]
    while chunk := stream.read(777_777):
        out.append(chunk)
    ahead.close()
    assert b"".join(out) == data
    # the thread hashed what it read: apply_tar takes that as the diff_id
    whole = ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert stream.sha256_of_all() == whole  # type: ignore[attr-defined]

    early = decompressed_ahead(Tee(io.BytesIO(gzip.compress(data, 1))))
    assert early.stream.read(10) == data[:10]
    early.close()  # the thread is blocked on a full queue: close unblocks and joins it
    assert early.stream.read(10) == b""


def test_read_ahead_hands_the_thread_s_error_to_the_reader() -> None:
    blob = bytearray(gzip.compress(os.urandom(100_000)))
    blob[-6] ^= 0xFF  # the CRC at the end
    ahead = decompressed_ahead(Tee(io.BytesIO(bytes(blob))))
    stream = ahead.stream
    with pytest.raises(ContentError, match="corrupt gzip"):
        stream.read(1 << 30)
    ahead.close()


class _Pieces:
    """A readable that returns ``data`` in pieces of the given sizes (cycled)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data = data
        self.sizes = sizes
        self.pos = 0
        self.calls = 0
        self.given: list[bytes] = []

    def read(self, n: int = -1) -> bytes:
        size = self.sizes[self.calls % len(self.sizes)]
        self.calls += 1
        piece = self.data[self.pos : self.pos + size]
        self.pos += len(piece)
        self.given.append(piece)
        return piece


@pytest.mark.parametrize("seed", range(20))
def test_buffered_reads_exact_sizes_across_pieces(seed: int) -> None:
    from dockyard.source._streams import _Buffered

    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(1, 300_000))
    sizes = [rng.choice((1, 7, 512, 4096, 65536, 100_000)) for _ in range(5)]
    stream = _Buffered(_Pieces(data, sizes))
    out = []
    pos = 0
    while True:
        n = rng.choice((0, 1, 100, 512, 513, 4096, 65536, 200_000))
        chunk = stream.read(n)
        assert isinstance(chunk, bytes)
        assert chunk == data[pos : pos + n]  # exactly n bytes until the end
        pos += len(chunk)
        out.append(chunk)
        if n and not chunk:
            break
    assert b"".join(out) == data
    assert stream.read(10) == b""


def test_buffered_hands_a_whole_aligned_piece_on_without_copying() -> None:
    from dockyard.source._streams import _Buffered

    piece = os.urandom(4096)
    inner = _Pieces(piece + piece, [4096])
    stream = _Buffered(inner)
    first = stream.read(4096)
    assert first is inner.given[0]
    assert first == piece
    assert stream.read(-1) == piece
