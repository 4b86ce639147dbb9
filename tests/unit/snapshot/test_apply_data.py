"""Regular files' data in :func:`apply_tar`: read straight from the stream, contents and
the diff_id exact, a tar that ends inside a file refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.core import ContentError, Digest
from dockyard.snapshot._apply import apply_tar


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid, info.gid = os.getuid(), os.getgid()
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_file_data_of_every_size_lands_whole(tmp_path: Path) -> None:
    files = {
        "empty": b"",
        "one": b"1",
        "block": os.urandom(512),
        "odd": os.urandom(513),
        "big": os.urandom((3 << 20) + 17),  # more than one read
        "after": b"the member after a big one",
    }
    raw = _tar(files)
    result = apply_tar(io.BytesIO(raw), str(tmp_path), None)
    assert result.diff_id == Digest.from_bytes(raw)
    assert result.size == len(raw)
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640


def test_a_tar_ending_inside_a_file_is_refused(tmp_path: Path) -> None:
    raw = _tar({"big": os.urandom(100_000)})
    with pytest.raises(ContentError, match="truncated"):
        apply_tar(io.BytesIO(raw[:50_000]), str(tmp_path), None)


class _SelfHashed(io.BytesIO):
    """A stream that hashes itself (as the layer unpacker's read-ahead does)."""

    def __init__(self, data: bytes, claim: tuple[str, int]) -> None:
        super().__init__(data)
        self.claim = claim
        self.asked = 0

    def sha256_of_all(self) -> tuple[str, int]:
        self.asked += 1
        return self.claim


def test_a_stream_that_hashes_itself_gives_the_diff_id(tmp_path: Path) -> None:
    raw = _tar({"f": b"data"})
    stream = _SelfHashed(raw, (str(Digest.from_bytes(raw)), len(raw)))
    (tmp_path / "a").mkdir()
    result = apply_tar(stream, str(tmp_path / "a"), None)
    assert stream.asked == 1
    assert result.diff_id == Digest.from_bytes(raw)
    assert result.size == len(raw)
    wrong_size = _SelfHashed(raw, (str(Digest.from_bytes(raw)), len(raw) - 1))
    (tmp_path / "b").mkdir()
    with pytest.raises(ContentError, match="hashed"):
        apply_tar(wrong_size, str(tmp_path / "b"), None)
