from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.core import ContentError, Digest
from dockyard.registry import BlobReader, BlobSink, BytesReader, BytesSink, FileReader, FileSink


def _listdir(path: Path) -> list[Path]:
    return list(path.iterdir())


async def test_file_sink_commits_atomically(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    sink = FileSink(target)
    assert isinstance(sink, BlobSink)
    data = b"x" * (3 << 20) + b"tail"
    await sink.write(b"garbage")
    await sink.reset()
    for i in range(0, len(data), 65536):
        await sink.write(data[i : i + 65536])
    assert not target.exists()  # nothing visible before commit
    await sink.commit(Digest.from_bytes(data), len(data))
    assert target.read_bytes() == data
    assert sorted(p.name for p in _listdir(tmp_path)) == ["blob"]


async def test_file_sink_abort_leaves_nothing(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "blob")
    await sink.write(b"x" * (2 << 20))
    await sink.abort()
    assert _listdir(tmp_path) == []


async def test_file_sink_refuses_wrong_size(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "blob")
    await sink.write(b"abc")
    with pytest.raises(ContentError, match="wrote 3 bytes, not 4"):
        await sink.commit(Digest.from_bytes(b"abcd"), 4)
    await sink.abort()
    assert _listdir(tmp_path) == []


async def test_bytes_sink_verifies() -> None:
    sink = BytesSink()
    await sink.write(b"abc")
    with pytest.raises(ContentError):
        await sink.commit(Digest.from_bytes(b"abd"), 3)
    await sink.commit(Digest.from_bytes(b"abc"), 3)
    assert sink.data == b"abc"


async def test_readers(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 10)
    for reader in (FileReader(path, chunk_size=100), BytesReader(path.read_bytes(), 100)):
        assert isinstance(reader, BlobReader)
        assert b"".join([c async for c in reader.read()]) == path.read_bytes()
        assert b"".join([c async for c in reader.read(2500)]) == path.read_bytes()[2500:]


def test_reference_parsing_does_not_load_httpx() -> None:
    code = (
        "import sys\n"
        "import dockyard.registry as r\n"
        "r.Reference.parse('busybox'); r.RegistryConfig()\n"
        "assert 'httpx' not in sys.modules, 'httpx imported'\n"
        "assert 'asyncio' not in sys.modules, 'asyncio imported'\n"
        "r.RegistryClient\n"
        "assert 'httpx' not in sys.modules, 'httpx imported with the client module'\n"
        "r.RegistryClient().statistics()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
