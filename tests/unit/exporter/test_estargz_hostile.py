"""eStargz against hostile input (security audit 2, rows 53-55): a layer holding the TOC's
own name is refused (a lazy puller would hide that file); the check of a pulled blob
(``existing_estargz``) only ever answers ``None`` for a damaged or lying blob, whatever
its footer claims, and bounds what it inflates of the TOC member."""

from __future__ import annotations

import io
import random
import tarfile
import zlib

import pytest

from dockyard.core import ContentError
from dockyard.exporter._estargz import (
    FOOTER_SIZE,
    EStargzWriter,
    estargz_footer,
    existing_estargz,
)


def _tar(names: list[str], *, pax: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 3
            info.mtime = 1_700_000_000
            info.pax_headers = dict(pax or {})
            tf.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def _write_all(tar: bytes) -> None:
    writer = EStargzWriter(io.BytesIO(), chunk_size=1024, block_size=4096)
    writer.write(tar)
    writer.close()


def _estargz(tar: bytes) -> bytes:
    out = io.BytesIO()
    writer = EStargzWriter(out, chunk_size=1024, block_size=4096)
    writer.write(tar)
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize(
    "name", ["stargz.index.json", "./stargz.index.json", "a/../stargz.index.json"]
)
def test_a_layer_holding_the_tocs_name_is_refused(name: str) -> None:
    with pytest.raises(ContentError, match=r"stargz\.index\.json"):
        _write_all(_tar(["etc/passwd", name]))


def test_the_tocs_name_deeper_in_the_tree_is_an_ordinary_file() -> None:
    blob = _estargz(_tar(["etc/stargz.index.json"]))
    assert existing_estargz(io.BytesIO(blob)) is not None


@pytest.mark.parametrize("mtime", ["inf", "-inf", "nan", "1e400"])
def test_a_pax_time_that_is_no_time_is_a_content_error(mtime: str) -> None:
    with pytest.raises(ContentError, match="mtime"):
        _write_all(_tar(["f"], pax={"mtime": mtime}))


def test_a_footer_may_name_any_offset() -> None:
    blob = _estargz(_tar(["a", "b"]))
    assert existing_estargz(io.BytesIO(blob)) is not None
    body = blob[:-FOOTER_SIZE]
    for offset in (0, 1, len(body) - 1, len(body), len(blob), 2**63, 2**64 - 1):
        assert existing_estargz(io.BytesIO(body + estargz_footer(offset))) is None


def test_a_damaged_blob_is_never_an_error() -> None:
    blob = _estargz(_tar([f"f{i}" for i in range(5)]))
    rnd = random.Random(5)
    for _ in range(3000):
        damaged = bytearray(blob)
        for _ in range(rnd.randint(1, 4)):
            # the footer and the TOC member are where the parser looks
            pos = len(damaged) - rnd.randrange(1, 700) if rnd.random() < 0.7 else 0
            damaged[max(pos, 0)] = rnd.randrange(256)
        result = existing_estargz(io.BytesIO(bytes(damaged)))
        assert result is None or result[1] > 0


def test_a_toc_member_that_inflates_without_end_is_not_read_whole() -> None:
    # a TOC member of 64 KiB of zeros that inflates to 64 MiB: the check stops at its
    # limit (here 1 MiB) and says "not eStargz"
    layer = _estargz(_tar(["a"]))
    body = layer[:-FOOTER_SIZE]
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(b"\0" * (64 << 20)) + compressor.flush()
    blob = body + bomb + estargz_footer(len(body))
    assert existing_estargz(io.BytesIO(blob), max_toc=1 << 20) is None
