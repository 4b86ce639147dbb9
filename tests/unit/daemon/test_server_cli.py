"""``dockyardd``'s command line (exit codes, config and overrides) and the unix socket
helpers of the server (stale sockets replaced, live ones and other files refused)."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.daemon import load_config, main
from dockyard.core import UsageError
from dockyard.daemon import TcpListener, UnixListener
from dockyard.daemon._server import _check_stale_socket, _secure_socket
from dockyard.testing.tlsfiles import encrypt_key, self_signed_pair


def test_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dockyardd ")
    assert main(["--no-such-flag"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_bad_config_and_addresses_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nruntime = 'lxc'\n")
    assert main(["--config", str(bad)]) == 2
    assert "worker.runtime" in capsys.readouterr().err
    (tmp_path / "empty.toml").write_text("")
    assert main(["--config", str(tmp_path / "empty.toml"), "--addr", "tcp://0.0.0.0:1"]) == 2
    assert "mutual TLS" in capsys.readouterr().err


def test_a_tcp_port_in_use_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # grpcio raised a bare RuntimeError here: dockyardd printed a traceback
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--addr", f"tcp://127.0.0.1:{port}", "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"dockyardd: cannot listen on tcp://127.0.0.1:{port}: Address already in use" in err
    assert "Traceback" not in err


def test_a_tcp_port_in_use_is_our_line_only(tmp_path: Path) -> None:
    # grpc's C core logged "add_port.cc:...] Failed to add port to server: ..." on the
    # daemon's stderr before dockyardd's own message: the address is probed first now
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "dockyard.cli.daemon",
                "--addr",
                f"tcp://127.0.0.1:{port}",
                "--state-dir",
                str(tmp_path / "s"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"dockyardd: cannot listen on tcp://127.0.0.1:{port}: Address already in use\n"
    )


def test_a_port_in_time_wait_is_free(tmp_path: Path) -> None:
    # the probe binds as grpc does (SO_REUSEADDR): a port whose connection lingers in
    # TIME_WAIT is not refused
    from dockyard.daemon._server import _why_not_bound

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: its end goes to TIME_WAIT
        client.close()
    assert _why_not_bound(TcpListener(host="127.0.0.1", port=port)) == ""


def test_command_line_overrides_the_config(tmp_path: Path) -> None:
    config_file = tmp_path / "d.toml"
    config_file.write_text('state-dir = "state"\n[grpc]\naddress = ["unix:///x/y.sock"]\n')
    config = load_config(config_file, (), None)
    assert config.state_dir == tmp_path / "state"
    assert config.listeners == (UnixListener(path=Path("/x/y.sock")),)
    config = load_config(
        config_file, ("unix:///a.sock", "tcp://127.0.0.1:7000"), tmp_path / "other"
    )
    assert config.state_dir == tmp_path / "other"
    assert config.listeners == (
        UnixListener(path=Path("/a.sock")),
        TcpListener(host="127.0.0.1", port=7000),
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="dy-sock-") as name:
        yield Path(name)


def test_stale_sockets_are_replaced_and_live_ones_refused(short_dir: Path) -> None:
    path = short_dir / "d.sock"
    _check_stale_socket(path)  # nothing there
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    listening.listen()
    try:
        with pytest.raises(UsageError, match="another daemon is listening"):
            _check_stale_socket(path)
    finally:
        listening.close()
    assert path.exists()  # a socket file nobody listens on any more
    _check_stale_socket(path)
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(UsageError, match="not a socket"):
        _check_stale_socket(path)
    assert path.read_text() == "not a socket"


def test_sockets_get_their_group_and_mode(short_dir: Path) -> None:
    path = short_dir / "d.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    try:
        gid = path.stat().st_gid
        _secure_socket(UnixListener(path=path, group=gid, mode=0o660))
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == gid
        _secure_socket(UnixListener(path=path, mode=0o600))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        listening.close()


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import dockyard.cli.daemon",
        "from dockyard.cli.daemon import main\nassert main(['--version']) == 0",
    ],
)
def test_dockyardd_starts_light(code: str) -> None:
    """Idle memory is a feature: the engine and grpc load when the daemon opens them."""
    modules = _loaded_after(code)
    for heavy in ("grpc", "google.protobuf", "dockyard.engine", "dockyard.cache", "asyncio"):
        assert heavy not in modules, f"{heavy} imported by {code!r}"


def test_the_helps_config_example_is_a_valid_config(tmp_path: Path) -> None:
    # a new user finds the config file's format in dockyardd --help (the README names
    # only --config FILE): the example shown must load
    from dockyard.cli.daemon import _EPILOG

    example = _EPILOG.split("config file", 1)[1].split("\n", 1)[1].split("\n(all keys", 1)[0]
    text = "\n".join(line[2:] for line in example.splitlines())
    for name in ("server.pem", "server-key.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "d.toml").write_text(text.replace('group = "dockyard"', "group = 0"))
    config = load_config(tmp_path / "d.toml", (), None)
    assert config.state_dir == Path("/var/lib/dockyard")
    assert len(config.listeners) == 2


@pytest.mark.parametrize("broken", ["key", "ca", "passphrase"])
def test_tls_files_that_do_not_fit_are_a_config_error(tmp_path: Path, broken: str) -> None:
    # grpc's C core logged "Invalid private key" lines, then dockyardd said only
    # "cannot listen on tcp://...", exit 2; a key with a passphrase made OpenSSL ask
    # for it on the terminal, then a traceback (OSError)
    cert, key = self_signed_pair(tmp_path, "server")
    _, other_key = self_signed_pair(tmp_path, "other")
    if broken == "passphrase":
        encrypt_key(key, other_key)
    ca = key if broken == "ca" else cert
    config = tmp_path / "d.toml"
    config.write_text(
        '[grpc]\naddress = ["tcp://127.0.0.1:1"]\n'
        f'[grpc.tls]\ncert = "{cert}"\nkey = "{key if broken == "ca" else other_key}"\n'
        f'ca = "{ca}"\n'
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard.cli.daemon",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    expected = {
        "key": f"dockyardd: grpc.tls.cert {cert} and grpc.tls.key {other_key}: the key is not "
        "the certificate's\n",
        "ca": f"dockyardd: grpc.tls.ca {key}: no PEM certificate in it\n",
        "passphrase": f"dockyardd: grpc.tls.key {other_key}: the key is protected by a "
        "passphrase (grpc takes keys without one)\n",
    }[broken]
    assert proc.stderr == expected
