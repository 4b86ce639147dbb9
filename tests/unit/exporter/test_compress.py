from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard

from dockyard.exporter import (
    Compression,
    CompressionOptions,
    ParallelGzip,
    compression_of,
    new_compressor,
    open_decompressed,
)
from dockyard.exporter._compress import BLOCK_SIZE, gzip_header


class Sink:
    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self.buf += data
        return len(data)


def _data(size: int, seed: int = 1) -> bytes:
    """Compressible but not trivial: words with random numbers, some random bytes."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    total = 0
    while total < size:
        if rng.random() < 0.1:
            chunk = rng.randbytes(rng.randint(1, 4000))
        else:
            chunk = f"line {rng.randint(0, 10**6)} of some text, again and again\n".encode()
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)[:size]


def _gzip(data: bytes, level: int = 6, *, pieces: int = 7919, workers: int | None = None) -> bytes:
    sink = Sink()
    pool = ThreadPoolExecutor(workers) if workers else None
    try:
        g = ParallelGzip(sink, level, pool=pool)
        for i in range(0, len(data), pieces):
            g.write(data[i : i + pieces])
        g.close()
    finally:
        if pool is not None:
            pool.shutdown()
    return bytes(sink.buf)


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE, 5 * BLOCK_SIZE + 77],
)
def test_gzip_decompresses_to_the_same_bytes(size: int) -> None:
    data = _data(size)
    out = _gzip(data)
    assert gzip.decompress(out) == data
    # one gzip member: a raw reader stops at its end with nothing left over
    d = zlib.decompressobj(31)
    assert d.decompress(out) == data
    assert d.eof
    assert d.unused_data == b""


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_levels_and_go_header(level: int) -> None:
    data = _data(3 * BLOCK_SIZE)
    out = _gzip(data, level)
    assert out[:10] == gzip_header(level)
    assert out[8] == (2 if level == 9 else 4 if level == 1 else 0)  # Go's XFL
    assert out[9] == 255
    assert gzip.decompress(out) == data


def test_output_does_not_depend_on_threads_or_write_sizes() -> None:
    data = _data(4 * BLOCK_SIZE + 12345, seed=7)
    one = _gzip(data, workers=1, pieces=1 << 20)
    four = _gzip(data, workers=4, pieces=3)
    shared = _gzip(data, pieces=65536)
    assert one == four == shared


def test_compresses_like_zlib() -> None:
    data = _data(6 * BLOCK_SIZE, seed=3)
    out = _gzip(data)
    reference = gzip.compress(data, 6)
    assert len(out) < len(reference) * 1.05  # blocks primed with a dictionary lose little


def test_other_tools_read_it() -> None:
    data = _data(3 * BLOCK_SIZE + 5)
    out = _gzip(data)
    for tool in ("gzip", "pigz"):
        path = shutil.which(tool)
        if path is None:
            continue
        result = subprocess.run([path, "-dc"], input=out, capture_output=True, check=True)
        assert result.stdout == data


def test_zstd_and_uncompressed() -> None:
    data = _data(3 << 20, seed=5)
    sink = Sink()
    c = new_compressor(CompressionOptions(type=Compression.ZSTD), sink)
    for i in range(0, len(data), 100_000):
        c.write(data[i : i + 100_000])
    c.close()
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(bytes(sink.buf))).read() == data
    plain = Sink()
    c = new_compressor(CompressionOptions(type=Compression.UNCOMPRESSED), plain)
    c.write(data)
    c.close()
    assert bytes(plain.buf) == data


def test_zstd_output_is_stable() -> None:
    data = _data(2 << 20, seed=9)
    outs = []
    for _ in range(2):
        sink = Sink()
        c = new_compressor(CompressionOptions(type=Compression.ZSTD, level=5), sink)
        c.write(data)
        c.close()
        outs.append(bytes(sink.buf))
    assert outs[0] == outs[1]


def test_zstd_finds_repeats_8_mib_apart_whatever_the_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A layer's files repeat far apart: with libzstd's 2 MiB window for a stream of
    unknown size the second copy of a 3 MiB block compressed again; with the 8 MiB
    window (and long-distance matching) it is a reference, as Go's encoder makes it.
    The output is the same for one worker or several."""
    import dockyard.exporter._compress as compress

    block = _data(3 << 20, seed=11)
    data = block + _data(2 << 20, seed=12) + block
    outs = []
    for workers in (1, 4):
        monkeypatch.setattr(compress, "_workers", lambda n=workers: n)
        sink = Sink()
        c = new_compressor(CompressionOptions(type=Compression.ZSTD), sink)
        c.write(data)
        c.close()
        outs.append(bytes(sink.buf))
    assert outs[0] == outs[1]
    assert zstandard.get_frame_parameters(outs[0]).window_size == 8 << 20
    assert len(outs[0]) < len(zstandard.ZstdCompressor(level=3).compress(data)) * 0.8
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(outs[0])).read() == data


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz", "uncompressed"])
def test_open_decompressed(kind: str) -> None:
    import bz2
    import lzma

    data = _data(300_000, seed=11)
    packers: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "bzip2": bz2.compress,
        "xz": lzma.compress,
        "uncompressed": bytes,
    }
    packed = packers[kind](data)
    assert compression_of(packed[:8]) == kind
    stream, found = open_decompressed(io.BytesIO(packed))
    assert found == kind
    assert stream.read() == data


def test_corrupt_streams_are_content_errors() -> None:
    from dockyard.core import ContentError

    packed = bytearray(gzip.compress(_data(200_000)))
    packed[len(packed) // 2] ^= 0xFF
    stream, _ = open_decompressed(io.BytesIO(bytes(packed)))
    with pytest.raises(ContentError, match="corrupt gzip"):
        stream.read()


def test_a_forked_child_makes_its_own_pool() -> None:
    """A warm start forks commands from a server: a pool made before the fork has no
    threads in the child, whose first gzip export must still work."""
    import os

    from dockyard.exporter import _compress

    parent_pool = _compress.compression_pool()
    assert parent_pool.submit(lambda: 1).result() == 1  # its threads exist here
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = b"0"
        try:
            pool = _compress.compression_pool()
            if pool is not parent_pool and pool.submit(lambda: 2).result(timeout=10) == 2:
                ok = b"1"
        finally:
            os.write(write_end, ok)
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
