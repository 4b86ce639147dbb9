"""What a client build asks for: :class:`BuildOptions` (``docker buildx build``'s flags
as frozen values) and :class:`CacheSpec` (``--cache-from``/``--cache-to``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Literal

from dockyard.core import Platform, UsageError, normalize_platforms

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.exporter import Annotation, ExportOptions, ProvenanceOptions, SbomOptions
    from dockyard.llbsolver import DebugShell
    from dockyard.session import SecretSource, SshSpec, SyncRequest

__all__ = ["BuildOptions", "CacheSpec", "NetworkName", "Subrequest"]

NetworkName = Literal["default", "none", "host"]
#: What a build may ask its frontend instead of building (``--call=outline|targets``).
Subrequest = Literal["outline", "targets"]
_SUBREQUESTS = ("outline", "targets")
_NETWORKS = ("default", "none", "host")
_ENTITLEMENTS = ("network.host", "security.insecure", "device")


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSpec:
    """One ``--cache-from`` (``export=False``) or ``--cache-to`` (``export=True``)
    value as buildx reads it: CSV ``key=value`` fields, ``type`` apart (a bare value of
    either flag is ``type=registry,ref=VALUE``). ``text`` is the value as given:
    the engine parses it into its own cache values (``type=local,src=DIR``,
    ``type=local,dest=DIR,mode=max``, ``type=registry,ref=REF``, ``type=inline``); a
    daemon is sent ``type`` and ``attrs``."""

    text: str
    type: str
    export: bool
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", _frozen(self.attrs))

    def __repr__(self) -> str:  # a type=s3 value may hold secrets
        from dockyard.remotecache import redact_attrs

        return (
            f"CacheSpec(text={self.redacted()!r}, type={self.type!r}, export={self.export!r}, "
            f"attrs={redact_attrs(self.attrs)!r})"
        )

    def redacted(self) -> str:
        """``text`` with its secrets (``secret_access_key``, ``session_token``) hidden."""
        from dockyard.remotecache import redact, secret_values

        return redact(self.text, secrets=secret_values(self.attrs))

    @property
    def path(self) -> Path | None:
        """The directory of a ``type=local`` cache (``src`` or ``dest``)."""
        value = self.attrs.get("dest" if self.export else "src")
        return Path(value) if self.type == "local" and value else None

    @classmethod
    def parse(cls, text: str, *, export: bool) -> CacheSpec:
        from dockyard.remotecache import redact

        try:
            return cls._parse(text, export=export)
        except UsageError as exc:  # never echo a type=s3 secret
            message = redact(exc.message, source=text)
            if message == exc.message:
                raise
            raise UsageError(message) from None

    @classmethod
    def _parse(cls, text: str, *, export: bool) -> CacheSpec:
        from dockyard.core.csvfields import csv_fields, key_values

        flag = "--cache-to" if export else "--cache-from"
        fields = csv_fields(text, flag)
        if not fields:
            raise UsageError(f"{flag}: empty value")
        if len(fields) == 1 and "=" not in fields[0]:  # a bare reference, either flag
            return cls(text=text, type="registry", export=export, attrs={"ref": fields[0]})
        attrs = key_values(fields, f"{flag} {text}")
        kind = attrs.pop("type", "").lower()
        if not kind:
            raise UsageError(f"{flag} {text}: type= is required (type=local, registry or inline)")
        if kind == "local":
            key = "dest" if export else "src"
            if not attrs.get(key):
                raise UsageError(f"{flag} {text}: type=local needs {key}=DIR")
        return cls(text=text, type=kind, export=export, attrs=attrs)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class BuildOptions:
    """One ``dockyard build`` (``docker buildx build``), parsed.

    ``context``: a directory, a git or http(s) URL, or ``-`` (a tarball or a
    Dockerfile read from ``stdin``). ``dockerfile``: a path on this host (``-``: read
    from ``stdin``); for a URL or tarball context, a path inside it; ``None`` is
    ``Dockerfile`` in the context. ``tags`` name the image (with no ``outputs`` it goes
    into the local image store; with ``push`` it is pushed). ``outputs`` are the
    exporters (:func:`dockyard.exporter.parse_output` values); ``load`` adds a docker
    tarball piped into ``docker load``. ``build_contexts`` map a name to a directory,
    ``docker-image://REF``, ``oci-layout://PATH`` or a git/http URL. ``network``: the
    network of ``RUN`` steps (``host`` also asks for the ``network.host``
    entitlement). ``extra_hosts`` (``--add-host``), ``ulimits`` (``--ulimit``),
    ``shm_size`` (bytes, ``--shm-size``; 0: the default 64 MiB ``/dev/shm``) and
    ``cgroup_parent`` (``--cgroup-parent``) apply to every ``RUN`` step (they travel as
    BuildKit's ``add-hosts``, ``ulimit``, ``shm-size`` and ``cgroup-parent`` frontend
    attributes). ``platform``: the target platform (``None``: the engine's);
    ``platforms``: the targets of a multi-platform build (two or more; one given here
    is moved to ``platform``), built side by side into an image index (or a
    sub-directory per platform for ``local``/``tar`` outputs). ``allow``: entitlements
    the build asks for (``network.host``, ``security.insecure``, ``device`` or
    ``device=NAME[,alias=ALIAS]`` for CDI devices). ``no_cache_filter``:
    stages built without the cache. ``annotations`` (``--annotation``,
    :func:`dockyard.exporter.parse_annotation` values) go to every image output (image,
    registry, oci, docker), beside those of its own ``annotation.*`` attributes.
    ``check``: run the build checks only (their answer, BuildKit's lint document, is
    ``call_output("json")``; a Dockerfile that does not parse or ``# check=error=true``
    with warnings is its ``buildError`` there, not an error of the build:
    :meth:`dockyard.dockerfile.LintResults.error` gives it back).
    ``subrequest``: build nothing, ask the frontend for the ``outline`` of the target
    or its ``targets`` (the answer is in :meth:`BuildResult.call_output
    <dockyard.client.BuildResult.call_output>`).
    ``prefetch``: file sync requests (by session directory name: ``context``,
    ``dockerfile``, ``named:NAME``) the engine is likely to make — those of the last
    build, :attr:`BuildResult.synced <dockyard.client.BuildResult.synced>` — walked as
    soon as the build starts (:meth:`dockyard.session.Session.prefetch`); a guess
    that does not match is walked for nothing, never used.
    ``provenance``: attach an SLSA provenance attestation to the outputs
    (``--provenance``/``--attest type=provenance``; ``None``, the default, attaches
    none — buildx's default is ``mode=min``).
    ``sbom``: attach SPDX SBOM attestations (``--sbom``/``--attest type=sbom``; the
    built-in scanner unless a generator image is named; ``None``, the default, attaches
    none). Dockerfile builds only.
    ``debug_shell``: ``--invoke`` (:class:`dockyard.llbsolver.DebugShell`), a shell
    on the user's terminal in a failed ``RUN`` step or in the result (through a daemon
    the shell runs in the daemon's sandbox, its streams relayed by the build's
    session); neither the context nor the Dockerfile may come from ``stdin`` then.
    """

    context: str = "."
    dockerfile: str | None = None
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()
    target: str | None = None
    platform: Platform | None = None
    platforms: tuple[Platform, ...] = ()
    secrets: tuple[SecretSource, ...] = ()
    ssh: tuple[SshSpec, ...] = ()
    outputs: tuple[ExportOptions, ...] = ()
    push: bool = False
    load: bool = False
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    network: NetworkName = "default"
    extra_hosts: tuple[llb.HostIP, ...] = ()
    ulimits: tuple[llb.Ulimit, ...] = ()
    shm_size: int = 0
    cgroup_parent: str = ""
    allow: frozenset[str] = frozenset()
    pull: bool = False
    check: bool = False
    subrequest: Subrequest | None = None
    stdin: IO[bytes] | None = None
    prefetch: tuple[SyncRequest, ...] = ()
    provenance: ProvenanceOptions | None = None
    sbom: SbomOptions | None = None
    debug_shell: DebugShell | None = None

    def __post_init__(self) -> None:
        for name in ("build_args", "labels", "build_contexts"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in (
            "tags",
            "annotations",
            "secrets",
            "ssh",
            "outputs",
            "cache_from",
            "cache_to",
            "prefetch",
            "extra_hosts",
            "ulimits",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "no_cache_filter", tuple(self.no_cache_filter))
        object.__setattr__(self, "allow", frozenset(self.allow))
        platform, platforms = normalize_platforms(self.platform, self.platforms)
        object.__setattr__(self, "platform", platform)
        object.__setattr__(self, "platforms", platforms)
        if platforms and (self.load or any(o.type_name == "docker" for o in self.outputs)):
            from dockyard.exporter import MULTI_PLATFORM_DOCKER

            raise UsageError(MULTI_PLATFORM_DOCKER + (" (--load makes one)" if self.load else ""))
        if not self.context:
            raise UsageError("a build needs a context (a directory, a URL or -)")
        if self.network not in _NETWORKS:
            raise UsageError(
                f"invalid network mode {self.network!r} (expected default, none or host)"
            )
        if self.shm_size < 0:
            raise UsageError(f"shm_size must not be negative, got {self.shm_size}")
        for value in sorted(self.allow):
            if value in _ENTITLEMENTS:
                continue
            if value.startswith("device="):  # device=NAME[,alias=ALIAS] (a CDI device)
                from dockyard.core import parse_grant

                parse_grant(value)
                continue
            raise UsageError(
                f"unknown entitlement {value!r} (expected {', '.join(_ENTITLEMENTS)}"
                " or device=NAME)"
            )
        if self.subrequest is not None and self.subrequest not in _SUBREQUESTS:
            raise UsageError(
                f"unknown subrequest {self.subrequest!r} (expected outline or targets)"
            )
        if self.subrequest is not None and self.check:
            raise UsageError("a build runs its checks or a subrequest, not both")
        if self.context == "-" and self.dockerfile == "-":
            raise UsageError("the context and the Dockerfile cannot both be read from stdin")
        if self.debug_shell is not None and self.debug_shell.stdio.stdin == 0:
            if "-" in (self.context, self.dockerfile):
                raise UsageError(
                    "--invoke: the shell reads stdin, so the context and the Dockerfile"
                    " cannot come from it"
                )
            if self.platforms:
                raise UsageError("--invoke: a multi-platform build has no one result to enter")
        if (
            self.debug_shell is not None
            and self.debug_shell.stdio.stdout == 1
            and any(_is_stdout(getattr(o, "dest", None)) for o in self.outputs)
        ):
            raise UsageError(
                "--invoke: the shell writes to stdout, so an output cannot go to -"
                " or to the file stdout is (its bytes and the shell's would mix)"
            )
        for spec in self.cache_from:
            if spec.export:
                raise UsageError("cache_from holds --cache-from values (export=False)")
        for spec in self.cache_to:
            if not spec.export:
                raise UsageError("cache_to holds --cache-to values (export=True)")
        for name in self.build_contexts:
            if not name or name in ("context", "dockerfile"):
                raise UsageError(f"invalid build context name {name!r}")

    @property
    def builds(self) -> bool:
        """Whether anything is built and exported (not a check, not a subrequest)."""
        return not self.check and self.subrequest is None

    @property
    def entitlements(self) -> frozenset[str]:
        """What the build asks for: ``allow``, plus ``network.host`` with
        ``network="host"`` (as buildx)."""
        return self.allow | ({"network.host"} if self.network == "host" else set())


def _is_stdout(dest: object) -> bool:
    """Whether an output's ``dest`` is this process's stdout: ``-``, or a path naming the
    file, pipe or terminal stdout is (``/dev/stdout``, ``/proc/self/fd/1``, the file
    stdout was redirected to)."""
    from dockyard.exporter import LocalPath, Stdout

    if isinstance(dest, Stdout):
        return True
    if not isinstance(dest, LocalPath):
        return False
    try:
        named, ours = os.stat(dest.path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (named.st_dev, named.st_ino) == (ours.st_dev, ours.st_ino)
