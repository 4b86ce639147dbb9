"""The registry client's verifying TLS context loads the system's CA certificates on its
first TLS connection, not when a client is made (plain-HTTP registries never need them)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from dockyard.registry import HostConfig
from dockyard.registry._http import HttpSession


def test_the_verifying_context_loads_the_system_cas_at_its_first_tls_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[ssl.Purpose] = []
    real = ssl.SSLContext.load_default_certs

    def counting(self: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH) -> None:
        loads.append(purpose)
        real(self, purpose)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", counting)
    ctx = HttpSession._ssl_context(HostConfig(), True)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert loads == []
    for _ in range(2):
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="registry.example")
    assert loads == [ssl.Purpose.SERVER_AUTH]  # once


def test_an_insecure_context_never_loads_them() -> None:
    ctx = HttpSession._ssl_context(HostConfig(), False)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname


def test_a_client_key_with_a_passphrase_is_a_config_error_without_a_prompt(
    tmp_path: Path,
) -> None:
    # certs.d's client.key with a passphrase made OpenSSL prompt "Enter PEM pass phrase:"
    # on the terminal in the middle of a build (docker, like Go's tls.LoadX509KeyPair,
    # refuses such a key)
    from dockyard.core import ConfigError
    from dockyard.testing.tlsfiles import encrypt_key, self_signed_pair

    cert, key = self_signed_pair(tmp_path, "c")
    encrypted = encrypt_key(key, tmp_path / "e.key")
    HttpSession._ssl_context(HostConfig(client_cert=cert, client_key=key), False)
    with pytest.raises(ConfigError, match=r"e\.key.*passphrase"):
        HttpSession._ssl_context(HostConfig(client_cert=cert, client_key=encrypted), False)
