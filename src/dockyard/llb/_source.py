"""Source ops: images, local directories, git repositories, HTTP files, OCI layouts.

Each source is an identifier (``docker-image://docker.io/library/alpine:3.20``,
``local://context``, ``git://github.com/moby/buildkit#v0.13``, ``https://...``,
``oci-layout://store@sha256:...``) plus string attributes, with BuildKit's attribute
names (``image.resolvemode``, ``local.includepattern``, ``git.keepgitdir``,
``http.checksum``, ...). Only image and OCI-layout sources carry a platform.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dockyard.core import Digest, Platform, UsageError

from . import _paths
from ._constraints import Constraints, options
from ._reference import normalize_image_ref
from ._state import State
from ._vertex import MarshalContext, Output, Vertex

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = [
    "ATTR",
    "LocalDiffer",
    "ResolveMode",
    "SourceOp",
    "git",
    "http",
    "image",
    "local",
    "oci_layout",
]


class ATTR:
    """Source attribute names (BuildKit's ``solver/pb/attr.go``)."""

    KEEP_GIT_DIR = "git.keepgitdir"
    GIT_FULL_URL = "git.fullurl"
    GIT_AUTH_HEADER_SECRET = "git.authheadersecret"
    GIT_AUTH_TOKEN_SECRET = "git.authtokensecret"
    GIT_KNOWN_SSH_HOSTS = "git.knownsshhosts"
    GIT_MOUNT_SSH_SOCK = "git.mountsshsock"
    GIT_CHECKSUM = "git.checksum"
    LOCAL_SESSION_ID = "local.session"
    LOCAL_UNIQUE_ID = "local.unique"
    LOCAL_INCLUDE_PATTERNS = "local.includepattern"
    LOCAL_FOLLOW_PATHS = "local.followpaths"
    LOCAL_EXCLUDE_PATTERNS = "local.excludepatterns"
    LOCAL_SHARED_KEY_HINT = "local.sharedkeyhint"
    LOCAL_DIFFER = "local.differ"
    HTTP_CHECKSUM = "http.checksum"
    HTTP_FILENAME = "http.filename"
    HTTP_PERM = "http.perm"
    HTTP_UID = "http.uid"
    HTTP_GID = "http.gid"
    HTTP_AUTH_HEADER_SECRET = "http.authheadersecret"
    IMAGE_RESOLVE_MODE = "image.resolvemode"
    IMAGE_RECORD_TYPE = "image.recordtype"
    IMAGE_LAYER_LIMIT = "image.layerlimit"
    OCI_SESSION_ID = "oci.session"
    OCI_STORE_ID = "oci.store"
    OCI_LAYER_LIMIT = "oci.layerlimit"


class ResolveMode(enum.StrEnum):
    """How an image source resolves its reference (``image.resolvemode``)."""

    DEFAULT = "default"
    PULL = "pull"  # always ask the registry
    LOCAL = "local"  # prefer an image already present


class LocalDiffer(enum.StrEnum):
    """How a local source decides which files to transfer again (``local.differ``)."""

    NONE = "none"
    METADATA = "metadata"


_PLATFORM_SPECIFIC = ("docker-image://", "oci-layout://")


class SourceOp(Vertex):
    """A source vertex: ``identifier`` plus ``attrs``."""

    __slots__ = ("attrs", "identifier")

    def __init__(self, identifier: str, attrs: Mapping[str, str], constraints: Constraints) -> None:
        super().__init__(constraints)
        if not identifier:
            raise UsageError("a source identifier cannot be empty")
        self.identifier = identifier
        self.attrs: Mapping[str, str] = MappingProxyType(dict(attrs))

    def inputs(self) -> tuple[Output, ...]:
        return ()

    def build(self, ctx: MarshalContext) -> tuple[pb.Op, Constraints]:
        attrs = dict(self.attrs)
        constraints = self.constraints
        if (
            self.identifier.startswith("local://")
            and ATTR.LOCAL_SESSION_ID not in attrs
            and ctx.local_unique_id is not None
        ):
            attrs[ATTR.LOCAL_UNIQUE_ID] = ctx.local_unique_id
            constraints = constraints.with_caps("source.local.unique")
        op, merged = ctx.op_base(
            constraints, with_platform=self.identifier.startswith(_PLATFORM_SPECIFIC)
        )
        op.source.identifier = self.identifier
        op.source.attrs.update(attrs)
        op.source.SetInParent()
        return op, merged


def _state(identifier: str, attrs: Mapping[str, str], constraints: Constraints) -> State:
    vertex = SourceOp(identifier, attrs, constraints)
    return State(Output(vertex, 0, platform=constraints.platform))


def _json_list(values: Iterable[str]) -> str:
    """A JSON array encoded like Go's ``json.Marshal`` (HTML characters escaped)."""
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _platform(value: Platform | str | None) -> Platform | None:
    if value is None or isinstance(value, Platform):
        return value
    try:
        return Platform.parse(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def image(
    ref: str,
    *,
    platform: Platform | str | None = None,
    resolve_mode: ResolveMode | str | None = None,
    layer_limit: int | None = None,
    record_type: str | None = None,
    name: str | None = None,
    constraints: Constraints | None = None,
) -> State:
    """A container image from a registry (``FROM``).

    ``ref`` is normalized like ``docker pull`` does (``busybox`` →
    ``docker.io/library/busybox:latest``). ``platform`` selects the image variant (default:
    the build's platform). The state starts without the image's env and working
    directory; apply them with :meth:`State.with_image_config` once the config is known.
    """
    normalized = normalize_image_ref(ref)
    c = options(constraints, name).with_caps("source.image")
    plat = _platform(platform)
    if plat is not None:
        c = c.merged(Constraints(platform=plat))
    attrs: dict[str, str] = {}
    if resolve_mode is not None:
        mode = ResolveMode(resolve_mode)
        if mode is not ResolveMode.DEFAULT:
            attrs[ATTR.IMAGE_RESOLVE_MODE] = mode.value
            if mode is ResolveMode.PULL:
                c = c.with_caps("source.image.resolvemode")
    if record_type:
        attrs[ATTR.IMAGE_RECORD_TYPE] = record_type
    if layer_limit is not None:
        attrs[ATTR.IMAGE_LAYER_LIMIT] = str(layer_limit)
        c = c.with_caps("source.image.layerlimit")
    return _state("docker-image://" + normalized, attrs, c)


def local(
    name: str,
    *,
    session_id: str | None = None,
    include_patterns: Iterable[str] = (),
    exclude_patterns: Iterable[str] = (),
    follow_paths: Iterable[str] = (),
    shared_key_hint: str | None = None,
    differ: LocalDiffer | str | None = None,
    custom_name: str | None = None,
    constraints: Constraints | None = None,
) -> State:
    """A directory the client sends through the session (the build context, a named
    context). Patterns use ``.dockerignore`` syntax; ``follow_paths`` are paths whose
    symlinks must be followed."""
    if not name:
        raise UsageError("local: a name is required")
    c = options(constraints, custom_name).with_caps("source.local")
    attrs: dict[str, str] = {}
    if session_id:
        attrs[ATTR.LOCAL_SESSION_ID] = session_id
        c = c.with_caps("source.local.sessionid")
    include = list(include_patterns)
    if include:
        attrs[ATTR.LOCAL_INCLUDE_PATTERNS] = _json_list(include)
        c = c.with_caps("source.local.includepatterns")
    follow = list(follow_paths)
    if follow:
        attrs[ATTR.LOCAL_FOLLOW_PATHS] = _json_list(follow)
        c = c.with_caps("source.local.followpaths")
    exclude = list(exclude_patterns)
    if exclude:
        attrs[ATTR.LOCAL_EXCLUDE_PATTERNS] = _json_list(exclude)
        c = c.with_caps("source.local.excludepatterns")
    if shared_key_hint:
        attrs[ATTR.LOCAL_SHARED_KEY_HINT] = shared_key_hint
        c = c.with_caps("source.local.sharedkeyhint")
    if differ is not None:
        attrs[ATTR.LOCAL_DIFFER] = LocalDiffer(differ).value
    return _state("local://" + name, attrs, c)


_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9_-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>.*)$")
_GIT_SCHEMES = ("https", "http", "ssh", "git", "file")


def _parse_git_url(url: str) -> tuple[str, str, str, str]:
    """``(remote, scheme, host, path)`` of a git URL; bare ``host/path`` means https."""
    if "://" not in url:
        match = _SCP_LIKE.match(url)
        if match is not None:  # scp-like: git@github.com:moby/buildkit.git
            return url, "ssh", match["host"], match["path"]
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in _GIT_SCHEMES:
        raise UsageError(f"git: unsupported URL scheme {parts.scheme!r} in {url!r}")
    remote = parts._replace(fragment="").geturl()
    return remote, parts.scheme, parts.netloc.rpartition("@")[2], parts.path


def git(
    url: str,
    ref: str = "",
    *,
    subdir: str = "",
    keep_git_dir: bool = False,
    auth_token_secret: str = "GIT_AUTH_TOKEN",
    auth_header_secret: str = "GIT_AUTH_HEADER",
    known_ssh_hosts: str | None = None,
    mount_ssh_sock: str | None = None,
    checksum: str | None = None,
    name: str | None = None,
    constraints: Constraints | None = None,
) -> State:
    """A git repository checked out at ``ref`` (branch, tag or commit; default: the
    remote's HEAD), optionally only ``subdir``.

    ``url`` may carry the old Docker fragment form ``url#ref:subdir``. SSH URLs
    (``git@host:path``, ``ssh://``) mount the SSH agent ``mount_ssh_sock`` (default
    ``default``); the host keys are not scanned, pass ``known_ssh_hosts`` to pin them.
    """
    base, _, fragment = url.partition("#")
    if fragment and not ref and not subdir:
        ref, _, subdir = fragment.partition(":")
    remote, scheme, host, path = _parse_git_url(base)
    subdir = _paths.join("/", subdir).lstrip("/") if subdir else ""
    identifier = host + _paths.join("/", path)
    if ref or subdir:
        identifier += "#" + ref
        if subdir:
            identifier += ":" + subdir
    c = options(constraints, name)
    attrs: dict[str, str] = {}
    if keep_git_dir:
        attrs[ATTR.KEEP_GIT_DIR] = "true"
        c = c.with_caps("source.git.keepgitdir")
    attrs[ATTR.GIT_FULL_URL] = remote
    c = c.with_caps("source.git.fullurl")
    if auth_token_secret:
        attrs[ATTR.GIT_AUTH_TOKEN_SECRET] = auth_token_secret
    if auth_header_secret:
        attrs[ATTR.GIT_AUTH_HEADER_SECRET] = auth_header_secret
    if scheme == "ssh":
        if known_ssh_hosts:
            attrs[ATTR.GIT_KNOWN_SSH_HOSTS] = known_ssh_hosts.rstrip("\n") + "\n"
        attrs[ATTR.GIT_MOUNT_SSH_SOCK] = mount_ssh_sock or "default"
        c = c.with_caps("source.git.knownsshhosts", "source.git.mountsshsock")
    if checksum:
        attrs[ATTR.GIT_CHECKSUM] = checksum
    c = c.with_caps("source.git")
    return _state("git://" + identifier, attrs, c)


def http(
    url: str,
    *,
    checksum: Digest | str | None = None,
    filename: str | None = None,
    perm: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    auth_header_secret: str | None = None,
    name: str | None = None,
    constraints: Constraints | None = None,
) -> State:
    """A single file downloaded from ``url`` (``ADD https://...``): ``checksum`` pins its
    content, ``filename`` names it (default: from the URL or response), ``perm``,
    ``uid`` and ``gid`` set its mode and owner."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise UsageError(f"http: not an http(s) URL: {url!r}")
    c = options(constraints, name)
    attrs: dict[str, str] = {}
    if checksum:
        try:
            attrs[ATTR.HTTP_CHECKSUM] = Digest.parse(str(checksum))
        except ValueError as exc:
            raise UsageError(f"http: {exc}") from exc
        c = c.with_caps("source.http.checksum")
    if filename:
        attrs[ATTR.HTTP_FILENAME] = filename
    if perm:
        attrs[ATTR.HTTP_PERM] = f"0{perm:o}"
        c = c.with_caps("source.http.perm")
    if uid:
        attrs[ATTR.HTTP_UID] = str(uid)
        c = c.with_caps("soruce.http.uidgid")  # sic: BuildKit's capability id
    if gid:
        attrs[ATTR.HTTP_GID] = str(gid)
        c = c.with_caps("soruce.http.uidgid")
    if auth_header_secret:
        attrs[ATTR.HTTP_AUTH_HEADER_SECRET] = auth_header_secret
    c = c.with_caps("source.http")
    return _state(url, attrs, c)


def oci_layout(
    ref: str,
    *,
    session_id: str | None = None,
    store_id: str | None = None,
    layer_limit: int | None = None,
    platform: Platform | str | None = None,
    name: str | None = None,
    constraints: Constraints | None = None,
) -> State:
    """An image from an OCI layout the client exposes (``--build-context x=oci-layout://``);
    ``ref`` is ``store[:tag]@sha256:...``."""
    if not ref:
        raise UsageError("oci_layout: a reference is required")
    c = options(constraints, name).with_caps("source.ocilayout")
    plat = _platform(platform)
    if plat is not None:
        c = c.merged(Constraints(platform=plat))
    attrs: dict[str, str] = {}
    if session_id:
        attrs[ATTR.OCI_SESSION_ID] = session_id
    if store_id:
        attrs[ATTR.OCI_STORE_ID] = store_id
    if layer_limit is not None:
        attrs[ATTR.OCI_LAYER_LIMIT] = str(layer_limit)
    return _state("oci-layout://" + ref, attrs, c)
