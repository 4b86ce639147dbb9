"""Content digests in the OCI form ``algorithm:hex``."""

from __future__ import annotations

import hashlib
import re

__all__ = ["Digest", "sha256_digest"]

_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_PATTERN = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-fA-F0-9=_-]+)$")


class Digest(str):
    """A validated ``algorithm:hex`` digest.

    A ``str`` subclass so that it can be used wherever text is expected (dict keys, JSON),
    while construction through :meth:`parse` guarantees the form.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Validate ``value`` and return it as a Digest; raise ``ValueError`` if malformed."""
        if isinstance(value, Digest):
            return value
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(f"invalid digest {value!r}: expected algorithm:hex")
        algorithm, hexpart = match.groups()
        expected = _HEX_LENGTHS.get(algorithm)
        if expected is None:
            raise ValueError(f"invalid digest {value!r}: unsupported algorithm {algorithm!r}")
        if len(hexpart) != expected or not all(c in "0123456789abcdef" for c in hexpart):
            raise ValueError(
                f"invalid digest {value!r}: {algorithm} needs {expected} lowercase hex digits"
            )
        return cls(value)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Digest:
        """The sha256 digest of ``data``."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest())

    @classmethod
    def from_hex(cls, hexdigest: str, algorithm: str = "sha256") -> Digest:
        return cls.parse(f"{algorithm}:{hexdigest}")

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        return self.partition(":")[2]

    def short(self, length: int = 12) -> str:
        """The first ``length`` hex digits, for display."""
        return self.hex[:length]

    def hasher(self) -> hashlib._Hash:
        """A new hashlib object of this digest's algorithm."""
        return hashlib.new(self.algorithm)


def sha256_digest(data: bytes | bytearray | memoryview) -> Digest:
    """Shorthand for :meth:`Digest.from_bytes`."""
    return Digest.from_bytes(data)
