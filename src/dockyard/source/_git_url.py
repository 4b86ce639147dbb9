"""Git remotes and ``git://`` source ops, parsed: :class:`GitRemote` (a URL git can
fetch, with a form safe to show) and :class:`GitSpec` (everything a git source op asks
for), plus :class:`Scrubber`, which takes credentials out of text before anyone sees it.

Remote forms (BuildKit's): ``https://host/repo.git``, ``http://``, ``git://``,
``ssh://[user@]host[:port]/path``, scp-like ``user@host:path`` (ssh) and ``file:///path``;
anything else without a scheme is taken as ``https://`` + text. Other transports (``ext::``,
``fd::``) are refused: they would run commands or read descriptors of the engine.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from dockyard.core import InvalidDefinitionError

__all__ = [
    "SKIP_SUBMODULES_ATTR",
    "GitRemote",
    "GitSpec",
    "Scrubber",
    "is_commit_sha",
    "redact_url",
]

SKIP_SUBMODULES_ATTR = "git.skipsubmodules"
"""BuildKit's ``AttrGitSkipSubmodules`` (not yet in :class:`dockyard.llb.ATTR`)."""

_SCHEMES = ("https", "http", "git", "ssh", "file")
_SCP_LIKE = re.compile(
    r"^(?P<user>[A-Za-z0-9._~-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*|/.*)$"
)
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_MASK = "xxxxx"
# user:password@ in any URL-looking text (git messages quote URLs)
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/@\s]*)?@"
)
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def is_commit_sha(text: str) -> bool:
    """A full commit id (40 hex digits for SHA-1 repositories, 64 for SHA-256)."""
    return _COMMIT.match(text) is not None


