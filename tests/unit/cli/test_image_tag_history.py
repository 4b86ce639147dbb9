"""``dockyard image tag`` and ``dockyard image history`` on a state directory whose store
holds images made in memory (no root, no registry), and the usage errors of ``image
tag|push|pull``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.content import ContentStore, ImageStore
from dockyard.core import Digest
from dockyard.oci import Descriptor, History, ImageConfig, ImageManifest, MediaType
from dockyard.testing.registry import BuiltImage, build_image


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKYARD_WARM", "0")


async def _store(state: Path, name: str | None, image: BuiltImage) -> None:
    content = ContentStore(state / "content")
    try:
        for blob in (*image.blobs.values(), image.manifest_bytes):
            await content.write_blob(blob)
        with ImageStore.open(state, content) as images:
            await images.put(name, image.descriptor())
    finally:
        content.close()


async def _names(state: Path) -> dict[str, Digest]:
    content = ContentStore(state / "content")
    try:
        with ImageStore.open(state, content) as images:
            return {i.name: i.target.digest for i in await images.list()}
    finally:
        content.close()


def store(state: Path, name: str | None, image: BuiltImage) -> None:
    asyncio.run(_store(state, name, image))


def names(state: Path) -> dict[str, Digest]:
    return asyncio.run(_names(state))


def run(state: Path, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    capsys.readouterr()
    rc = main(["image", args[0], "--state-dir", str(state), *args[1:]])
    out, err = capsys.readouterr()
    assert rc == code, err
    assert "Traceback" not in err
    return out if code == 0 else err


def with_history(history: tuple[History, ...], layers: int) -> BuiltImage:
    """An image of ``layers`` layers whose config has ``history``."""
    base = build_image([{f"f{i}": "x" * (i + 1)} for i in range(layers)])
    config = ImageConfig.parse(base.config_bytes)
    config_bytes = ImageConfig(
        architecture=config.architecture,
        os=config.os,
        created=config.created,
        config=config.config,
        diff_ids=config.diff_ids,
        history=history,
    ).to_bytes()
    manifest = ImageManifest(
        media_type=MediaType.OCI_MANIFEST,
        config=Descriptor.of(MediaType.OCI_CONFIG, config_bytes),
        layers=base.manifest.layers,
    )
    blobs = dict(base.blobs)
    blobs[Digest.from_bytes(config_bytes)] = config_bytes
    return BuiltImage(
        manifest=manifest,
        manifest_bytes=manifest.to_bytes(),
        config=ImageConfig.parse(config_bytes),
        config_bytes=config_bytes,
        blobs=blobs,
        layer_tars=base.layer_tars,
    )


def test_tag_by_name_id_and_digest_and_moving_a_tag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    one = build_image([{"a": "1"}])
    two = build_image([{"a": "2"}])
    store(state, "docker.io/library/app:1", one)
    store(state, "example.com/team/two:latest", two)

    run(state, capsys, "tag", "app:1", "app:copy")
    run(state, capsys, "tag", str(one.manifest.config.digest)[7:19], "x")
    run(state, capsys, "tag", f"app@{one.digest}", "localhost:5000/y:v1")
    run(state, capsys, "tag", str(one.digest), "z:by-manifest-digest")
    found = names(state)
    for name in (
        "docker.io/library/app:copy",
        "docker.io/library/x:latest",
        "localhost:5000/y:v1",
        "docker.io/library/z:by-manifest-digest",
    ):
        assert found[name] == one.digest, name

    # tagging over an existing name moves it; the other names stay
    run(state, capsys, "tag", "example.com/team/two", "app:copy")
    found = names(state)
    assert found["docker.io/library/app:copy"] == two.digest
    assert found["docker.io/library/app:1"] == one.digest

    # a dangling image gets its first name (and is no longer dangling)
    three = build_image([{"a": "3"}])
    store(state, None, three)
    run(state, capsys, "tag", str(three.manifest.config.digest)[7:20], "three")
    found = names(state)
    assert found["docker.io/library/three:latest"] == three.digest
    assert f"<none>@{three.digest}" not in found


def test_tag_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    store(state, "docker.io/library/app:1", build_image([{"a": "1"}]))
    err = run(state, capsys, "tag", "app:1", "Bad/Name", code=2)
    assert "invalid image reference 'Bad/Name'" in err
    err = run(state, capsys, "tag", "app:1", f"app@sha256:{'a' * 64}", code=2)
    assert "refusing to create a tag with a digest reference" in err
    err = run(state, capsys, "tag", "nope", "other", code=1)
    assert err == "ERROR: No such image: nope\n"
    err = run(state, capsys, "tag", "app:1", "has space", code=2)
    assert "invalid image reference" in err
    assert "docker.io/library/has" not in str(names(state))


def test_image_commands_refuse_a_daemon_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_HOST", "unix:///run/elsewhere.sock")
    for args in (
        ["tag", "a", "b"],
        ["history", "a"],
        ["push", "localhost:5000/a:1"],
        ["pull", "localhost:5000/a:1"],
    ):
        assert main(["image", *args]) == 2, args
        err = capsys.readouterr().err
        assert "the image commands read a state directory, not a daemon" in err, err
        assert "(unix:///run/elsewhere.sock)" in err


def test_push_and_pull_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    cases = {
        ("push", f"localhost:5000/a@sha256:{'b' * 64}"): "cannot push a digest reference",
        ("push", "-a", "localhost:5000/a:1"): "tag can't be used with --all-tags",
        ("push", "app/Upper"): "invalid image reference",
        ("pull", "app/Upper:1"): "invalid image reference",
        ("pull", "--platform", "linux/arm64", "-a", "x"): "exclude each other",
        ("pull", "--platform", "foo/bar/baz/qux", "x"): "--platform",
    }
    for args, message in cases.items():
        err = run(state, capsys, *args, code=2)
        assert message in err, (args, err)


def test_history_rows_sizes_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    long_run = "RUN /bin/sh -c apk add --no-cache curl ca-certificates\tgit # buildkit"
    history = (
        History(created="2024-01-01T00:00:00Z", created_by="ADD rootfs.tar / # buildkit"),
        History(created="2024-01-02T00:00:00Z", created_by="ENV A=1", empty_layer=True),
        History(
            created="2024-01-03T00:00:00Z", created_by=long_run, comment="buildkit.dockerfile.v0"
        ),
    )
    image = with_history(history, 2)
    store(state, "docker.io/library/app:1", image)
    image_id = str(image.manifest.config.digest)
    sizes = [layer.size for layer in image.manifest.layers]

    out = run(state, capsys, "history", "app:1")
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(lines) == 4
    assert lines[1].startswith(image_id[7:19] + " ")
    assert lines[2].startswith("<missing> ")
    assert lines[3].startswith("<missing> ")
    truncated = long_run.replace("\t", " ")[:44] + "…"
    assert truncated in lines[1]
    assert "buildkit.dockerfile.v0" in lines[1]
    assert lines[1].split("…")[1].split()[0] == f"{sizes[1]}B"
    assert " 0B" in lines[2]
    assert "ENV A=1" in lines[2]
    assert f" {sizes[0]}B" in lines[3]

    assert run(state, capsys, "history", "-q", "app:1").split() == [
        image_id[7:19],
        "<missing>",
        "<missing>",
    ]
    assert run(state, capsys, "history", "-q", "--no-trunc", "app:1").split()[0] == image_id

    rows = [json.loads(line) for line in run(state, capsys, "history", "--format", "json",
                                                "--no-trunc", "--human", "false",
                                                image_id[7:]).splitlines()]  # fmt: skip
    assert [r["ID"] for r in rows] == [image_id, "<missing>", "<missing>"]
    assert rows[0]["CreatedBy"] == long_run.replace("\t", " ")
    assert rows[0]["Comment"] == "buildkit.dockerfile.v0"
    assert [r["Size"] for r in rows] == [str(sizes[1]), "0", str(sizes[0])]
    assert rows[2]["CreatedAt"].startswith("202")
    assert rows[2]["CreatedSince"] == rows[2]["CreatedAt"]
    assert set(rows[0]) == {"Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size"}


def test_history_of_layers_without_entries_and_of_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Layers the config's history does not account for still get a row each (as
    docker shows images without history)."""
    state = tmp_path / "state"
    image = with_history((), 2)
    store(state, "docker.io/library/bare:1", image)
    rows = [
        json.loads(line)
        for line in run(state, capsys, "history", "--format", "json", "bare:1").splitlines()
    ]
    assert len(rows) == 2
    assert [r["CreatedBy"] for r in rows] == ["", ""]
    assert rows[0]["CreatedSince"] == "N/A"

    err = run(state, capsys, "history", "nothing", code=1)
    assert err == "ERROR: No such image: nothing\n"


def test_a_new_name_gives_the_state_dir_a_new_generation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A build remembered while ``app:2`` was missing may have found it in a registry; a
    tag that adds the name must make the remembered build doubtful (the no-op replay)."""
    from dockyard.core.statedir import read_generation

    state = tmp_path / "state"
    store(state, "docker.io/library/app:1", build_image([{"a": "1"}]))
    before = read_generation(state)
    run(state, capsys, "tag", "app:1", "app:2")
    after = read_generation(state)
    assert after != before
    run(state, capsys, "tag", "app:1", "app:2")  # nothing changed
    assert read_generation(state) == after
