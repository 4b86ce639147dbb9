"""Attestation statement files written into a local export's directory, which holds the
exported tree (what an image put there)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.core import DockyardError
from dockyard.exporter._exporters import _write_files


def test_files_are_written_with_their_mode_and_time(tmp_path: Path) -> None:
    _write_files(tmp_path, [("linux_amd64/provenance.json", b"{}")], 1_700_000_000)
    out = tmp_path / "linux_amd64" / "provenance.json"
    assert out.read_bytes() == b"{}"
    st = out.stat()
    assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o600, 1_700_000_000)
    assert sorted(os.listdir(out.parent)) == ["provenance.json"]  # no temporary left


def test_a_file_linked_to_another_is_replaced_not_written_through(tmp_path: Path) -> None:
    keep = tmp_path / "etc-passwd"
    keep.write_bytes(b"image file\n")
    os.link(keep, tmp_path / "sbom.spdx.json")
    os.link(keep, tmp_path / ".sbom.spdx.json.tmp")  # the name the writer once used
    _write_files(tmp_path, [("sbom.spdx.json", b"statement")], None)
    assert keep.read_bytes() == b"image file\n"
    assert (tmp_path / "sbom.spdx.json").read_bytes() == b"statement"


def test_a_parent_that_is_a_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "linux_amd64").symlink_to(outside)
    with pytest.raises(DockyardError, match="is not a directory"):
        _write_files(root, [("linux_amd64/provenance.json", b"{}")], None)
    assert list(outside.iterdir()) == []
