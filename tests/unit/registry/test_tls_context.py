"""The registry client's verifying TLS context loads the system's CA certificates on its
first TLS connection, not when a client is made (plain-HTTP registries never need them)."""

from __future__ import annotations

import ssl

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
