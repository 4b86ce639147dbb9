"""Certificates and keys for tests of TLS checks, made with ``openssl``."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["encrypt_key", "self_signed_pair"]


def self_signed_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed RSA certificate for ``CN=name`` and its key without a passphrase:
    ``directory/name.pem`` and ``directory/name.key``."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def encrypt_key(key: Path, out: Path, passphrase: str = "pw") -> Path:
    """``key`` written to ``out`` protected by ``passphrase`` (AES-256)."""
    subprocess.run(
        [
            *("openssl", "pkey", "-in", str(key), "-aes256"),
            *("-passout", f"pass:{passphrase}", "-out", str(out)),
        ],
        check=True,
        capture_output=True,
    )
    return out