def _redact_userinfo(match: re.Match[str]) -> str:
    scheme = match["scheme"]
    user = match["user"]
    has_password = match["password"] is not None
    if scheme.lower() in ("http://", "https://"):
        # a lone user name on http(s) is usually a token
        return f"{scheme}{user + ':' + _MASK if has_password and user else _MASK}@"
    if has_password:
        return f"{scheme}{user}:{_MASK}@"
    return match.group(0)


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: a password becomes
    ``xxxxx``; on http(s) a user name alone is masked too (tokens travel there)."""
    return _USERINFO.sub(_redact_userinfo, text)


@dataclass(frozen=True, slots=True, kw_only=True)
class GitRemote:
    """A repository URL: ``url`` is what git is given (it may carry credentials and is
    never shown), ``redacted`` is what messages show. ``scheme`` is one of ``https``,
    ``http``, ``git``, ``ssh``, ``file``; ``host`` has no user info (``host[:port]``;
    empty for ``file``)."""

    url: str
    scheme: str
    host: str

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    @property
    def token_scope(self) -> str:
        """The URL prefix an auth header is sent to (``http.<scope>.extraheader``): the
        remote itself, or all of github.com (as BuildKit and actions/checkout do)."""
        for prefix in ("https://github.com/", "https://www.github.com/"):
            if self.url.startswith(prefix):
                return prefix
        return self.url

    @classmethod
    def parse(cls, text: str) -> GitRemote:
        """``text`` as a remote (see the module docstring); raises
        :class:`InvalidDefinitionError` naming the (redacted) URL when it is not one."""
        text = text.strip()
        if not text or text.startswith("-") or any(c in text for c in "\x00\n\r"):
            raise InvalidDefinitionError(f"invalid git repository URL {redact_url(text)!r}")
        if "://" not in text:
            scp = _SCP_LIKE.match(text)
            if scp is not None and "::" not in text:
                return cls(url=text, scheme="ssh", host=scp["host"])
            if "::" in text.split("/", 1)[0]:
                raise InvalidDefinitionError(
                    f"unsupported git transport in {redact_url(text)!r}"
                    f" (supported: {', '.join(_SCHEMES)})"
                )
            text = "https://" + text
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise InvalidDefinitionError(
                f"unsupported git URL scheme {parts.scheme!r} in {redact_url(text)!r}"
                f" (supported: {', '.join(_SCHEMES)})"
            )
        host = parts.netloc.rpartition("@")[2]
        if scheme == "file":
            if host not in ("", "localhost") or not parts.path.startswith("/"):
                raise InvalidDefinitionError(
                    f"invalid file URL {text!r}: expected file:///absolute/path"
                )
        elif not host or host.startswith("-"):
            raise InvalidDefinitionError(f"git URL {redact_url(text)!r} has no host")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise InvalidDefinitionError(
                f"git URL {redact_url(text)!r} has an invalid port"
            ) from None
        url = parts._replace(fragment="").geturl()
        return cls(url=url, scheme=scheme, host=host)


def _check_ref(ref: str, remote: GitRemote) -> str:
    ref = ref.strip()
    if not ref:
        return ""
    if (
        ref.startswith(("-", "/"))
        or ref.endswith(("/", ".lock", "."))
        or ".." in ref
        or "//" in ref
        or "@{" in ref
        or _BAD_REF_CHARS.search(ref)
    ):
        raise InvalidDefinitionError(f"invalid git ref {ref!r} for {remote.redacted}")
    return ref


def _clean_subdir(subdir: str) -> str:
    if not subdir:
        return ""
    cleaned = posixpath.normpath(posixpath.join("/", subdir)).lstrip("/")
    return "" if cleaned in ("", ".") else cleaned


class _Request(Protocol):
    @property
    def identifier(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def attrs(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GitSpec:
    """What one git source asks for.

    ``ref``: a branch, tag, full or abbreviated commit or any ref name
    (``refs/pull/1/head``); empty means the remote's default branch. ``subdir``: the
    directory of the repository that becomes the root of the result (cleaned, empty for
    the whole tree). ``keep_git_dir``: keep ``.git`` (only for the whole tree, as
    BuildKit). ``checksum``: a hex prefix the commit (or annotated tag) must start
    with. ``skip_submodules``: do not check submodules out. The ``auth_*`` fields name
    session secrets (BuildKit's ``git.authtokensecret``/``git.authheadersecret``),
    ``known_ssh_hosts`` is the ``known_hosts`` text for ssh remotes and
    ``mount_ssh_sock`` the id of the client's SSH agent to use.
    """

    remote: GitRemote
    ref: str = ""
    subdir: str = ""
    keep_git_dir: bool = False
    checksum: str = ""
    skip_submodules: bool = False
    auth_token_secret: str = ""
    auth_header_secret: str = ""
    known_ssh_hosts: str = ""
    mount_ssh_sock: str = ""

    @property
    def display(self) -> str:
        """``redacted-url#ref:subdir`` for messages."""
        text = self.remote.redacted
        if self.ref or self.subdir:
            text += "#" + self.ref
        if self.subdir:
            text += ":" + self.subdir
        return text

    @classmethod
    def create(
        cls,
        remote: str | GitRemote,
        *,
        ref: str = "",
        subdir: str = "",
        keep_git_dir: bool = False,
        checksum: str = "",
        skip_submodules: bool = False,
        auth_token_secret: str = "",
        auth_header_secret: str = "",
        known_ssh_hosts: str = "",
        mount_ssh_sock: str = "",
    ) -> GitSpec:
        """A checked spec; raises :class:`InvalidDefinitionError` for a bad URL, ref or
        checksum."""
        rem = remote if isinstance(remote, GitRemote) else GitRemote.parse(remote)
        if checksum and not _HEX.match(checksum):
            raise InvalidDefinitionError(
                f"invalid checksum {checksum!r} for git URL {rem.redacted}:"
                " expected a hex commit hash"
            )
        return cls(
            remote=rem,
            ref=_check_ref(ref, rem),
            subdir=_clean_subdir(subdir),
            keep_git_dir=keep_git_dir,
            checksum=checksum.lower(),
            skip_submodules=skip_submodules,
            auth_token_secret=auth_token_secret,
            auth_header_secret=auth_header_secret,
            known_ssh_hosts=known_ssh_hosts,
            mount_ssh_sock=mount_ssh_sock,
        )

    @classmethod
    def parse_url(cls, text: str, **options: object) -> GitSpec:
        """``URL#ref:subdir`` (a build context, ``ADD``'s old form) as a spec; keyword
        ``options`` as for :meth:`create`."""
        base, _, fragment = text.partition("#")
        ref, _, subdir = fragment.partition(":")
        return cls.create(base, ref=ref, subdir=subdir, **options)  # type: ignore[arg-type]

    @classmethod
    def from_request(cls, request: _Request) -> GitSpec:
        """A ``git://`` source op: the identifier's path ``host/path#ref:subdir`` with
        the remote taken from ``git.fullurl`` when set (``llb.git`` always sets it),
        and the other ``git.*`` attributes."""
        from dockyard.llb import ATTR

        attrs = request.attrs
        base, _, fragment = request.path.partition("#")
        ref, _, subdir = fragment.partition(":")
        full = attrs.get(ATTR.GIT_FULL_URL, "")
        remote = full or base
        if not remote:
            raise InvalidDefinitionError(f"git source {request.identifier!r} names no repository")
        return cls.create(
            remote,
            ref=ref,
            subdir=subdir,
            keep_git_dir=_bool(attrs.get(ATTR.KEEP_GIT_DIR)),
            checksum=attrs.get(ATTR.GIT_CHECKSUM, ""),
            skip_submodules=_bool(attrs.get(SKIP_SUBMODULES_ATTR)),
            auth_token_secret=attrs.get(ATTR.GIT_AUTH_TOKEN_SECRET, ""),
            auth_header_secret=attrs.get(ATTR.GIT_AUTH_HEADER_SECRET, ""),
            known_ssh_hosts=attrs.get(ATTR.GIT_KNOWN_SSH_HOSTS, ""),
            mount_ssh_sock=attrs.get(ATTR.GIT_MOUNT_SSH_SOCK, ""),
        )


def _bool(value: str | None) -> bool:
    return value == "true"


class Scrubber:
    """Removes secrets from text meant for users: the given values (a token, a header,
    a URL with credentials is replaced by its redacted form) and the credentials of
    any URL (:func:`redact_url`)."""

    __slots__ = ("_replacements",)

    def __init__(self, remotes: Iterable[GitRemote] = (), secrets: Iterable[str] = ()) -> None:
        pairs: dict[str, str] = {}
        for remote in remotes:
            if remote.redacted != remote.url:
                pairs[remote.url] = remote.redacted
                # git may quote the password or a token user name on its own
                userinfo = urlsplit(remote.url)
                secret = userinfo.password
                if secret is None and remote.scheme in ("http", "https"):
                    secret = userinfo.username  # a token in the user name
                if secret and len(secret) >= 4:
                    pairs.setdefault(unquote(secret), _MASK)
                    pairs.setdefault(secret, _MASK)
        for value in secrets:
            if len(value) >= 4:
                pairs[value] = _MASK
        # longest first, so that a value containing another is replaced whole
        self._replacements = sorted(pairs.items(), key=lambda kv: -len(kv[0]))

    def with_secrets(self, secrets: Iterable[str]) -> Scrubber:
        out = Scrubber()
        extra = [(s, _MASK) for s in secrets if len(s) >= 4]
        out._replacements = sorted([*self._replacements, *extra], key=lambda kv: -len(kv[0]))
        return out

    def __call__(self, text: str) -> str:
        for value, replacement in self._replacements:
            text = text.replace(value, replacement)
        return redact_url(text)
