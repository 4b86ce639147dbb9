"""Image references (``docker.io/library/busybox:latest``), parsed and normalized like docker.

Light on purpose: the CLI and frontends parse references without loading the HTTP stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.core import Digest, UsageError

__all__ = ["DOCKER_HUB", "InvalidReferenceError", "Reference"]

DOCKER_HUB = "docker.io"
_LEGACY_HUB = "index.docker.io"
_OFFICIAL = "library/"
_MAX_NAME = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_HEX64 = re.compile(r"[a-f0-9]{64}")


class InvalidReferenceError(UsageError, ValueError):
    """An image reference that does not parse; the message names it and says why."""


def _fail(text: str, reason: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid image reference {text!r}: {reason}")


def _split_domain(name: str) -> tuple[str, str]:
    """docker's rule: the first component is a registry host if it has a ``.`` or a ``:``,
    is ``localhost``, or has upper-case letters; otherwise the image is on Docker Hub."""
    first, sep, rest = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first == first.lower()
    ):
        domain, path = DOCKER_HUB, name
    else:
        domain, path = first, rest
    if domain == _LEGACY_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = _OFFICIAL + path
    return domain, path


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A normalized image reference: registry ``domain``, repository ``path``, and a
    ``tag`` and/or ``digest``. Construct with :meth:`parse`.

    ``str()`` gives the canonical form (``docker.io/library/busybox:latest``);
    :meth:`familiar` the short form docker shows (``busybox:latest``).
    """

    domain: str
    path: str
    tag: str = ""
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str = "latest") -> Reference:
        """Parse and normalize like ``docker pull``: ``busybox`` becomes
        ``docker.io/library/busybox:latest``; ``localhost:5000/x``, ``host:port/a/b:tag``
        and ``name@sha256:...`` keep their registry. A reference with neither tag nor
        digest gets ``default_tag`` (pass ``""`` to keep it bare).

        Raises :class:`InvalidReferenceError` (a ``UsageError`` and a ``ValueError``).
        """
        if not text:
            raise _fail(text, "empty reference")
        if text != text.strip():
            raise _fail(text, "leading or trailing whitespace")
        if _HEX64.fullmatch(text):
            raise _fail(text, "a 64-character hexadecimal string is an image ID, not a name")
        remainder, at, digest_text = text.partition("@")
        digest: Digest | None = None
        if at:
            if not _DIGEST.fullmatch(digest_text):
                raise _fail(text, f"malformed digest {digest_text!r}")
            try:
                digest = Digest.parse(digest_text)
            except ValueError as exc:
                raise _fail(text, str(exc)) from exc
        name, tag = remainder, ""
        colon = remainder.rfind(":")
        if colon > remainder.rfind("/"):
            name, tag = remainder[:colon], remainder[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise _fail(
                    text,
                    f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128, "
                    "not starting with '.' or '-')",
                )
        if not name:
            raise _fail(text, "missing repository name")
        domain, path = _split_domain(name)
        if not _DOMAIN.fullmatch(domain):
            raise _fail(text, f"invalid registry host {domain!r}")
        if path != path.lower():
            raise _fail(text, f"repository name {path!r} must be lowercase")
        for component in path.split("/"):
            if not _PATH_COMPONENT.fullmatch(component):
                raise _fail(
                    text,
                    f"invalid repository name component {component!r} (lowercase letters, "
                    "digits and single separators '.', '_', '__', '-')",
                )
        if len(domain) + 1 + len(path) > _MAX_NAME:
            raise _fail(text, f"repository name longer than {_MAX_NAME} characters")
        if not tag and digest is None:
            tag = default_tag
        return cls(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """``domain/path`` without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry's ``/manifests/`` for: the digest if any, else the tag."""
        return str(self.digest) if self.digest is not None else self.tag

    @property
    def familiar_name(self) -> str:
        """The name as docker shows it: ``busybox``, ``user/app``, ``localhost:5000/x``."""
        if self.domain == DOCKER_HUB:
            return self.path.removeprefix(_OFFICIAL)
        return self.name

    def familiar(self) -> str:
        """``familiar_name`` with the tag and digest."""
        return self._with_suffix(self.familiar_name)

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.fullmatch(tag):
            raise _fail(f"{self.name}:{tag}", f"invalid tag {tag!r}")
        return Reference(domain=self.domain, path=self.path, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(
            domain=self.domain, path=self.path, tag=self.tag, digest=Digest.parse(digest)
        )

    def _with_suffix(self, base: str) -> str:
        if self.tag:
            base += ":" + self.tag
        if self.digest is not None:
            base += "@" + self.digest
        return base

    def __str__(self) -> str:
        return self._with_suffix(self.name)
