"""Checks of TLS files before grpc reads them.

grpc's C core takes a certificate, key and CA as bytes and, when they do not fit, logs
its own lines ("Invalid private key") and refuses the connection or the address without
a reason. Both ends check the files with :mod:`ssl` first, so the user reads which file
is wrong, in the words of the option or config key that named it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = [
    "KeyPairProblem",
    "PassphraseWanted",
    "ca_problem",
    "key_pair_problem",
    "load_cert_chain",
]


@dataclass(frozen=True, slots=True)
class KeyPairProblem:
    """Why a certificate and key cannot be used; ``key_only`` when the key alone is at
    fault (its passphrase), else the pair is."""

    reason: str
    key_only: bool = False


class PassphraseWanted(Exception):
    """OpenSSL asked for a key's passphrase (:func:`load_cert_chain`)."""


def _no_passphrase() -> str:
    raise PassphraseWanted


def load_cert_chain(context: ssl.SSLContext, cert: str | Path, key: str | Path | None) -> None:
    """``context.load_cert_chain`` that raises :class:`PassphraseWanted` for a key with a
    passphrase where OpenSSL would prompt for it on the terminal (in the middle of a
    build, or in a daemon with no terminal); :class:`ssl.SSLError` or :class:`OSError`
    for the rest, as it does."""
    context.load_cert_chain(cert, key, password=_no_passphrase)


def key_pair_problem(cert: str | Path, key: str | Path, *, server: bool) -> KeyPairProblem | None:
    """What is wrong with the PEM certificate ``cert`` and its private key ``key``
    (``None``: nothing). grpc takes keys without a passphrase only."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    try:
        load_cert_chain(context, cert, key)
    except PassphraseWanted:
        return KeyPairProblem(
            "the key is protected by a passphrase (grpc takes keys without one)", key_only=True
        )
    except (ssl.SSLError, OSError) as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            return KeyPairProblem("the key is not the certificate's")
        return KeyPairProblem("not a PEM certificate and its private key")
    return None


def ca_problem(*, cafile: str | Path | None = None, cadata: bytes | None = None) -> str | None:
    """What is wrong with a CA bundle given as a file or as bytes (``None``: nothing)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if cadata is not None:
            context.load_verify_locations(cadata=cadata.decode("ascii", "replace"))
        else:
            context.load_verify_locations(cafile=str(cafile))
    except (ssl.SSLError, ValueError):
        return "no PEM certificate in it"
    return None
