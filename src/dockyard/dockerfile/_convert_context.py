"""Build contexts: the main one (the ``local`` source ``COPY``/``ADD`` read by default) and
named ones (``--build-context NAME=VALUE``).

The main context source is made after every stage is converted, because only then is it
known which paths the build reads: when no instruction reads the whole context, the
source gets ``local.followpaths`` with just those paths (BuildKit's optimization — the
client sends less), besides the ``.dockerignore`` excludes. Ops built before that refer
to it through :class:`LateSource`, a vertex that becomes the source when finished (like
BuildKit's mutable output).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard import llb, oci
from dockyard.core import ContentError, InternalError, Platform, UsageError

from ._convert_options import ImageMetaResolver, NamedContext

if TYPE_CHECKING:
    from dockyard.api import ops as pb

__all__ = [
    "ContextSpec",
    "LateSource",
    "follow_paths",
    "load_named_context",
    "main_context",
    "parse_context_spec",
]

LOAD_CONTEXT = "[internal] load build context"


class LateSource(llb.Vertex):
    """A source vertex whose identity is decided later (:meth:`finish`); serializing it
    before that is a bug."""

    __slots__ = ("_target",)

    def __init__(self) -> None:
        super().__init__(llb.Constraints())
        self._target: llb.Vertex | None = None

    def finish(self, state: llb.State) -> None:
        if state.output is None:
            raise InternalError("the build context must be a source")
        self._target = state.output.vertex

    def inputs(self) -> tuple[llb.Output, ...]:
        return self._vertex().inputs()

    def build(self, ctx: Any) -> tuple[pb.Op, llb.Constraints]:
        return self._vertex().build(ctx)

    def _vertex(self) -> llb.Vertex:
        if self._target is None:
            raise InternalError("the build context was used before it was finished")
        return self._target


def follow_paths(paths: Iterable[str]) -> list[str]:
    """The ``local.followpaths`` for context paths read by the build: relative, sorted,
    or none at all when the whole context is read."""
    out = set()
    for path in paths:
        if path == "/":
            return []
        out.add(posixpath.normpath(path).lstrip("/") or ".")
    return sorted(out)


def main_context(
    name: str, *, session_id: str | None, excludes: Iterable[str], paths: Iterable[str]
) -> llb.State:
    """The main build context source, as BuildKit's dockerui client makes it."""
    return llb.local(
        name,
        session_id=session_id,
        exclude_patterns=list(excludes),
        follow_paths=follow_paths(paths),
        shared_key_hint=name,
        custom_name=LOAD_CONTEXT,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextSpec:
    """A parsed ``--build-context`` value: ``kind`` is ``local`` (a directory the client
    sends), ``image`` (``docker-image://REF``), ``oci-layout`` (``oci-layout://STORE@DIGEST``),
    ``git`` or ``http``; ``value`` the rest (for ``oci-layout``: ``PATH[:TAG][@DIGEST]``)."""

    kind: str
    value: str


def parse_context_spec(value: str) -> ContextSpec:
    """Classify a ``--build-context NAME=VALUE`` value (raises :class:`UsageError`)."""
    if not value:
        raise UsageError("a build context value cannot be empty")
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme == "docker-image":
            return ContextSpec(kind="image", value=rest)
        if scheme == "oci-layout":
            return ContextSpec(kind="oci-layout", value=rest)
        if scheme in ("http", "https"):
            path = rest.split("#", 1)[0].split("?", 1)[0]
            kind = "git" if path.endswith(".git") else "http"
            return ContextSpec(kind=kind, value=value)
        if scheme in ("git", "ssh"):
            return ContextSpec(kind="git", value=value)
        raise UsageError(
            f"unsupported build context {value!r} (use a directory, docker-image://REF, "
            "oci-layout://PATH@DIGEST, or a git or http(s) URL)"
        )
    if value.startswith("git@"):
        return ContextSpec(kind="git", value=value)
    return ContextSpec(kind="local", value=value)


async def load_named_context(
    name: str,
    value: str,
    *,
    resolver: ImageMetaResolver,
    platform: Platform,
    resolve_mode: llb.ResolveMode = llb.ResolveMode.DEFAULT,
    session_id: str | None = None,
    local_name: str | None = None,
    excludes: Iterable[str] = (),
) -> NamedContext:
    """Turn ``--build-context name=value`` into a :class:`NamedContext`.

    Images are resolved through ``resolver`` (their config gives the stage its ``ENV``,
    ``WORKDIR``…); an OCI layout is asked for as ``oci-layout://PATH@DIGEST`` (or
    ``oci-layout://PATH:TAG``, which must resolve to a digest); a directory becomes a ``local`` source named ``local_name`` (default
    ``name``) that the client serves, with ``excludes`` from that directory's
    ``.dockerignore``.
    """
    spec = parse_context_spec(value)
    label = f"[context {name}]"
    if spec.kind == "local":
        state = llb.local(
            local_name or name,
            session_id=session_id,
            exclude_patterns=list(excludes),
            shared_key_hint=f"context:{name}",
            custom_name=f"{label} load from client",
        )
        return NamedContext(state=state)
    if spec.kind == "git":
        return NamedContext(
            state=llb.git(spec.value, name=f"[internal] load git source {spec.value}")
        )
    if spec.kind == "http":
        return NamedContext(
            state=llb.http(spec.value, filename="context", name=f"{label} {spec.value}")
        )
    if spec.kind == "image":
        if spec.value == "scratch":
            return NamedContext(state=llb.scratch())
        ref = llb.normalize_image_ref(spec.value)
        found = await resolver.resolve(ref, platform=platform, resolve_mode=resolve_mode)
        config = _config(found.config, spec.value)
        state = llb.image(found.ref, platform=platform, name=f"{label} {spec.value}")
        if found.config is not None:
            state = state.with_image_config(found.config)
        return NamedContext(state=state, config=config)
    store, _, digest = spec.value.partition("@")
    tag = ""
    head, colon, tail = store.rpartition(":")
    if colon and "/" not in tail:
        store, tag = head, tail
    if not store:
        raise UsageError(f"oci-layout build context {value!r} names no layout")
    ref = f"oci-layout://{store}@{digest}" if digest else f"oci-layout://{store}:{tag or 'latest'}"
    found = await resolver.resolve(ref, platform=platform, resolve_mode=resolve_mode)
    digest = digest or found.digest or ""
    if not digest:
        raise UsageError(
            f"oci-layout build context {value!r}: {ref} did not resolve to a digest "
            "(give oci-layout://PATH@sha256:…)"
        )
    state = llb.oci_layout(
        f"{store}@{digest}",
        session_id=session_id,
        store_id=store,
        platform=platform,
        name=f"{label} OCI load from client",
    )
    if found.config is not None:
        state = state.with_image_config(found.config)
    return NamedContext(state=state, config=_config(found.config, spec.value))


def _config(data: bytes | None, what: str) -> oci.ImageConfig | None:
    if data is None:
        return None
    try:
        return oci.ImageConfig.parse(data)
    except ContentError as exc:
        raise ContentError(f"{what}: {exc.message}") from exc
