"""``dockyard build --provenance version=v1`` and max mode's BuildKit metadata end to end:
a local context in a git work tree sends buildx's ``vcs:*`` attributes (its remote's
URL without credentials), the predicate carries the Dockerfile's source map and the
layers of the exported image, a remote context lists no local directories, and
``#hermetic`` says whether any step had network access."""

from __future__ import annotations

import base64
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from dockyard.testing.gitserver import GitHttpServer, TestRepo
from tests.integration.conftest import need_tools

PASSWORD = "pw-0b7e44c1"
DOCKERFILE = """\
FROM busybox
COPY hello.txt /hello.txt
RUN --network=none cp /hello.txt /copy.txt
"""
V1 = "https://slsa.dev/provenance/v1"


def _build(state: Path, *args: str) -> list[str]:
    return ["build", "--state-dir", str(state), "--progress", "plain", *args]


def _statement(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def repo(tmp_path: Path) -> TestRepo:
    need_tools("git")
    repo = TestRepo(tmp_path / "work")
    repo.commit({"Dockerfile": DOCKERFILE, "hello.txt": "hello\n"}, "one")
    repo.git("remote", "add", "origin", f"https://builder:{PASSWORD}@example.com/team/app.git")
    return repo


def test_v1_max_of_a_git_work_tree(
    state: Path, tmp_path: Path, repo: TestRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        _build(state, "--provenance", "mode=max,version=v1", "-o", f"type=local,dest={out}",
               str(repo.path))
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    text = (out / "provenance.json").read_text()
    assert PASSWORD not in text
    assert "builder@" not in text
    statement = json.loads(text)
    assert statement["predicateType"] == V1
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == (
        "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
    )
    assert definition["externalParameters"]["configSource"] == {"path": "Dockerfile"}
    request = definition["externalParameters"]["request"]
    assert request["frontend"] == "dockerfile.v0"
    assert {"name": "context"} in request["locals"]
    assert not any(k.startswith("vcs:") for k in request.get("args", {}))
    internal = definition["internalParameters"]
    assert internal["builderPlatform"].startswith("linux/")
    steps = internal["buildConfig"]["llbDefinition"]
    assert steps[-1]["op"] == {}  # the terminal op, last as BuildKit lists it
    assert next(d["uri"] for d in definition["resolvedDependencies"]).startswith("pkg:docker/")
    metadata = statement["predicate"]["runDetails"]["metadata"]
    assert len(metadata["invocationId"]) == 25
    assert metadata["startedOn"] <= metadata["finishedOn"]
    buildkit = metadata["buildkit_metadata"]
    assert buildkit["vcs"] == {
        "localdir:context": ".",
        "localdir:dockerfile": ".",
        "revision": repo.rev_parse("HEAD"),
        "source": "https://example.com/team/app.git",
    }
    (info,) = buildkit["source"]["infos"]
    assert info["filename"] == "Dockerfile"
    assert info["language"] == "Dockerfile"
    assert base64.b64decode(info["data"]).decode() == DOCKERFILE
    run = next(s["id"] for s in steps if "exec" in s["op"].get("Op", {}))
    (location,) = buildkit["source"]["locations"][run]["locations"]
    assert location["ranges"] == [{"start": {"line": 3}, "end": {"line": 3}}]
    assert "buildkit_hermetic" not in metadata  # the context is a local directory
    assert metadata["buildkit_completeness"] == {"request": True, "resolvedDependencies": False}


def test_v1_min_and_no_vcs_when_turned_off(
    state: Path,
    tmp_path: Path,
    repo: TestRepo,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUILDX_GIT_INFO", "false")
    out = tmp_path / "out"
    code = main(
        _build(state, "--attest", "type=provenance,version=v1", "-o", f"type=local,dest={out}",
               str(repo.path))
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    predicate = _statement(out / "provenance.json")["predicate"]
    assert "buildConfig" not in predicate["buildDefinition"]["internalParameters"]
    assert predicate["runDetails"]["metadata"]["buildkit_metadata"] == {}


def test_max_mode_lists_the_image_layers(
    state: Path, tmp_path: Path, repo: TestRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    """The layers of each step are known once the image export made them: the last
    step's chain is the image's layers (v0.2 here, the default version)."""
    oci = tmp_path / "image.tar"
    code = main(
        _build(state, "--provenance", "mode=max", "-o", f"type=oci,dest={oci}", str(repo.path))
    )
    assert code == 0, capsys.readouterr().err
    with tarfile.open(oci) as tf:

        def blob(digest: str) -> Any:
            member = tf.extractfile("blobs/sha256/" + digest.removeprefix("sha256:"))
            assert member is not None
            return json.loads(member.read())

        index = blob(json.load(tf.extractfile("index.json"))["manifests"][0]["digest"])  # type: ignore[arg-type]
        image, attestation = index["manifests"]
        manifest = blob(image["digest"])
        statement = blob(blob(attestation["digest"])["layers"][0]["digest"])
    assert statement["predicateType"] == "https://slsa.dev/provenance/v0.2"
    metadata = statement["predicate"]["metadata"]
    layers = metadata["https://mobyproject.org/buildkit@v1#metadata"]["layers"]
    mapping = statement["predicate"]["buildConfig"]["digestMapping"]
    steps = statement["predicate"]["buildConfig"]["llbDefinition"]
    last = next(s for s in steps if s["op"] == {})["inputs"][0]  # the result's step
    chain = [{k: d[k] for k in ("mediaType", "digest", "size")} for d in manifest["layers"]]
    assert layers[last] == [chain]
    assert all(key.split(":")[0] in mapping.values() for key in layers)
    assert "https://mobyproject.org/buildkit@v1#hermetic" not in metadata


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[TestRepo, GitHttpServer]]:
    need_tools("git")
    repo = TestRepo(tmp_path / "repos" / "proj.git")
    repo.commit({"Dockerfile": "FROM scratch\nCOPY hello.txt /\n", "hello.txt": "hi\n"}, "one")
    repo.branch("net")
    repo.checkout("net")
    repo.commit({"Dockerfile": "FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt\n"}, "run")
    repo.checkout("main")
    with GitHttpServer(tmp_path / "repos") as server:
        yield repo, server


@pytest.mark.parametrize("version", ["v0.2", "v1"])
def test_remote_context_lists_no_locals_and_is_hermetic(
    state: Path,
    tmp_path: Path,
    git_server: tuple[TestRepo, GitHttpServer],
    capsys: pytest.CaptureFixture[str],
    version: str,
) -> None:
    """BuildKit lists no local sources for a remote context: the client served the
    checkout it fetched, but the predicate names it by URL and commit, so the
    materials are complete — and with no step having network access, hermetic."""
    repo, server = git_server
    url = server.url("proj.git") + "#main"
    out = tmp_path / "out"
    code = main(
        _build(state, "--provenance", f"mode=min,version={version}",
               "-o", f"type=local,dest={out}", url)
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    predicate = _statement(out / "provenance.json")["predicate"]
    commit = {"sha1": repo.rev_parse("main")}
    if version == "v1":
        request = predicate["buildDefinition"]["externalParameters"]["request"]
        assert "locals" not in request
        assert {"uri": url, "digest": commit} in predicate["buildDefinition"][
            "resolvedDependencies"
        ]
        metadata = predicate["runDetails"]["metadata"]
        assert metadata["buildkit_hermetic"] is True
        assert metadata["buildkit_completeness"]["resolvedDependencies"] is True
    else:
        assert "locals" not in predicate["invocation"]["parameters"]
        assert {"uri": url, "digest": commit} in predicate["materials"]
        metadata = predicate["metadata"]
        assert metadata["https://mobyproject.org/buildkit@v1#hermetic"] is True
        assert metadata["completeness"]["materials"] is True


def test_a_step_with_network_access_is_not_hermetic(
    state: Path,
    tmp_path: Path,
    git_server: tuple[TestRepo, GitHttpServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Complete materials (a remote context, a pinned base image) but a RUN with the
    default network: not hermetic, as BuildKit computes it."""
    _repo, server = git_server
    url = server.url("proj.git") + "#net"
    out = tmp_path / "out"
    code = main(
        _build(state, "--provenance", "mode=max,version=v1", "-o", f"type=local,dest={out}", url)
    )
    assert code == 0, capsys.readouterr().err
    predicate = _statement(out / "provenance.json")["predicate"]
    metadata = predicate["runDetails"]["metadata"]
    assert metadata["buildkit_completeness"]["resolvedDependencies"] is True
    assert "buildkit_hermetic" not in metadata
    assert "locals" not in predicate["buildDefinition"]["externalParameters"]["request"]
