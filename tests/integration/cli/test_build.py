"""``dockyard build`` on the embedded engine, as root: the README's example, every
output type, the image store, --iidfile/--metadata-file, secrets that leave no trace,
a forwarded SSH agent, build args, targets, --no-cache, rawjson progress, failures."""

from __future__ import annotations

import io
import json
import os
import secrets
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dockyard.cli.main import main
from tests.integration.conftest import need_tools

from .conftest import EXAMPLE, all_bytes_under, ssh_add_context


def build(state: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(state), *args])


def test_the_example_into_the_image_store(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iid, meta = tmp_path / "iid", tmp_path / "meta.json"
    code = build(
        state,
        "-t",
        "greeting",
        "--progress",
        "plain",
        "--iidfile",
        str(iid),
        "--metadata-file",
        str(meta),
        str(EXAMPLE),
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "[build 4/4] RUN sed" in err
    assert "naming to docker.io/library/greeting:latest" in err
    image_id = iid.read_text()
    assert image_id.startswith("sha256:")
    assert (
        f"Image docker.io/library/greeting:latest ({image_id}) stored in the image store of {state}"
        in err
    )
    metadata = json.loads(meta.read_text())
    assert metadata["containerimage.config.digest"] == image_id
    assert metadata["containerimage.digest"].startswith("sha256:")
    assert metadata["image.name"] == "docker.io/library/greeting:latest"
    assert metadata["containerimage.descriptor"]["digest"] == metadata["containerimage.digest"]

    assert main(["images", "--state-dir", str(state)]) == 0
    listing = capsys.readouterr().out
    assert any(
        line.split()[:3] == ["greeting", "latest", image_id[7:19]] for line in listing.splitlines()
    )

    # the files of the image: the program and what the RUN step wrote
    out = tmp_path / "rootfs"
    assert build(state, "-q", "-o", str(out), str(EXAMPLE)) == 0
    captured = capsys.readouterr()
    assert captured.out == "\n"  # -q with no image: an empty line, as buildx prints
    greet = out / "usr/local/bin/greet"
    assert greet.read_text() == '#!/bin/sh\necho "hello from dockyard"\ncat /etc/build-info.txt\n'
    assert stat.S_IMODE(greet.stat().st_mode) == 0o755
    assert (out / "etc/build-info.txt").read_text() == f"built for {os.uname().machine}\n"
    assert (out / "bin/busybox").is_file()


def test_an_iidfile_never_holds_an_earlier_builds_id(state: Path, tmp_path: Path) -> None:
    """As buildx: the file is removed before the build and written after it, empty when
    the build made no image (it kept the last image build's ID)."""
    iid = tmp_path / "iid"
    assert build(state, "-q", "-t", "app:iid", "--iidfile", str(iid), str(EXAMPLE)) == 0
    assert iid.read_text().startswith("sha256:")
    out = f"type=tar,dest={tmp_path / 'files.tar'}"
    assert build(state, "-q", "-o", out, "--iidfile", str(iid), str(EXAMPLE)) == 0
    assert iid.read_text() == ""
    assert build(state, "-q", "-t", "app:iid", "--iidfile", str(iid), str(EXAMPLE)) == 0
    assert iid.read_text().startswith("sha256:")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    assert build(state, "-q", "-t", "app:iid", "--iidfile", str(iid), str(ctx)) == 1
    assert not iid.exists()


def test_quiet_prints_the_image_id(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build(state, "-q", "-t", "greeting:q", str(EXAMPLE)) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("sha256:")
    assert len(captured.out.strip()) == 71
    assert captured.err == ""


def test_every_file_output(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS base\nRUN echo built > /built.txt\n"
        "FROM scratch\nCOPY --from=base /built.txt /\nCOPY hello.txt /\n"
    )
    (ctx / "hello.txt").write_text("hello\n")
    outputs = {
        "local": f"type=local,dest={tmp_path / 'dir'}",
        "tar": f"type=tar,dest={tmp_path / 'files.tar'}",
        "oci": f"type=oci,dest={tmp_path / 'oci.tar'},name=app:oci",
        "docker": f"type=docker,dest={tmp_path / 'docker.tar'}",
    }
    args = [a for spec in outputs.values() for a in ("-o", spec)]
    assert build(state, "--progress", "quiet", "-t", "app:docker", *args, str(ctx)) == 0
    assert (tmp_path / "dir" / "built.txt").read_text() == "built\n"
    assert (tmp_path / "dir" / "hello.txt").read_text() == "hello\n"
    with tarfile.open(tmp_path / "files.tar") as tar:
        assert sorted(tar.getnames()) == ["built.txt", "hello.txt"]
    with tarfile.open(tmp_path / "oci.tar") as tar:
        names = set(tar.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert (
        index["manifests"][0]["annotations"]["io.containerd.image.name"]
        == "docker.io/library/app:oci"
    )
    with tarfile.open(tmp_path / "docker.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["app:docker"]
    capsys.readouterr()

    # a tarball to stdout
    code = subprocess.run(
        [
            str(Path(sys.executable).parent / "dockyard"),
            "build",
            "--state-dir",
            str(state),
            "-o",
            "-",
            str(ctx),
        ],
        capture_output=True,
        check=False,
    )
    assert code.returncode == 0, code.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(code.stdout)) as tar:
        assert sorted(tar.getnames()) == ["built.txt", "hello.txt"]


def test_secrets_leave_no_trace(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "s3cr3t-" + secrets.token_hex(16)
    from_env = "env-" + secrets.token_hex(16)
    monkeypatch.setenv("DY_TEST_SECRET", from_env)
    (tmp_path / "token").write_text(token)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token --mount=type=secret,id=envtok "
        f'test "$(cat /run/secrets/token)" = "$(printf %s {token[:7]})$(cat /run/secrets/token | cut -c8-)" '
        "&& wc -c < /run/secrets/token > /token-length && wc -c < /run/secrets/envtok > /env-length\n"
    )
    out = tmp_path / "image.tar"
    code = build(
        state,
        "--progress",
        "plain",
        "--secret",
        f"id=token,src={tmp_path / 'token'}",
        "--secret",
        "id=envtok,env=DY_TEST_SECRET",
        "-t",
        "secretive",
        "-o",
        f"type=oci,dest={out}",
        str(ctx),
    )
    err = capsys.readouterr().err
    assert code == 0, err
    secret_bytes = (token.encode(), from_env.encode())
    for value in secret_bytes:
        assert value not in err.encode()
        for path, data in all_bytes_under(state):
            assert value not in data, f"a secret in {path}"
        assert value not in out.read_bytes()
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.isfile():
                blob = tar.extractfile(member)
                assert blob is not None
                data = blob.read()
                if data[:2] == b"\x1f\x8b":
                    import gzip

                    data = gzip.decompress(data)
                for value in secret_bytes:
                    assert value not in data
    # the step did see them
    files = tmp_path / "files"
    assert (
        build(
            state,
            "-q",
            "--secret",
            f"id=token,src={tmp_path / 'token'}",
            "--secret",
            "id=envtok,env=DY_TEST_SECRET",
            "-o",
            str(files),
            str(ctx),
        )
        == 0
    )
    assert (files / "token-length").read_text().strip() == str(len(token))
    assert (files / "env-length").read_text().strip() == str(len(from_env))


def test_a_forwarded_ssh_agent(
    state: Path,
    tmp_path: Path,
    ssh_agent: Path,
    ssh_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    ssh_add_context(ctx)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY tools/ /\n"
        "RUN --mount=type=ssh ssh-add -l > /keys.txt\n"
        "RUN --mount=type=ssh,id=deploy ssh-add -l > /deploy-keys.txt\n"
    )
    monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent))
    out = tmp_path / "out"
    code = build(
        state, "-q", "--ssh", "default", "--ssh", f"deploy={ssh_key[0]}", "-o", str(out), str(ctx)
    )
    assert code == 0
    for name in ("keys.txt", "deploy-keys.txt"):
        listing = (out / name).read_text()
        assert ssh_key[1] in listing
        assert "dockyard-build-test" in listing


def test_add_of_a_git_repository_over_ssh(
    state: Path,
    tmp_path: Path,
    ssh_agent: Path,
    ssh_key: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dockyard.testing.gitserver import GitSshServer, TestRepo

    tools = need_tools("sshd", "git")
    repo = TestRepo(tmp_path / "repos" / "app")
    repo.commit({"main.py": "print('over ssh')\n"}, "one")
    public = ssh_key[0].with_name(ssh_key[0].name + ".pub").read_text()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with GitSshServer(tmp_path / "sshd", public, sshd=tools["sshd"]) as sshd:
        (ctx / "Dockerfile").write_text(f"FROM scratch\nADD {sshd.url(repo.path)}#main /src\n")
        out = tmp_path / "out"
        # no agent forwarded: a clear error naming the flag
        assert build(state, "-q", "-o", str(out), str(ctx)) != 0
        assert "pass --ssh default" in capsys.readouterr().err
        monkeypatch.setenv("SSH_AUTH_SOCK", str(ssh_agent))
        assert build(state, "-q", "--ssh", "default", "-o", str(out), str(ctx)) == 0
        assert (out / "src" / "main.py").read_text() == "print('over ssh')\n"
        assert sshd.accepted() >= 1


def test_build_args_targets_and_no_cache(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS first\nARG WHO=nobody\nARG FROM_ENV\n"
        'RUN echo "$WHO/$FROM_ENV" > /who.txt && head -c 16 /dev/urandom | od -x > /random.txt\n'
        "FROM first AS second\n"
        "RUN echo second > /second.txt && head -c 16 /dev/urandom | od -x > /random2.txt\n"
        "FROM first AS unused\nRUN exit 1\n"
    )
    monkeypatch.setenv("FROM_ENV", "from the environment")

    def run(*args: str) -> Path:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert build(state, "--progress", "plain", *args, "-o", str(out), str(ctx)) == 0
        return out

    out = run("--build-arg", "WHO=me", "--build-arg", "FROM_ENV", "--target", "first")
    assert (out / "who.txt").read_text() == "me/from the environment\n"
    assert not (out / "second.txt").exists()
    first_random = (out / "random.txt").read_text()
    capsys.readouterr()

    out = run("--build-arg", "WHO=me", "--build-arg", "FROM_ENV", "--target", "second")
    assert (out / "second.txt").read_text() == "second\n"
    assert (out / "random.txt").read_text() == first_random  # from the cache
    assert "CACHED" in capsys.readouterr().err

    second_random = (out / "random2.txt").read_text()
    out = run(
        "--build-arg", "WHO=me", "--build-arg", "FROM_ENV", "--target", "second", "--no-cache"
    )
    assert (out / "random.txt").read_text() != first_random
    assert (out / "random2.txt").read_text() != second_random
    first_random = (out / "random.txt").read_text()
    second_random = (out / "random2.txt").read_text()

    # only the stage "second" without the cache
    out = run(
        "--build-arg", "WHO=me", "--build-arg", "FROM_ENV", "--target", "second",
        "--no-cache-filter", "second",
    )  # fmt: skip
    assert (out / "random.txt").read_text() == first_random
    assert (out / "random2.txt").read_text() != second_random
    second_random = (out / "random2.txt").read_text()

    # only the stage "first" without the cache: "second" is built FROM it, so its RUN
    # runs again on the new "first" (it kept the old one's result; found by differential
    # testing against docker 20.10's BuildKit, whose dependants of an ignore-cache step
    # can only hit by content)
    out = run(
        "--build-arg", "WHO=me", "--build-arg", "FROM_ENV", "--target", "second",
        "--no-cache-filter", "first",
    )  # fmt: skip
    assert (out / "random.txt").read_text() != first_random
    assert (out / "random2.txt").read_text() != second_random


def test_rawjson_progress_is_json_lines(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build(state, "--progress", "rawjson", "-t", "greeting:raw", str(EXAMPLE)) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    statuses = [json.loads(line) for line in lines]
    names = {v["name"] for s in statuses for v in s.get("vertexes") or []}
    assert any("RUN sed" in name for name in names)


def test_a_failing_run_exits_1_with_its_log(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        'FROM busybox\nRUN echo "getting ready" && echo "it broke" >&2 && exit 7\n'
    )
    for progress in ("plain", "quiet", "rawjson"):
        assert build(state, "--progress", progress, str(ctx)) == 1
        err = capsys.readouterr().err
        assert " > [2/2] RUN echo" in err
        assert "it broke" in err
        assert "Dockerfile:2" in err
        assert ">>> RUN echo" in err
        assert err.rstrip().splitlines()[-1] == (
            'ERROR: failed to solve: Dockerfile:2: process "/bin/sh -c echo "getting ready" && '
            'echo "it broke" >&2 && exit 7" did not complete successfully: exit code: 7'
        )


def test_check_mode(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox as base\nRUN exit 1\nCMD run\n")
    assert build(state, "--check", "--progress", "plain", str(ctx)) == 1
    err = capsys.readouterr().err
    assert "Check complete, 2 warnings have been found!" in err
    assert "FromAsCasing" in err
    assert "JSONArgsRecommended" in err
    assert "RUN exit 1" not in err  # nothing was built
    (ctx / "Dockerfile").write_text('FROM busybox AS base\nCMD ["run"]\n')
    assert build(state, "--check", str(ctx)) == 0
    assert "Check complete, no warnings found." in capsys.readouterr().err


def test_load_pipes_a_docker_tarball_into_docker_load(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    received = tmp_path / "loaded.tar"
    fake = bin_dir / "docker"
    fake.write_text(
        f'#!/bin/sh\n[ "$1" = load ] || exit 9\ncat > {received}\necho "Loaded image: greeting:load"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert build(state, "--load", "-t", "greeting:load", "--progress", "plain", str(EXAMPLE)) == 0
    assert "Loaded image: greeting:load" in capsys.readouterr().err
    with tarfile.open(received) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["greeting:load"]


def test_entitlements_are_asked_for_with_allow(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN --security=insecure grep CapEff /proc/self/status > /caps\n"
    )
    out = tmp_path / "out"
    assert build(state, "-q", "-o", str(out), str(ctx)) == 2
    assert "needs the security.insecure entitlement" in capsys.readouterr().err
    assert build(state, "-q", "--allow", "security.insecure", "-o", str(out), str(ctx)) == 0
    effective = int((out / "caps").read_text().split()[1], 16)
    assert effective & (1 << 21)  # CAP_SYS_ADMIN: a privileged step
