"""``dockyard build --annotation`` on the embedded engine: manifest and descriptor
annotations of a single-platform OCI tarball, index and platform-qualified ones of a
multi-platform build, and the refusal of an index annotation without an index."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from tests.integration.platforms import CROSS, MULTI


def _build(state: Path, tmp_path: Path, *args: str) -> int:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(CROSS)
    return main(["build", "--state-dir", str(state), "--progress", "plain", *args, str(ctx)])


def _blob(tar: tarfile.TarFile, digest: str) -> Any:
    algorithm, hex_digest = digest.split(":")
    member = tar.extractfile(f"blobs/{algorithm}/{hex_digest}")
    assert member is not None
    return json.load(member)


def test_manifest_and_descriptor_annotations(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "image.tar"
    code = _build(
        state, tmp_path,
        "--annotation", "org.opencontainers.image.title=demo",
        "--annotation", "manifest-descriptor:org.example.where=descriptor",
        "-o", f"type=oci,dest={out},annotation.org.example.own=1",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        (entry,) = index["manifests"]
        manifest = _blob(tar, entry["digest"])
    assert manifest["annotations"]["org.opencontainers.image.title"] == "demo"
    assert manifest["annotations"]["org.example.own"] == "1"  # the output's own too
    assert entry["annotations"]["org.example.where"] == "descriptor"
    assert "org.example.where" not in manifest["annotations"]


def test_index_and_platform_annotations_of_a_multi_platform_build(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "multi.tar"
    code = _build(
        state, tmp_path,
        "--platform", MULTI,
        "--annotation", "index,manifest:org.example.both=yes",
        "--annotation", "manifest[linux/arm64]:org.example.arch=arm",
        "-o", f"type=oci,dest={out}",
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    with tarfile.open(out) as tar:
        layout = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        (top,) = layout["manifests"]
        index = _blob(tar, top["digest"])
        manifests = {
            m["platform"]["architecture"]: _blob(tar, m["digest"]) for m in index["manifests"]
        }
    assert index["annotations"]["org.example.both"] == "yes"
    assert set(manifests) == {"amd64", "arm64"}
    for manifest in manifests.values():
        assert manifest["annotations"]["org.example.both"] == "yes"
    assert manifests["arm64"]["annotations"]["org.example.arch"] == "arm"
    assert "org.example.arch" not in manifests["amd64"]["annotations"]


def test_an_index_annotation_needs_an_index(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _build(
        state, tmp_path, "--annotation", "index:org.example.i=1",
        "-o", f"type=oci,dest={tmp_path / 'single.tar'}",
    )  # fmt: skip
    assert code == 2  # a usage error, found at the export as BuildKit's image writer does
    assert "index annotations not supported for single platform export" in (capsys.readouterr().err)
    assert not (tmp_path / "single.tar").exists()
