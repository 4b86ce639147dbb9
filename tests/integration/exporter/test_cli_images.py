"""``dockyard images|rmi|image import|load|save`` round trips on a state directory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from tests.integration.conftest import need_tools


class Cli:
    def __init__(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.state = state
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        rc = main(
            [*args[:2], "--state-dir", str(self.state), *args[2:]]
            if args[0] == "image"
            else [args[0], "--state-dir", str(self.state), *args[1:]]
        )
        captured = self.capsys.readouterr()
        assert rc == code, f"dockyard {' '.join(args)} exited {rc}: {captured.err}"
        return captured.out if code == 0 else captured.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "state", capsys)


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()[1:]]


def test_import_list_save_rmi_load(cli: Cli, busybox_rootfs: Path, tmp_path: Path) -> None:
    image_id = cli("image", "import", str(busybox_rootfs), "-t", "bb:1").strip()
    assert image_id.startswith("sha256:")
    rows = _rows(cli("images"))
    assert [r[:3] for r in rows] == [["bb", "1", image_id[7:19]]]
    assert cli("images", "-q").split() == [image_id[7:19]]
    assert cli("images", "-q", "--no-trunc").split() == [image_id]

    archive = tmp_path / "bb.tar"
    cli("image", "save", "bb:1", "-o", str(archive))
    with tarfile.open(archive) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["bb:1"]
    need_tools("skopeo")
    subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"], check=True, capture_output=True
    )

    out = cli("rmi", "bb:1")
    assert out.splitlines() == ["Untagged: bb:1", f"Deleted: {image_id}"]
    assert _rows(cli("images")) == []
    err = cli("rmi", "bb:1", code=1)
    assert "No such image: bb:1" in err

    out = cli("image", "load", "-i", str(archive))
    assert out.strip() == "Loaded image: bb:1"
    assert cli("images", "-q", "--no-trunc").split() == [image_id]
    inspected: list[dict[str, Any]] = json.loads(cli("image", "inspect", "bb:1"))
    assert inspected[0]["Id"] == image_id
    assert inspected[0]["RepoTags"] == ["bb:1"]
    assert inspected[0]["Config"]["history"][0]["comment"].startswith("Imported from")


def test_import_a_compressed_tarball_from_stdin(
    cli: Cli, busybox_rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tgz = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-czf", str(tgz), "."], check=True)

    class Stdin:
        buffer = io.BytesIO(tgz.read_bytes())

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdin", Stdin())
    image_id = cli("image", "import", "-", "reg.test/rootfs:v1", "-m", "from stdin").strip()
    rows = _rows(cli("images", "reg.test/rootfs"))
    assert [r[:3] for r in rows] == [["reg.test/rootfs", "v1", image_id[7:19]]]
    inspected = json.loads(cli("image", "inspect", image_id[7:15]))
    assert inspected[0]["Config"]["history"][0]["comment"] == "from stdin"
    # the layer is the tarball's content: unpacking it gives the tree back (an OCI
    # archive has OCI media types, which umoci needs, even for a Docker-typed image)
    need_tools("umoci")
    layout = tmp_path / "layout"
    cli("image", "save", "--format", "oci", "-o", str(tmp_path / "o.tar"), "reg.test/rootfs:v1")
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "o.tar"), "-C", str(layout)], check=True)
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:v1", str(tmp_path / "bundle")],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "bundle" / "rootfs" / "bin" / "busybox").is_file()


def test_rmi_by_id_with_several_names_needs_force(
    cli: Cli, busybox_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one image under two names: both imports must stamp the same creation time (two
    # imports a second boundary apart are two images)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image_id = cli("image", "import", str(busybox_rootfs), "-t", "one").strip()
    cli("image", "import", str(busybox_rootfs), "-t", "two")
    err = cli("rmi", image_id[7:19], code=1)
    assert "referenced in multiple repositories" in err
    out = cli("rmi", "-f", image_id[7:19])
    assert sorted(out.splitlines()) == sorted(
        ["Untagged: one:latest", "Untagged: two:latest", f"Deleted: {image_id}"]
    )
    assert _rows(cli("images")) == []


def test_load_archives_made_by_skopeo(cli: Cli, busybox_rootfs: Path, tmp_path: Path) -> None:
    need_tools("skopeo")
    cli("image", "import", str(busybox_rootfs), "-t", "src:1")
    oci = tmp_path / "oci.tar"
    cli("image", "save", "--format", "oci", "-o", str(oci), "src:1")
    docker = tmp_path / "docker.tar"
    subprocess.run(
        ["skopeo", "copy", f"oci-archive:{oci}:1", f"docker-archive:{docker}:copied:2"],
        check=True,
        capture_output=True,
    )
    out = cli("image", "load", "-i", str(docker))
    assert out.strip() == "Loaded image: copied:2"
    names = {tuple(r[:2]) for r in _rows(cli("images"))}
    assert names == {("src", "1"), ("copied", "2")}


def test_bad_input_is_reported(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    assert "not a tar archive" in cli("image", "import", str(junk), "-t", "x", code=1)
    assert "not an image archive" in cli("image", "load", "-i", str(junk), code=1)
    assert "does not exist" in cli("image", "load", "-i", str(tmp_path / "nope.tar"), code=1)
    assert "No such image" in cli("image", "save", "-o", str(tmp_path / "o.tar"), "ghost", code=1)
    assert cli("image", "import", str(junk), "-t", "UPPER", code=2)
    assert _rows(cli("images")) == []


def test_the_image_commands_refuse_a_daemon_address_without_a_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKYARD_STATE_DIR", raising=False)
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    assert main(["--addr", "unix:///run/elsewhere.sock", "images"]) == 2
    assert "not a daemon (unix:///run/elsewhere.sock)" in capsys.readouterr().err
    monkeypatch.setenv("DOCKYARD_HOST", "tcp://127.0.0.1:1")
    assert main(["rmi", "busybox"]) == 2
    assert "pass --state-dir" in capsys.readouterr().err
    # with the daemon's state directory named, they work on it
    assert main(["images", "--state-dir", str(tmp_path / "state")]) == 0
    assert "REPOSITORY" in capsys.readouterr().out


def test_rmi_says_deleted_only_when_no_name_keeps_the_image_id(
    cli: Cli, busybox_rootfs: Path, tmp_path: Path
) -> None:
    # bb:1 loaded from an OCI archive has a manifest of its own (OCI media types) while
    # bb:2 keeps the Docker-typed one: two targets, one image ID, as docker counts images
    image_id = cli("image", "import", str(busybox_rootfs), "-t", "bb:1").strip()
    cli("image", "tag", "bb:1", "bb:2")
    archive = tmp_path / "oci.tar"
    cli("image", "save", "--format", "oci", "-o", str(archive), "bb:1")
    cli("image", "load", "-i", str(archive))
    digests = {r[2] for r in _rows(cli("images", "--digests"))}
    assert len(digests) == 2
    assert cli("rmi", "bb:1").splitlines() == ["Untagged: bb:1"]
    assert cli("rmi", "bb:2").splitlines() == ["Untagged: bb:2", f"Deleted: {image_id}"]
