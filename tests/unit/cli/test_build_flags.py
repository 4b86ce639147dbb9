"""``dockyard build``'s flags parsed into BuildOptions (nothing is built: the run is
replaced), and bad flags as usage errors (exit code 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli import _build, _hints, _memo
from dockyard.cli.main import main
from dockyard.client import BuildOptions, CacheSpec, Client
from dockyard.core import Platform, host_platform
from dockyard.exporter import LocalExport, LocalPath, OciExport, Stdout, TarExport
from dockyard.session import SecretSource, SshSpec


@pytest.fixture(autouse=True)
def _no_daemon_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)


class Captured:
    client: Client
    options: BuildOptions
    kwargs: dict[str, Any]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    seen = Captured()

    def fake_run(client: Client, options: BuildOptions, **kwargs: Any) -> int:
        seen.client, seen.options, seen.kwargs = client, options, kwargs
        return 0

    monkeypatch.setattr(_build, "run_build", fake_run)
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    return seen


def build(tmp_path: Path, *args: str) -> int:
    return main(["build", "--state-dir", str(tmp_path / "state"), *args])


def test_defaults(captured: Captured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert build(tmp_path, ".") == 0
    options = captured.options
    assert options.context == "."
    assert options.dockerfile is None
    assert options.tags == ()
    assert options.outputs == ()
    assert options.network == "default"
    for flag in (options.push, options.load, options.no_cache, options.pull, options.check):
        assert not flag
    assert captured.client.mode == "embedded"  # a state directory: the embedded engine
    memo = captured.kwargs.pop("memo")  # a plain build on a local context may be replayed
    assert isinstance(memo, _memo.Memo)
    assert memo.state_dir == tmp_path / "state"
    hints = captured.kwargs.pop("hints")  # a local context: its walks are remembered
    assert isinstance(hints, _hints.WalkHints)
    assert hints.requests == options.prefetch == ()  # nothing built before
    assert captured.kwargs == {
        "progress": "auto",
        "quiet": False,
        "iidfile": None,
        "metadata_file": None,
        "call_format": "text",
    }


def test_every_flag(captured: Captured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_ENV", "env value")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("UNSET_ARG", raising=False)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    (tmp_path / "named").mkdir()
    platform = str(host_platform())
    code = build(
        tmp_path,
        "-f", "other/Dockerfile",
        "-t", "app", "--tag", "app:2",
        "--build-arg", "A=1", "--build-arg", "FROM_ENV", "--build-arg", "UNSET_ARG",
        "--build-arg", "EMPTY=",
        "--target", "final",
        "--platform", platform,
        "--secret", "id=token,src=/run/token", "--secret", "id=pw,env=PASSWORD",
        "--ssh", "default", "--ssh", "deploy=/keys/id_ed25519",
        "-o", "type=local,dest=out", "--output", "type=tar,dest=-", "-o", "dir2",
        "-o", "type=oci,dest=img.tar,name=x",
        "--push", "--load",
        "--cache-from", "type=local,src=/c", "--cache-to", "type=local,dest=/d,mode=max",
        "--no-cache", "--no-cache-filter", "a,b", "--no-cache-filter", "c",
        "--progress", "rawjson",
        "--iidfile", "iid", "--metadata-file", "meta.json",
        "--build-context", f"named={tmp_path / 'named'}",
        "--build-context", "base=docker-image://busybox",
        "--label", "k=v", "--label", "e=",
        "--annotation", "a=1", "--annotation", "index,manifest[linux/arm64]:b=2",
        "--network", "host",
        "--allow", "security.insecure",
        "--pull", "--check",
        "--runtime", "runc", "--snapshotter", "native",
        "ctx",
    )  # fmt: skip
    assert code == 0
    o = captured.options
    assert o.context == "ctx"
    assert o.dockerfile == "other/Dockerfile"
    assert o.tags == ("app", "app:2")
    assert dict(o.build_args) == {"A": "1", "FROM_ENV": "env value", "EMPTY": ""}
    assert o.target == "final"
    assert o.platform == Platform.parse(platform)
    assert o.secrets == (
        SecretSource(id="token", path=Path("/run/token")),
        SecretSource(id="pw", env="PASSWORD"),
    )
    assert o.ssh == (SshSpec(id="default"), SshSpec(id="deploy", paths=(Path("/keys/id_ed25519"),)))
    assert o.outputs[0] == LocalExport(dest=LocalPath(path=Path("out")))
    assert o.outputs[1] == TarExport(dest=Stdout())
    assert o.outputs[2] == LocalExport(dest=LocalPath(path=Path("dir2")))
    assert isinstance(o.outputs[3], OciExport)
    for flag in (o.push, o.load, o.no_cache, o.pull, o.check):
        assert flag
    assert o.cache_from == (CacheSpec.parse("type=local,src=/c", export=False),)
    assert o.cache_to == (CacheSpec.parse("type=local,dest=/d,mode=max", export=True),)
    assert [c.path for c in (*o.cache_from, *o.cache_to)] == [Path("/c"), Path("/d")]
    assert o.no_cache_filter == ("a", "b", "c")
    assert dict(o.build_contexts) == {
        "named": str(tmp_path / "named"),
        "base": "docker-image://busybox",
    }
    assert dict(o.labels) == {"k": "v", "e": ""}
    assert [a.attr() for a in o.annotations] == [
        ("annotation.a", "1"),
        ("annotation-index.b", "2"),
        ("annotation[linux/arm64].b", "2"),
    ]
    assert o.network == "host"
    assert o.allow == {"security.insecure"}
    assert o.entitlements == {"security.insecure", "network.host"}
    assert captured.kwargs.pop("memo") is None  # outputs, secrets ...: never replayed
    assert captured.kwargs.pop("hints") is None  # "ctx" is no directory here
    assert captured.kwargs == {
        "progress": "rawjson",
        "quiet": False,
        "iidfile": "iid",
        "metadata_file": "meta.json",
        "call_format": "text",
    }
    # the embedded engine grants what the build asks for, and takes the engine flags
    config = captured.client._backend.config  # type: ignore[attr-defined]
    assert {e.value for e in config.entitlements} == {"network.host", "security.insecure"}
    assert (config.runtime, config.snapshotter) == ("runc", "native")


def test_source_date_epoch_from_the_environment(
    captured: Captured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert build(tmp_path, ".") == 0
    assert dict(captured.options.build_args) == {"SOURCE_DATE_EPOCH": "1700000000"}
    assert build(tmp_path, "--build-arg", "SOURCE_DATE_EPOCH=5", ".") == 0
    assert dict(captured.options.build_args) == {"SOURCE_DATE_EPOCH": "5"}


def test_quiet(captured: Captured, tmp_path: Path) -> None:
    assert build(tmp_path, "-q", ".") == 0
    assert captured.kwargs["progress"] == "quiet"
    assert captured.kwargs["quiet"] is True
    assert build(tmp_path, "--progress", "quiet", ".") == 0
    assert captured.kwargs["quiet"] is True


def test_addresses(captured: Captured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--addr", "unix:///run/x.sock", "build", "."]) == 0
    assert (captured.client.mode, captured.client.address) == ("daemon", "unix:///run/x.sock")
    assert main(["build", "--addr", "tcp://127.0.0.1:7777", "."]) == 0
    assert captured.client.address == "tcp://127.0.0.1:7777"
    monkeypatch.setenv("DOCKYARD_HOST", "unix:///run/y.sock")
    assert build(tmp_path, ".") == 0  # an address wins over a state directory
    assert captured.client.address == "unix:///run/y.sock"
    monkeypatch.setenv("DOCKYARD_HOST", "embedded")
    assert build(tmp_path, ".") == 0
    assert captured.client.mode == "embedded"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Missing argument"),
        (["--progress", "fancy", "."], "Invalid value for '--progress'"),
        (["--network", "bridge", "."], "Invalid value for '--network'"),
        (["--allow", "root", "."], "unknown entitlement 'root'"),
        (["--allow", "device=a/b/c", "."], "invalid device 'a/b/c'"),
        (["--no-such-flag", "."], "No such option"),
        (["--secret", "src=/x", "."], "id is required"),
        (["--secret", "id=a,src=/x,env=Y", "."], "src and env are exclusive"),
        (["--ssh", "=x", "."], "invalid --ssh value"),
        (["-o", "type=nope,dest=x", "."], "unknown output type 'nope'"),
        (["-o", "type=local", "."], "output type local needs dest="),
        (["-o", "type=image,push=true", "."], "pushing an image needs name="),
        (["--cache-from", "type=local", "."], "needs src=DIR"),
        (["--cache-to", "type=local", "."], "needs dest=DIR"),
        (["--platform", "linux/amd64,x/y/z/w", "."], "--platform: invalid platform 'x/y/z/w'"),
        (["--platform", "a/b/c/d", "."], "--platform: invalid platform"),
        (["--label", "novalue", "."], "--label expects KEY=VALUE"),
        (["--annotation", "layer:k=v", "."], "--annotation 'layer:k=v': unknown type 'layer'"),
        (["--build-context", "x", "."], "--build-context expects KEY=VALUE"),
        (["--build-arg", "=x", "."], "--build-arg expects KEY=VALUE or KEY"),
        (["-q", "-o", "-", "."], "-q prints the image ID on stdout"),
        (["--progress", "quiet", "-o", "-", "."], "--progress quiet prints the image ID"),
        (["-f", "-", "-"], "cannot both be read from stdin"),
        (["--addr", "http://x", "."], "--addr: invalid address"),
    ],
)
def test_usage_errors_exit_2(
    captured: Captured,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert build(tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert not hasattr(captured, "options")  # nothing ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--platform", "linux/amd64,linux/arm64", "-o", "type=docker,dest=x.tar"],
            "the docker exporter cannot export a multi-platform image",
        ),
        (["--push"], "tag is needed when pushing"),
        (["-t", "Not A Tag"], "invalid tag 'Not A Tag'"),
        (["--build-context", "x=/no/such/dir"], "--build-context x=/no/such/dir: not a directory"),
    ],
)
def test_checks_before_any_work_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    if args == ["--platform", "linux/s390x"] and host_platform().architecture == "s390x":
        args = ["--platform", "linux/amd64"]
    assert build(tmp_path, *args, str(ctx)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "failed to solve" not in err  # a usage error, not a failed build
    assert not (tmp_path / "state").exists()  # no engine was opened


def test_missing_context_and_dockerfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build(tmp_path, str(tmp_path / "nope")) == 2
    assert (
        f'unable to prepare context: path "{tmp_path / "nope"}" not found'
        in capsys.readouterr().err
    )
    # a URL that is no remote context says which are (buildx: only "not found")
    assert build(tmp_path, f"file://{tmp_path}/repo") == 2
    err = capsys.readouterr().err
    assert "file:// URLs are not build contexts: a git repository is git://" in err
    assert "Traceback" not in err
    assert build(tmp_path, str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"ERROR: failed to solve: failed to read dockerfile: open {tmp_path}/Dockerfile" in err
    assert not (tmp_path / "state").exists()


def test_load_without_a_docker_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert build(tmp_path, "--load", str(tmp_path)) == 2
    assert "there is no docker CLI in PATH" in capsys.readouterr().err


def test_tls_flags(captured: Captured, capsys: pytest.CaptureFixture[str]) -> None:
    from dockyard.client import ClientTls

    tls = ["--tlscacert", "ca.pem", "--tlscert", "c.pem", "--tlskey", "c.key"]
    assert main(["--addr", "tcp://192.0.2.1:1234", *tls, "build", "."]) == 0
    tls_used = getattr(captured.client._backend, "_tls", None)
    assert tls_used == ClientTls(ca=Path("ca.pem"), cert=Path("c.pem"), key=Path("c.key"))
    assert main(["--addr", "tcp://192.0.2.1:1234", "build", "."]) == 2
    assert "wants mutual TLS" in capsys.readouterr().err
    assert main(["--addr", "tcp://127.0.0.1:1234", "--tlscert", "c.pem", "build", "."]) == 2
    assert "needs all of --tlscacert" in capsys.readouterr().err


def test_a_stale_iidfile_is_removed_but_not_a_device_or_link(
    captured: Captured, tmp_path: Path
) -> None:
    # buildx removes it before the build; here only a regular file goes: /dev/stdout or
    # /dev/fd/N (--iidfile >(cat)) is the user's to keep (buildx, as root, unlinks it)
    stale = tmp_path / "iid"
    stale.write_text("sha256:stale")
    assert build(tmp_path, "--iidfile", str(stale), ".") == 0
    assert not stale.exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for kept in (link, fifo):
        assert build(tmp_path, "--iidfile", str(kept), ".") == 0
        assert os.path.lexists(kept)
    read_end, write_end = os.pipe()
    try:
        assert build(tmp_path, "--iidfile", f"/dev/fd/{write_end}", ".") == 0
        os.fstat(write_end)  # still open: nothing was removed
    finally:
        os.close(read_end)
        os.close(write_end)
