"""Where builds run: an explicit address, $DOCKYARD_HOST, a state directory, a daemon
on the default socket, else the embedded engine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.client import (
    DEFAULT_SOCKET,
    Client,
    check_address,
    daemon_listening,
    select_address,
)
from dockyard.core import UsageError
from dockyard.testing.tlsfiles import encrypt_key, self_signed_pair


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "d.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    try:
        yield path
    finally:
        server.close()


@pytest.fixture
def stale(tmp_path: Path) -> Path:
    """A socket file nobody listens on (a daemon that died)."""
    path = tmp_path / "stale.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.close()
    return path


def test_the_default_socket_is_the_daemons() -> None:
    from dockyard.daemon import DEFAULT_SOCKET as DAEMON_SOCKET

    assert DEFAULT_SOCKET == DAEMON_SOCKET


def test_an_explicit_address_wins(listening: Path) -> None:
    env = {"DOCKYARD_HOST": "tcp://127.0.0.1:9"}
    assert (
        select_address("unix:///x/y.sock", environ=env, default_socket=listening)
        == "unix:///x/y.sock"
    )
    assert select_address(None, environ=env, default_socket=listening) == "tcp://127.0.0.1:9"
    assert select_address("embedded", environ=env, default_socket=listening) is None
    assert (
        select_address(None, environ={"DOCKYARD_HOST": "embedded"}, default_socket=listening)
        is None
    )


def test_an_address_wins_over_a_state_directory(tmp_path: Path) -> None:
    assert (
        select_address("tcp://[::1]:1234", state_dir_given=True, environ={}) == "tcp://[::1]:1234"
    )


def test_a_daemon_on_the_default_socket_is_used(
    listening: Path, stale: Path, tmp_path: Path
) -> None:
    assert daemon_listening(listening)
    assert select_address(None, environ={}, default_socket=listening) == f"unix://{listening}"
    # ... unless a state directory asks for the embedded engine
    assert select_address(None, state_dir_given=True, environ={}, default_socket=listening) is None
    # a socket file nobody listens on, a plain file, nothing: embedded
    assert not daemon_listening(stale)
    assert select_address(None, environ={}, default_socket=stale) is None
    (tmp_path / "file").write_text("x")
    assert select_address(None, environ={}, default_socket=tmp_path / "file") is None
    assert select_address(None, environ={}, default_socket=tmp_path / "none") is None
    # an empty DOCKYARD_HOST is unset
    assert (
        select_address(None, environ={"DOCKYARD_HOST": " "}, default_socket=listening)
        == f"unix://{listening}"
    )


@pytest.mark.parametrize(
    ("given", "source"),
    [("http://x", "--addr"), ("unix://relative.sock", "--addr"), ("tcp://host", "--addr")],
)
def test_bad_addresses_are_usage_errors_naming_their_source(given: str, source: str) -> None:
    with pytest.raises(UsageError, match=f"^{source}: invalid address"):
        select_address(given, environ={})
    with pytest.raises(UsageError, match=r"^\$DOCKYARD_HOST: invalid address"):
        select_address(None, environ={"DOCKYARD_HOST": given})


def test_addresses_are_normalized() -> None:
    assert check_address(" unix:///run/x.sock ") == "unix:///run/x.sock"
    assert check_address("tcp://127.0.0.1:1234/") == "tcp://127.0.0.1:1234"
    assert check_address("embedded") == "embedded"


def test_clients_by_mode(tmp_path: Path, stale: Path) -> None:
    from dockyard.engine import EngineConfig

    config = EngineConfig(state_dir=tmp_path / "state")
    embedded = Client.open(config=config, environ={})
    assert embedded.mode == "embedded"
    assert embedded.address is None
    remote = Client.open("unix:///nowhere.sock", config=config, environ={})
    assert remote.mode == "daemon"
    assert remote.address == "unix:///nowhere.sock"
    assert not (tmp_path / "state").exists()  # nothing opened before the first call


def test_tls_towards_tcp_daemons(tmp_path: Path) -> None:
    from dockyard.client import ClientTls

    assert ClientTls.from_files(None, None, "") is None
    tls = ClientTls.from_files("ca.pem", "c.pem", "c.key")
    assert tls == ClientTls(ca=Path("ca.pem"), cert=Path("c.pem"), key=Path("c.key"))
    with pytest.raises(UsageError, match="needs all of --tlscacert, --tlscert and --tlskey"):
        ClientTls.from_files("ca.pem", None, "c.key")
    with pytest.raises(
        UsageError, match="reachable from other hosts: a daemon there wants mutual TLS"
    ):
        Client.connect("tcp://192.0.2.1:1234")
    assert Client.connect("tcp://192.0.2.1:1234", tls=tls).address == "tcp://192.0.2.1:1234"
    assert Client.connect("tcp://localhost:1234").mode == "daemon"


def test_tls_files_are_checked_before_grpc_sees_them(tmp_path: Path) -> None:
    # a key of another certificate made grpc's C core log "Invalid private key" lines
    # and every call fail with "Failed to create security handshaker"
    from dockyard.client import ClientTls

    ca, _ = self_signed_pair(tmp_path, "ca")
    cert, key = self_signed_pair(tmp_path, "client")
    _, other_key = self_signed_pair(tmp_path, "other")
    assert ClientTls(ca=ca, cert=cert, key=key).credentials() is not None
    with pytest.raises(UsageError, match=r"--tlskey .*other.key: the key is not the certificate's"):
        ClientTls(ca=ca, cert=cert, key=other_key).credentials()
    with pytest.raises(UsageError, match="not a PEM certificate and its private key"):
        ClientTls(ca=ca, cert=key, key=key).credentials()
    with pytest.raises(UsageError, match=r"--tlscacert .*client.key: no PEM certificate in it"):
        ClientTls(ca=key, cert=cert, key=key).credentials()
    with pytest.raises(UsageError, match=r"--tlscert .*missing.pem: No such file or directory"):
        ClientTls(ca=ca, cert=tmp_path / "missing.pem", key=key).credentials()


def test_a_tls_key_with_a_passphrase_is_refused_without_a_prompt(tmp_path: Path) -> None:
    # the check asked OpenSSL for the key's passphrase on the terminal ("Enter PEM pass
    # phrase:"; grpc cannot use such a key anyway) and, without one, raised OSError
    # (a traceback)
    from dockyard.client import ClientTls

    cert, key = self_signed_pair(tmp_path, "client")
    encrypted = encrypt_key(key, tmp_path / "encrypted.key")
    with pytest.raises(UsageError, match=r"--tlskey .*encrypted.key: .*passphrase"):
        ClientTls(ca=cert, cert=cert, key=encrypted).credentials()


def test_a_plain_connection_closed_by_a_tcp_daemon_hints_at_tls() -> None:
    # a plain client of a daemon with TLS read only "it closed the connection"
    from dockyard.client._remote import RemoteBackend
    from dockyard.core import DockyardError

    closed = "cannot reach the daemon: it closed the connection (did dockyardd stop?)"
    tcp = RemoteBackend("tcp://127.0.0.1:1")._named(DockyardError(closed))
    assert str(tcp) == (
        "cannot reach dockyardd at tcp://127.0.0.1:1: it closed the connection (did dockyardd "
        "stop?); a daemon with TLS wants --tlscacert, --tlscert and --tlskey"
    )
    unix = RemoteBackend("unix:///run/x.sock")._named(DockyardError(closed))
    assert "TLS" not in str(unix)
