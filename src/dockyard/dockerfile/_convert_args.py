"""Build arguments before any stage runs: the automatic platform arguments, the global
``ARG`` s before the first ``FROM``, the proxy variables, ``SOURCE_DATE_EPOCH``, and the
``# syntax=`` / ``# check=`` settings that come from arguments or directives.

Expansion timing (BuildKit's): global ``ARG`` defaults expand when they are declared,
against the platform arguments and the global arguments above them; a ``--build-arg``
replaces the default without expanding it. ``FROM`` lines see only these values; inside a
stage an ``ARG NAME`` without default takes the global value.
"""

from __future__ import annotations

from collections.abc import Mapping

from dockyard import llb
from dockyard.core import FrontendError, Platform, SourceLocation, SourceRange, UsageError

from ._directives import CheckConfig, Directive
from ._dockerfile import Dockerfile
from ._shell import ShellLex

__all__ = [
    "PROXY_ARGS",
    "check_config",
    "check_syntax",
    "global_args",
    "platform_args",
    "proxy_env",
    "source_date_epoch",
]

# The predefined proxy arguments: usable without ARG, kept out of history and cache keys
# unless a Dockerfile declares them.
PROXY_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)

_SYNTAX_REPOSITORY = "docker.io/docker/dockerfile"
_SYNTAX_ARG = "BUILDKIT_SYNTAX"
_CHECK_ARG = "BUILDKIT_DOCKERFILE_CHECK"
_EPOCH_ARG = "SOURCE_DATE_EPOCH"


def platform_args(
    build: Platform, target: Platform, target_stage: str, overrides: Mapping[str, str]
) -> dict[str, str]:
    """BuildKit's ``defaultArgs``: ``BUILDPLATFORM`` … ``TARGETVARIANT`` and
    ``TARGETSTAGE``, each replaceable by a build argument of the same name."""
    values = {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDOSVERSION": build.os_version,
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETOSVERSION": target.os_version,
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
        "TARGETSTAGE": target_stage,
    }
    return {key: overrides.get(key, value) for key, value in values.items()}


def global_args(
    dockerfile: Dockerfile, base: Mapping[str, str], build_args: Mapping[str, str]
) -> dict[str, str]:
    """The arguments ``FROM`` lines see: ``base`` (the platform arguments) updated by the
    ``ARG`` s before the first ``FROM``, in order."""
    lex = ShellLex(dockerfile.escape)
    env = dict(base)
    for instruction in dockerfile.meta_args:
        for definition in instruction.args:
            if definition.key in build_args:
                env[definition.key] = build_args[definition.key]
            elif definition.value is not None:
                try:
                    env[definition.key] = lex.process(definition.value, env).value
                except FrontendError as exc:
                    raise instruction.error(exc.message) from None
    return env


def proxy_env(build_args: Mapping[str, str]) -> llb.ProxyEnv | None:
    """The proxy settings every ``RUN`` gets from ``--build-arg`` (either case of each
    name; ``None`` when none is given)."""
    found: dict[str, str] = {}
    for key in sorted(build_args):
        lowered = key.lower()
        if lowered in ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"):
            found[lowered] = build_args[key]
    if not found:
        return None
    return llb.ProxyEnv(
        http_proxy=found.get("http_proxy", ""),
        https_proxy=found.get("https_proxy", ""),
        ftp_proxy=found.get("ftp_proxy", ""),
        no_proxy=found.get("no_proxy", ""),
        all_proxy=found.get("all_proxy", ""),
    )


def source_date_epoch(
    build_args: Mapping[str, str], args: Mapping[str, str]
) -> tuple[int | None, str | None]:
    """``SOURCE_DATE_EPOCH`` from the build arguments or a global ``ARG`` default: the
    epoch (seconds) and its text, or ``(None, None)``."""
    text = build_args.get(_EPOCH_ARG)
    if text is None:
        text = args.get(_EPOCH_ARG) or None
    if not text:
        return None, None
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(
            f"invalid SOURCE_DATE_EPOCH: {text!r} (use a whole number of seconds since 1970)"
        ) from None
    return value, str(value)


def check_syntax(dockerfile: Dockerfile, build_args: Mapping[str, str]) -> None:
    """Refuse a ``# syntax=`` (or ``BUILDKIT_SYNTAX``) other than ``docker/dockerfile``:
    Dockyard serves Dockerfiles with its built-in frontend and runs no external one."""
    directive = dockerfile.syntax
    override = build_args.get(_SYNTAX_ARG)
    if override:
        directive = Directive(name="syntax", value=override, line=0)
    if directive is None:
        return
    value = directive.value.strip()
    if _is_dockerfile_frontend(value):
        return
    location: tuple[SourceLocation, ...] = ()
    if directive.line > 0:
        location = (
            SourceLocation(
                filename=dockerfile.filename,
                ranges=(SourceRange(directive.line, directive.line),),
            ),
        )
    source = "BUILDKIT_SYNTAX" if override else "syntax directive"
    raise FrontendError(
        f"unsupported {source} {value!r}: Dockyard builds Dockerfiles with its built-in "
        "frontend, which serves docker/dockerfile references only (for example "
        "docker/dockerfile:1); other frontend images are not run",
        locations=location,
    )


def _is_dockerfile_frontend(value: str) -> bool:
    ref = value.split(" ", 1)[0]
    try:
        normalized = llb.normalize_image_ref(ref)
    except UsageError:
        return False
    name = normalized.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return name == _SYNTAX_REPOSITORY


def check_config(dockerfile: Dockerfile, build_args: Mapping[str, str]) -> CheckConfig:
    """The build-check settings: ``BUILDKIT_DOCKERFILE_CHECK`` overrides ``# check=``."""
    override = build_args.get(_CHECK_ARG)
    if override is None:
        return dockerfile.check
    try:
        return CheckConfig.parse(override)
    except FrontendError as exc:
        raise UsageError(f"--build-arg {_CHECK_ARG}: {exc.message}") from None
