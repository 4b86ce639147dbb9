"""``dockyard build``: ``docker buildx build`` on Dockyard — a Dockerfile build, on the
engine embedded in this process or on a ``dockyardd`` daemon (``--addr``,
``$DOCKYARD_HOST``, or a daemon listening on the default socket).

``--call=outline|targets`` builds nothing: it prints what the Dockerfile frontend
answers (buildx's build subrequests), as text tables or, with ``format=json``, BuildKit's
JSON document, on stdout. ``--check`` (``--call=check``) runs the build checks alone:
their warnings and a count on stderr, or with ``--call=check,format=json`` BuildKit's
lint document on stdout (a Dockerfile that does not parse, or ``# check=error=true``
with warnings, is its ``buildError``, printed on stderr as well).

``--invoke CMD`` (``--on always|error``, ``--invoke on-error``): a debug shell on this
terminal (:class:`InvokeSpec`, :class:`dockyard.llbsolver.DebugShell`) in the container of
the ``RUN`` step that failed — the build fails afterwards as it would have — or on the
result after a successful build; through a daemon the container is the daemon's and the
terminal travels over the build's session.

Exit codes: 0 built (or checked without warnings, or a subrequest answered), 1 the build
failed (or ``--check`` found warnings, in either format), 2 a usage error. A debug
shell's own exit status changes none of them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from ._common import engine_client, engine_options, key_values, report_error, write_texts

if TYPE_CHECKING:
    from dockyard import llb
    from dockyard.cli._hints import WalkHints
    from dockyard.cli._memo import Memo
    from dockyard.cli.progress import Renderer
    from dockyard.client import BuildOptions, BuildResult, Client, Subrequest
    from dockyard.core import Event, Reporter
    from dockyard.exporter import Annotation, ExportOptions, ProvenanceOptions, SbomOptions
    from dockyard.llbsolver import DebugShell
    from dockyard.session import SecretSource, SshSpec

__all__ = [
    "DEFAULT_SHELL",
    "CallSpec",
    "InvokeSpec",
    "RunFlags",
    "build",
    "run_flag_options",
    "run_flags",
]

_NO_OUTPUT = (
    "WARNING: No output specified: the build result will only remain in the build cache "
    "(name it with -t, write it with -o, or use --push/--load)"
)


_F = TypeVar("_F", bound=Callable[..., Any])

#: The RUN runtime flags of ``dockyard build``, shared with ``dockyard debug dump-llb``
#: (parsed by :func:`run_flags`).
_RUN_FLAG_OPTIONS = (
    click.option(
        "--add-host",
        "add_hosts",
        multiple=True,
        metavar="NAME:IP",
        help="Add NAME to /etc/hosts of RUN steps (repeatable; NAME=IP too, IPv6 as is or in"
        " brackets; IP host-gateway is 127.0.0.1: RUN steps share the host's network).",
    ),
    click.option(
        "--ulimit",
        "ulimits",
        multiple=True,
        metavar="NAME=SOFT[:HARD]",
        help="A resource limit of RUN steps, e.g. nofile=1024:2048 (repeatable; names as"
        " docker's: core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc,"
        " rss, rtprio, rttime, sigpending, stack; -1: unlimited).",
    ),
    click.option(
        "--shm-size",
        "shm_size",
        metavar="SIZE",
        help="The size of /dev/shm in RUN steps: bytes, or a number with b, k, m, g"
        " (e.g. 128m; default 64m).",
    ),
    click.option(
        "--cgroup-parent",
        "cgroup_parent",
        metavar="PATH",
        help=(
            "The parent cgroup of RUN steps (needs --runtime runc: crun runs without a "
            "cgroup manager here)."
        ),
    ),
)


def run_flag_options(command: _F) -> _F:
    """Add the RUN runtime flags (``--add-host``, ``--ulimit``, ``--shm-size``,
    ``--cgroup-parent``) to a click command, as parameters ``add_hosts``, ``ulimits``,
    ``shm_size`` and ``cgroup_parent`` (parse them with :func:`run_flags`)."""
    for option in reversed(_RUN_FLAG_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFlags:
    """The RUN runtime flags, parsed."""

    extra_hosts: tuple[llb.HostIP, ...] = ()
    ulimits: tuple[llb.Ulimit, ...] = ()
    shm_size: int = 0
    cgroup_parent: str = ""


def run_flags(
    *,
    add_hosts: tuple[str, ...] = (),
    ulimits: tuple[str, ...] = (),
    shm_size: str | None = None,
    cgroup_parent: str | None = None,
) -> RunFlags:
    """The values of :func:`run_flag_options`' flags parsed (a
    :class:`~dockyard.core.UsageError` naming the flag for a bad value)."""
    return RunFlags(
        extra_hosts=_extra_hosts(add_hosts),
        ulimits=_ulimits(ulimits),
        shm_size=_shm_size(shm_size),
        cgroup_parent=_cgroup_parent(cgroup_parent),
    )


@click.command("build")
@click.argument("context", metavar="PATH | URL | -")
@click.option(
    "-f",
    "--file",
    "dockerfile",
    metavar="PATH",
    help="The Dockerfile (default: PATH/Dockerfile; - for stdin).",
)
@click.option(
    "-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Name the image (repeatable)."
)
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Set a build argument; KEY alone takes the value from the environment (repeatable).",
)
@click.option("--target", metavar="STAGE", help="The stage to build.")
@click.option(
    "--platform",
    "platform",
    multiple=True,
    metavar="OS/ARCH[,OS/ARCH...]",
    help="The target platform (default: this host's); several (comma-separated or "
    "repeated) build an image index with a manifest per platform. RUN steps of another "
    "platform need QEMU emulation (see dockyard debug binfmt), or cross-build with "
    "FROM --platform=$BUILDPLATFORM.",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="id=ID[,src=PATH|,env=VAR]",
    help="A secret RUN --mount=type=secret may use (repeatable).",
)
@click.option(
    "--ssh",
    "ssh",
    multiple=True,
    metavar="default|ID[=SOCKET|KEY[,KEY]]",
    help="Forward an SSH agent or keys to RUN --mount=type=ssh (repeatable).",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="type=TYPE[,dest=PATH]...|DIR|-",
    help=(
        "Where the result goes: type=image|registry|oci|docker|local|tar, dest=, name=, "
        "push= (repeatable)."
    ),
)
@click.option("--push", is_flag=True, help="Push the image (shorthand for --output=type=registry).")
@click.option("--load", is_flag=True, help="Load the image into docker (docker load).")
@click.option(
    "--cache-from",
    "cache_from",
    multiple=True,
    metavar="type=local,src=DIR|type=registry,ref=REF|REF|type=s3,...|type=azblob,...",
    help="Import build cache (repeatable).",
)
@click.option(
    "--cache-to",
    "cache_to",
    multiple=True,
    metavar=(
        "type=local,dest=DIR|type=registry,ref=REF|REF|type=inline|type=s3,...|type=azblob,..."
    ),
    help="Export build cache (mode=max: every step's; repeatable).",
)
@click.option("--no-cache", is_flag=True, help="Do not use the cache for any step.")
@click.option(
    "--no-cache-filter",
    "no_cache_filter",
    multiple=True,
    metavar="STAGE",
    help="Do not use the cache for these stages (repeatable, or comma-separated).",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "tty", "plain", "rawjson", "quiet"]),
    default="auto",
    show_default=True,
    help="How to show progress on stderr (auto: tty on a terminal, else plain).",
)
@click.option("--iidfile", metavar="FILE", help="Write the image ID to FILE.")
@click.option(
    "--metadata-file",
    "metadata_file",
    metavar="FILE",
    help="Write the build's metadata (JSON) to FILE.",
)
@click.option(
    "--build-context",
    "build_contexts",
    multiple=True,
    metavar="NAME=DIR|URL|docker-image://REF",
    help="An additional named context (repeatable).",
)
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set an image label (repeatable)."
)
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="[TYPE[,TYPE][PLATFORM]:]KEY=VALUE",
    help="Annotate the image: manifests by default; TYPE manifest, manifest-descriptor,"
    " index or index-descriptor, [PLATFORM] only that platform's (repeatable).",
)
@click.option(
    "--network",
    type=click.Choice(["default", "none", "host"]),
    default="default",
    show_default=True,
    help="The network of RUN steps.",
)
@run_flag_options
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="network.host|security.insecure|device[=NAME[,alias=ALIAS]]",
    help="Grant an entitlement the build asks for (repeatable); device: the CDI devices"
    " RUN --device asks for (all of them, or those NAME selects).",
)
@click.option(
    "--provenance",
    metavar="true|false|mode=min|max[,version=v0.2|v1][,builder-id=ID]",
    help="Attach an SLSA provenance attestation (as --attest type=provenance): true is"
    " mode=min; version=v1 makes SLSA v1 (v0.2 by default, as BuildKit). Off by default"
    " (buildx attaches mode=min unless told not to).",
)
@click.option(
    "--sbom",
    metavar="true|false|generator=IMAGE",
    help="Attach SPDX SBOM attestations (as --attest type=sbom): true scans with the"
    " built-in scanner (generator=builtin), generator=IMAGE runs a BuildKit SBOM generator"
    " image. Off by default.",
)
@click.option(
    "--attest",
    "attests",
    multiple=True,
    metavar="type=provenance[,mode=min|max][,version=v1]|type=sbom[,generator=IMAGE]",
    help="Attach an attestation to the outputs (type=provenance: mode=min by default;"
    " type=sbom: the built-in scanner by default). Repeatable.",
)
@click.option("--pull", is_flag=True, help="Always look base images up in their registry.")
@click.option(
    "--check", is_flag=True, help="Run the build checks only; build nothing (--call=check)."
)
@click.option(
    "--call",
    metavar="build|check|outline|targets[,format=text|json]",
    help="What to do: build (default), check, or print the outline of the target or "
    "the targets of the Dockerfile, and build nothing (format=json: the answer as JSON; "
    "check's exits 1 with warnings, as in text).",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="Show no progress; print the image ID on success."
)
@click.option(
    "--invoke",
    metavar="CMD|on-error",
    help="Debug the build: run CMD (split as a shell would; e.g. /bin/sh) interactively"
    " in the failed RUN step's container (its mounts, environment, directory and user;"
    " the build then fails as it would have) or, after a successful build, in the result"
    " (changes discarded). on-error: /bin/sh, only when a step fails. With --addr the"
    " shell runs on the daemon's host, on this terminal.",
)
@click.option(
    "--on",
    "invoke_on",
    type=click.Choice(["always", "error"]),
    help="When to run the --invoke command (buildx debug's --on): always (the default"
    " with --invoke) or only when a step fails (error; /bin/sh without --invoke).",
)
@click.option(
    "--addr",
    metavar="unix://PATH|tcp://HOST:PORT",
    help="The dockyardd daemon to build on (as dockyard --addr).",
)
@engine_options
@click.pass_context
def build(
    ctx: click.Context,
    context: str,
    dockerfile: str | None,
    tags: tuple[str, ...],
    build_args: tuple[str, ...],
    target: str | None,
    platform: tuple[str, ...],
    secrets: tuple[str, ...],
    ssh: tuple[str, ...],
    outputs: tuple[str, ...],
    push: bool,
    load: bool,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
    no_cache: bool,
    no_cache_filter: tuple[str, ...],
    progress: str,
    iidfile: str | None,
    metadata_file: str | None,
    build_contexts: tuple[str, ...],
    labels: tuple[str, ...],
    annotations: tuple[str, ...],
    network: str,
    add_hosts: tuple[str, ...],
    ulimits: tuple[str, ...],
    shm_size: str | None,
    cgroup_parent: str | None,
    allow: tuple[str, ...],
    provenance: str | None,
    sbom: str | None,
    attests: tuple[str, ...],
    pull: bool,
    check: bool,
    call: str | None,
    quiet: bool,
    invoke: str | None,
    invoke_on: str | None,
    addr: str | None,
    state_dir: str | None,
    runtime: str,
    snapshotter: str,
) -> int:
    """Build an image from a Dockerfile and the context PATH (a directory, a git or
    http(s) URL, or - for a tarball or a Dockerfile on stdin)."""
    from dockyard.core import DockyardError, UsageError

    quiet_flag = "-q" if quiet else "--progress quiet"  # what the user said, for errors
    quiet = quiet or progress == "quiet"  # buildx: quiet prints the image ID on success
    try:
        spec = CallSpec.parse(call, check=check)
        invoke_spec = InvokeSpec.parse(invoke, invoke_on)
        _remove_iidfile(iidfile)
    except DockyardError as exc:
        return report_error(exc)
    from dockyard.cli import _memo

    # a build that changed nothing last time, asked again on the same inputs: replayed
    # (never with --invoke: the shell needs the build to run)
    memo = (
        _memo.prepare(ctx.params, addr=addr or ctx.meta.get("dockyard.addr"))
        if spec.name == "build" and invoke_spec is None
        else None
    )
    if memo is not None:
        code = memo.replay(
            progress="quiet" if quiet else progress,
            quiet=quiet,
            iidfile=iidfile,
            metadata_file=metadata_file,
        )
        if code is not None:
            return code
    console = _ShellConsole() if invoke_spec is not None and spec.name == "build" else None
    try:
        options = build_options(
            context=context,
            dockerfile=dockerfile,
            tags=tags,
            build_args=build_args,
            target=target,
            platform=platform,
            secrets=secrets,
            ssh=ssh,
            outputs=outputs,
            push=push,
            load=load,
            cache_from=cache_from,
            cache_to=cache_to,
            no_cache=no_cache,
            no_cache_filter=no_cache_filter,
            build_contexts=build_contexts,
            labels=labels,
            annotations=annotations,
            network=network,
            add_hosts=add_hosts,
            ulimits=ulimits,
            shm_size=shm_size,
            cgroup_parent=cgroup_parent,
            allow=allow,
            pull=pull,
            provenance=provenance,
            sbom=sbom,
            attests=attests,
            check=spec.name == "check",
            subrequest=spec.subrequest,
            debug_shell=(
                invoke_spec.shell(console.announce)
                if invoke_spec is not None and console is not None
                else None
            ),
        )
        if quiet and _writes_stdout(options):
            raise UsageError(
                f"{quiet_flag} prints the image ID on stdout: it cannot go with an output to -"
                " (leave it out, or write the output to a file)"
            )
        from dockyard.cli._hints import WalkHints

        hints = WalkHints.load(context, dockerfile, target)
        if hints is not None and hints.requests:
            options = dataclasses.replace(options, prefetch=hints.requests)
        client = engine_client(
            state_dir,
            runtime,
            snapshotter,
            addr=addr,
            allow=tuple(sorted(options.entitlements)),
        )
    except DockyardError as exc:
        return report_error(exc)
    return run_build(
        client,
        options,
        **({"console": console} if console is not None else {}),
        progress="quiet" if quiet else progress,
        quiet=quiet,
        iidfile=iidfile,
        metadata_file=metadata_file,
        memo=memo,
        hints=hints,
        call_format=spec.format,
    )


# -- options -------------------------------------------------------------------------------


def build_options(
    *,
    context: str,
    dockerfile: str | None = None,
    tags: tuple[str, ...] = (),
    build_args: tuple[str, ...] = (),
    target: str | None = None,
    platform: str | tuple[str, ...] | None = None,
    secrets: tuple[str, ...] = (),
    ssh: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    push: bool = False,
    load: bool = False,
    cache_from: tuple[str, ...] = (),
    cache_to: tuple[str, ...] = (),
    no_cache: bool = False,
    no_cache_filter: tuple[str, ...] = (),
    build_contexts: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
    annotations: tuple[str, ...] = (),
    network: str = "default",
    add_hosts: tuple[str, ...] = (),
    ulimits: tuple[str, ...] = (),
    shm_size: str | None = None,
    cgroup_parent: str | None = None,
    allow: tuple[str, ...] = (),
    pull: bool = False,
    check: bool = False,
    subrequest: Subrequest | None = None,
    provenance: str | None = None,
    attests: tuple[str, ...] = (),
    sbom: str | None = None,
    debug_shell: DebugShell | None = None,
) -> BuildOptions:
    """The flags of ``dockyard build`` parsed into :class:`~dockyard.client.BuildOptions`
    (a :class:`~dockyard.core.UsageError` naming the flag for a bad value)."""
    import os

    from dockyard.client import BuildOptions, CacheSpec
    from dockyard.core import UsageError

    args: dict[str, str] = {}
    for item in build_args:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"--build-arg expects KEY=VALUE or KEY, got {item!r}")
        if sep:
            args[key] = value
        elif key in os.environ:  # KEY alone: from the environment, if it is set there
            args[key] = os.environ[key]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and "SOURCE_DATE_EPOCH" not in args:  # as buildx: reproducible builds
        args["SOURCE_DATE_EPOCH"] = epoch
    from dockyard.frontend import parse_platforms

    try:
        platforms = parse_platforms(platform or ())
    except ValueError as exc:
        raise UsageError(f"--platform: {exc}") from None
    stages = tuple(s.strip() for item in no_cache_filter for s in item.split(",") if s.strip())
    run = run_flags(
        add_hosts=add_hosts, ulimits=ulimits, shm_size=shm_size, cgroup_parent=cgroup_parent
    )
    stdin = sys.stdin.buffer if "-" in (context, dockerfile) else None
    if stdin is not None and sys.stdin.isatty():
        raise UsageError(
            "- reads the context or the Dockerfile from stdin, but stdin is a terminal"
        )
    return BuildOptions(
        context=context,
        dockerfile=dockerfile,
        tags=tags,
        build_args=args,
        labels=key_values("--label", labels),
        annotations=_annotations(annotations),
        target=target or None,
        platforms=platforms,
        secrets=_secrets(secrets),
        ssh=_ssh(ssh),
        outputs=_outputs(outputs),
        push=push,
        load=load,
        cache_from=tuple(CacheSpec.parse(c, export=False) for c in cache_from),
        cache_to=tuple(CacheSpec.parse(c, export=True) for c in cache_to),
        no_cache=no_cache,
        no_cache_filter=stages,
        build_contexts=key_values("--build-context", build_contexts),
        network=network,  # type: ignore[arg-type]  # click.Choice checked it
        extra_hosts=run.extra_hosts,
        ulimits=run.ulimits,
        shm_size=run.shm_size,
        cgroup_parent=run.cgroup_parent,
        allow=frozenset(allow),
        pull=pull,
        check=check,
        subrequest=subrequest,
        stdin=stdin,
        provenance=_provenance(provenance, attests),
        sbom=_sbom(sbom, attests),
        debug_shell=debug_shell,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeSpec:
    """``--invoke CMD`` and ``--on always|error`` (buildx's ``debug --invoke CMD --on``,
    and its older ``build --invoke on-error``): the command (``args``) and whether it
    runs after a successful build (``on_success``) as well as in a failed step."""

    args: tuple[str, ...]
    on_success: bool = True

    @classmethod
    def parse(cls, invoke: str | None, on: str | None) -> InvokeSpec | None:
        """``None`` when neither flag is given; a :class:`~dockyard.core.UsageError`
        naming the flag for a bad value."""
        from dockyard.core import UsageError

        if invoke is None and on is None:
            return None
        if on not in (None, "always", "error"):
            raise UsageError(f"--on {on}: expected always or error")
        if invoke is not None and invoke.strip() == "on-error":
            if on == "always":
                raise UsageError("--invoke on-error runs only on an error: not with --on=always")
            return cls(args=(DEFAULT_SHELL,), on_success=False)
        if invoke is None:
            return cls(args=(DEFAULT_SHELL,), on_success=on == "always")
        import shlex

        try:
            args = tuple(shlex.split(invoke))
        except ValueError as exc:
            raise UsageError(f"--invoke {invoke!r}: {exc}") from None
        if not args:
            raise UsageError("--invoke needs a command (e.g. /bin/sh)")
        return cls(args=args, on_success=on != "error")

    def shell(self, announce: Callable[[str], None]) -> DebugShell:
        """The build's :class:`~dockyard.llbsolver.DebugShell` on this process's stdin,
        stdout and stderr (a terminal when stdin is one)."""
        from dockyard.executor.types import Stdio
        from dockyard.llbsolver import DebugShell

        return DebugShell(
            args=self.args,
            stdio=Stdio(),
            on_error=True,
            on_success=self.on_success,
            announce=announce,
        )


DEFAULT_SHELL = "/bin/sh"
"""What ``--invoke on-error`` and ``--on`` alone run."""


class _ShellConsole:
    """Between the progress display and an ``--invoke`` shell: before the shell runs,
    the display stops (closing it is final: events after are dropped) and the line
    saying what runs is printed. :attr:`used`: a shell was announced (the failed
    step's log is printed with the error then: the display did not show it)."""

    def __init__(self) -> None:
        self.renderer: Renderer | None = None
        self.used = False

    def announce(self, line: str) -> None:
        self.used = True
        if self.renderer is not None:
            self.renderer.close()
        click.echo(f"#  {line}", err=True)
        sys.stderr.flush()


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSpec:
    """``--call=NAME[,format=text|json]`` (buildx's build subrequests): ``build`` (the
    default), ``check`` (``--check``), ``outline`` or ``targets``; ``format`` is how the
    checks' answer, an outline or the targets print."""

    name: Literal["build", "check", "outline", "targets"] = "build"
    format: Literal["text", "json"] = "text"

    @property
    def subrequest(self) -> Subrequest | None:
        """The frontend request of ``outline`` and ``targets``."""
        if self.name == "outline" or self.name == "targets":
            return self.name
        return None

    @classmethod
    def parse(cls, text: str | None, *, check: bool = False) -> CallSpec:
        """``--call``'s value (``None``: not given) and ``--check``; a
        :class:`~dockyard.core.UsageError` naming the flag for a bad one."""
        from dockyard.core import UsageError

        if text is None:
            return cls(name="check") if check else cls()
        name = ""
        format = ""
        for item in (f.strip() for f in text.split(",")):
            key, sep, value = item.partition("=")
            if not sep and not name:
                name = item.lower()
            elif sep and key.strip().lower() == "format" and not format:
                format = value.strip().lower()
            else:
                raise UsageError(
                    f"--call {text}: unexpected {item!r} (expected NAME[,format=text|json])"
                )
        if name not in ("build", "check", "outline", "targets"):
            raise UsageError(
                f"--call {text}: unknown function {name!r} "
                "(expected build, check, outline or targets)"
            )
        if format not in ("", "text", "json"):
            raise UsageError(f"--call {text}: unknown format {format!r} (expected text or json)")
        if format == "json" and name == "build":
            raise UsageError(f"--call {text}: format=json is for check, outline and targets")
        if check and name != "check":
            raise UsageError(f"--check is --call=check: it cannot go with --call={name}")
        return cls(
            name=name,  # type: ignore[arg-type]  # checked above
            format="json" if format == "json" else "text",
        )


# The exporter's and the session's parsers load only for the flags that need them.


def _provenance(flag: str | None, attests: tuple[str, ...]) -> ProvenanceOptions | None:
    """``--attest type=provenance,...`` then ``--provenance`` (the later wins, as a
    repeated buildx flag); ``None``: no provenance (Dockyard's default)."""
    if flag is None and not attests:
        return None
    from dockyard.exporter import attest_type, parse_attest_flag, parse_provenance_flag

    out: ProvenanceOptions | None = None
    for value in attests:
        if attest_type(value) == "provenance":
            out = parse_attest_flag(value)
    if flag is not None:
        out = parse_provenance_flag(flag)
    return out


def _sbom(flag: str | None, attests: tuple[str, ...]) -> SbomOptions | None:
    """``--attest type=sbom,...`` then ``--sbom`` (the later wins); ``None``: no SBOM
    (the default, as buildx's)."""
    if flag is None and not attests:
        return None
    from dockyard.exporter import attest_type, parse_sbom_attest, parse_sbom_flag

    out: SbomOptions | None = None
    for value in attests:
        if attest_type(value) == "sbom":
            out = parse_sbom_attest(value)
    if flag is not None:
        out = parse_sbom_flag(flag)
    return out


def _annotations(values: tuple[str, ...]) -> tuple[Annotation, ...]:
    if not values:
        return ()
    from dockyard.exporter import parse_annotation

    return tuple(a for v in values for a in parse_annotation(v))


def _secrets(values: tuple[str, ...]) -> tuple[SecretSource, ...]:
    if not values:
        return ()
    from dockyard.session import SecretSource

    return tuple(SecretSource.parse(s) for s in values)


def _ssh(values: tuple[str, ...]) -> tuple[SshSpec, ...]:
    if not values:
        return ()
    from dockyard.session import SshSpec

    return tuple(SshSpec.parse(s) for s in values)


def _extra_hosts(values: tuple[str, ...]) -> tuple[llb.HostIP, ...]:
    if not values:
        return ()
    from dockyard import llb
    from dockyard.core import UsageError

    out: list[llb.HostIP] = []
    for value in values:
        try:
            out.append(llb.HostIP.parse(value))
        except UsageError as exc:
            raise UsageError(f"--add-host {value}: {exc.message}") from None
    return tuple(out)


def _ulimits(values: tuple[str, ...]) -> tuple[llb.Ulimit, ...]:
    """Docker's ``--ulimit`` values; a later one for the same name replaces the first."""
    if not values:
        return ()
    from dockyard import llb
    from dockyard.core import UsageError

    out: dict[str, llb.Ulimit] = {}
    for value in values:
        try:
            limit = llb.Ulimit.parse(value)
        except UsageError as exc:
            raise UsageError(f"--ulimit {value}: {exc.message}") from None
        out[limit.name] = limit
    return tuple(out.values())


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _shm_size(value: str | None) -> int:
    """Docker's ``--shm-size`` (``RAMInBytes``): ``134217728``, ``128m``, ``1.5g``,
    ``512kb`` (binary units)."""
    if value is None:
        return 0
    import re

    from dockyard.core import UsageError

    match = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", value.strip(), re.IGNORECASE)
    if match is None:
        raise UsageError(
            f"--shm-size {value}: invalid size (a number of bytes, or with a unit: 128m, 1g)"
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
    if size <= 0:
        raise UsageError(f"--shm-size {value}: the size must be above 0")
    return size


def _cgroup_parent(value: str | None) -> str:
    if value is None:
        return ""
    from dockyard.core import UsageError

    path = value.strip()
    if not path or any(c.isspace() for c in path) or ".." in path.split("/"):
        raise UsageError(f"--cgroup-parent {value!r}: expected a cgroup path, e.g. /builds")
    return path


def _outputs(values: tuple[str, ...]) -> tuple[ExportOptions, ...]:
    if not values:
        return ()
    from dockyard.exporter import parse_output

    return tuple(parse_output(o) for o in values)


def _writes_stdout(options: BuildOptions) -> bool:
    if not options.outputs:
        return False
    from dockyard.exporter import Stdout

    return any(isinstance(getattr(o, "dest", None), Stdout) for o in options.outputs)


# -- running -------------------------------------------------------------------------------


def run_build(
    client: Client,
    options: BuildOptions,
    *,
    progress: str,
    quiet: bool = False,
    iidfile: str | None = None,
    metadata_file: str | None = None,
    memo: Memo | None = None,
    hints: WalkHints | None = None,
    call_format: Literal["text", "json"] = "text",
    console: _ShellConsole | None = None,
) -> int:
    """Build, show progress, write ``--iidfile``/``--metadata-file``, report; the exit
    code. With a ``memo``, a build the engine finds replayable is remembered in it;
    ``hints`` keep the sync requests of a build that ran for the next one. A
    subrequest's answer is printed on stdout in ``call_format``."""
    import asyncio

    from dockyard.cli.progress import make_renderer
    from dockyard.core import (
        CollectingReporter,
        DockyardError,
        TeeReporter,
        UnreachableError,
        UsageError,
    )

    renderer = make_renderer(progress, sys.stderr)
    if console is not None:
        console.renderer = renderer
    events = CollectingReporter()
    reporter: Reporter = renderer if memo is None else TeeReporter(renderer, events)
    if options.check and call_format == "json":
        reporter = _NoWarnings(reporter)  # as buildx: the warnings are in the document
    try:
        result = asyncio.run(_run(client, options, reporter))
    except DockyardError as exc:
        renderer.close()  # the progress and the failed step's log come first
        if _writes_stdout(options):
            from dockyard.cli import _stdio

            if _stdio.reader_gone((1,)):  # the tarball's reader went away (| head -c)
                import signal

                return -signal.SIGPIPE  # as a Go CLI ends: by SIGPIPE, nothing more said
        # (an unreachable daemon solved nothing: said as buildx says a dead builder)
        prefix = "" if isinstance(exc, (UsageError, UnreachableError)) else "failed to solve: "
        step_log = progress in ("quiet", "rawjson") or (console is not None and console.used)
        return report_error(exc, step_log=step_log, prefix=prefix)
    finally:
        renderer.close()
    if hints is not None:
        hints.save(result.synced)
    if quiet:  # buildx prints the image ID on every success: an empty line without one
        click.echo(result.image_id or "")  # (and before a --call or --check answer)
    if options.check:
        return _check_answer(
            result,
            call_format,
            iidfile=iidfile,
            metadata_file=metadata_file,
            step_log=progress in ("quiet", "rawjson"),
        )
    try:
        _write_files(result, iidfile, metadata_file)
    except DockyardError as exc:
        return report_error(exc)
    if options.subrequest is not None:
        return _print_answer(result, options.subrequest, call_format)
    lines = describe(result, client) if not quiet or result.replayable else []
    if memo is not None:
        memo.save(result, events.events, lines)
    if quiet:
        return 0
    if progress != "rawjson":
        for line in lines:
            click.echo(line, err=True)
    return 0


async def _run(client: Client, options: BuildOptions, reporter: Reporter) -> BuildResult:
    async with client:
        return await client.build(options, reporter)


def _write_files(result: BuildResult, iidfile: str | None, metadata_file: str | None) -> None:
    # buildx writes the file even without an image (empty: a local or tar output)
    write_texts(((iidfile, result.image_id or ""), (metadata_file, result.metadata_json())))


def _remove_iidfile(iidfile: str | None) -> None:
    """Remove an earlier ``--iidfile`` before building, as buildx does: a build that
    fails (or makes no image) must not leave the last build's image ID there. Only a
    regular file: ``/dev/stdout``, ``/dev/fd/N`` (``--iidfile >(...)``), a pipe or a
    symlink is the user's and stays (buildx would remove ``/dev/stdout`` itself)."""
    if not iidfile:
        return
    import os
    import stat

    from dockyard.core import UsageError

    try:
        if stat.S_ISREG(os.lstat(iidfile).st_mode):
            os.unlink(iidfile)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UsageError(f"--iidfile {iidfile}: cannot remove it: {exc.strerror or exc}") from exc


class _NoWarnings:
    """Passes every event but the build-check warnings on to ``inner``."""

    __slots__ = ("inner",)

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def emit(self, event: Event) -> None:
        from dockyard.core import BuildWarning

        if not isinstance(event, BuildWarning):
            self.inner.emit(event)


def _check_answer(
    result: BuildResult,
    call_format: Literal["text", "json"],
    *,
    iidfile: str | None,
    metadata_file: str | None,
    step_log: bool,
) -> int:
    """The end of a check run, as buildx ends ``--call=check``: in text, the checks'
    failure as the build's error, or the count of warnings; in JSON, the lint document
    on stdout, then the failure on stderr. Exit 1 with warnings or a failure. The
    ``--iidfile`` and ``--metadata-file`` are written unless the checks failed."""
    from dockyard.core import DockyardError, FrontendError

    document = result.metadata.get("result.json")
    failure: FrontendError | None = None
    status = 0
    if isinstance(document, str):
        from dockyard.dockerfile import LintResults

        try:
            answer = LintResults.from_json(document)
        except FrontendError as exc:
            return report_error(exc)
        failure = answer.error()
        status = _status_code(result.metadata.get("result.statuscode"), answer.status_code)
    elif call_format == "json":  # an engine that answers no document
        return report_error(FrontendError("the frontend did not answer the check request"))
    if failure is None:
        try:
            _write_files(result, iidfile, metadata_file)
        except DockyardError as exc:
            return report_error(exc)
    if call_format == "json":
        click.echo(document)  # buildx: the document and a newline
        return report_error(failure) if failure is not None else status
    if failure is not None:  # as a build that stopped at it
        return report_error(failure, step_log=step_log, prefix="failed to solve: ")
    return _check_summary(result)


def _status_code(value: object, default: int) -> int:
    """BuildKit's ``result.statuscode`` (a number as text), else ``default``."""
    try:
        return int(str(value)) if value is not None else default
    except ValueError:
        return default


def _check_summary(result: BuildResult) -> int:
    count = len(result.warnings)
    if not count:
        click.echo("Check complete, no warnings found.", err=True)
        return 0
    noun = "warning has" if count == 1 else "warnings have"
    click.echo(f"Check complete, {count} {noun} been found!", err=True)
    return 1


def _print_answer(
    result: BuildResult, subrequest: Subrequest, call_format: Literal["text", "json"]
) -> int:
    from dockyard.core import FrontendError

    output = result.call_output(call_format)
    if output is None:
        return report_error(FrontendError(f"the frontend did not answer the {subrequest} request"))
    if call_format == "json":
        click.echo(output)  # buildx: the document and a newline
    else:
        click.echo(output, nl=False)
    return 0


def describe(result: BuildResult, client: Client) -> list[str]:
    """Where the result went, one line each (for the user, after the progress)."""
    from dockyard.exporter import (
        ClientTarget,
        DockerExport,
        ImageExport,
        LocalExport,
        LocalPath,
        OciExport,
        Stdout,
        TarExport,
    )

    lines: list[str] = []
    if not result.outputs:
        return [_NO_OUTPUT]
    image_id = result.image_id or ""
    for output in result.outputs:
        if isinstance(output, ImageExport):
            where = (
                f"the image store of dockyardd at {client.address}"
                if client.state_dir is None
                else f"the image store of {client.state_dir} (see: dockyard images)"
            )
            names = ", ".join(str(n) for n in output.image.names) or "(no name)"
            if output.store:
                lines.append(f"Image {names} ({image_id}) stored in {where}")
            if output.push:
                lines.append(f"Image {names} ({image_id}) pushed")
            continue
        dest = output.dest
        if isinstance(dest, ClientTarget):
            if dest.name == "docker-load" and result.load_output:
                lines.append(result.load_output)
            continue
        where = (
            "stdout"
            if isinstance(dest, Stdout)
            else str(dest.path)
            if isinstance(dest, LocalPath)
            else ""
        )
        if isinstance(output, LocalExport):
            lines.append(f"Files written to {where}")
        elif isinstance(output, TarExport):
            lines.append(f"Tarball of the files written to {where}")
        elif isinstance(output, OciExport):
            lines.append(
                f"OCI image layout {'tarball ' if output.tar else ''}written to {where} ({image_id})"
            )
        elif isinstance(output, DockerExport):
            lines.append(f"Docker image tarball written to {where} ({image_id})")
    return lines
