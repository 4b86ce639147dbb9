"""``RUN``: the command (shell or exec form, heredoc scripts), its mounts, network and
security mode, the progress name and the history line.

Heredocs, as BuildKit runs them: a ``RUN <<EOF`` whose body starts with ``#!`` is written
to a file (mode 0755) mounted read-only under ``/dev/pipes/`` and executed through the
shell; any other single-heredoc body is the shell command itself; heredocs combined with
other words (``RUN python3 <<EOF``) are handed to the shell whole, bodies included.

Mount defaults: ``bind`` reads the build context, read-only (a read-write bind mount's
changes are discarded); ``cache`` ids default to the target path, a cache's ``mode`` /
``uid`` / ``gid`` prepare its directory; ``secret`` targets default to
``/run/secrets/<id>`` and ``env=`` exposes one as a variable; ``secret`` and ``ssh``
mounts are optional unless ``required``. Relative targets are under the working directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dockyard import llb

from ._convert_stages import DOCKERFILE_COMMAND, Command, StageNode
from ._instructions import RunInstruction
from ._mounts import CacheSharing, MountType, NetworkMode, RunMount, SecurityMode
from ._parser import parse_heredoc

if TYPE_CHECKING:
    from ._convert_dispatch import StageDispatcher

__all__ = ["dispatch_run", "run_history"]

_PIPES = "/dev/pipes/"
_SHM = "/dev/shm"
_SHARING = {
    None: llb.CacheSharing.SHARED,
    CacheSharing.SHARED: llb.CacheSharing.SHARED,
    CacheSharing.PRIVATE: llb.CacheSharing.PRIVATE,
    CacheSharing.LOCKED: llb.CacheSharing.LOCKED,
}


def dispatch_run(d: StageDispatcher, instruction: RunInstruction, command: Command) -> None:
    env = d.env
    args = instruction.command
    name = instruction.original
    mounts: list[llb.MountSpec] = []
    if instruction.heredocs:
        if len(args) != 1 or not instruction.shell_form:
            raise instruction.error(f"parsing produced an invalid run command: {list(args)}")
        first = instruction.heredocs[0]
        if _is_heredoc(args[0]):
            data = first.text
            if d.draft.scalars.os != "windows" and data.startswith("#!"):
                script = llb.scratch().file(
                    llb.mkfile(first.name, 0o755, data),
                    constraints=llb.Constraints(
                        custom_name="[internal] preparing inline document",
                        locations=(d.location(instruction),),
                    ),
                )
                mounts.append(llb.BindMount(_PIPES, script, selector="/", readonly=True))
                args = (posixpath.join(_PIPES, first.name),)
            else:
                args = (data,)
            name += f" ({_summary(first.content)})"
        else:
            args = (
                args[0] + "".join(f"\n{doc.content}{doc.name}" for doc in instruction.heredocs),
            )
    if instruction.shell_form:
        args = d.with_shell(args)

    secret_env: list[llb.SecretEnv] = []
    for mount, source in zip(instruction.mounts or (), command.sources, strict=True):
        spec = _mount(d, instruction, mount, source)
        if isinstance(spec, llb.SecretEnv):
            secret_env.append(spec)
        elif isinstance(spec, tuple):
            secret_env.append(spec[0])
            mounts.append(spec[1])
        else:
            mounts.append(spec)

    masked = dict(env)
    for variable in secret_env:
        masked[variable.name] = "****"
    title = d.node.progress.name(
        d.display(name, masked, raw=True), onbuild=command.onbuild, env=env
    )
    network = None
    if instruction.network is NetworkMode.NONE:
        network = llb.NetMode.NONE
    elif instruction.network is NetworkMode.HOST:
        network = llb.NetMode.HOST
    security = None
    if instruction.security is SecurityMode.INSECURE:
        security = llb.SecurityMode.INSECURE
    elif instruction.security is SecurityMode.SANDBOX:
        security = llb.SecurityMode.SANDBOX
    base = d.state
    options = d.ctx.options
    for host in options.extra_hosts:
        base = base.with_extra_host(host.host, host.ip)
    for limit in options.ulimits:
        base = base.with_ulimit(limit.name, limit.soft, limit.hard)
    if options.cgroup_parent:
        base = base.with_cgroup_parent(options.cgroup_parent)
    # --shm-size: BuildKit's tmpfs at /dev/shm; a RUN --mount there keeps its own
    shm_size = 0 if any(m.dest == _SHM for m in mounts) else options.shm_size
    executed = base.run(
        list(args),
        mounts=mounts,
        shm_size=shm_size,
        secret_env=secret_env,
        network=network,
        security=security,
        proxy_env=d.ctx.proxy,
        devices=[llb.CDIDevice(dev.name, optional=not dev.required) for dev in instruction.devices],
        constraints=d.constraints(
            instruction, title, description={DOCKERFILE_COMMAND: instruction.original}
        ),
    )
    d.state = d.state.with_output(executed.output)
    d.commit("RUN " + run_history(args, d.build_args, env), layer=True)


def _is_heredoc(word: str) -> bool:
    try:
        return parse_heredoc(word) is not None
    except Exception:  # a word that only looks like a heredoc is a command
        return False


def _summary(content: str) -> str:
    lines = content.strip().replace("\r\n", "\n").split("\n")
    return lines[0] + ("..." if len(lines) > 1 else "")


def run_history(
    args: tuple[str, ...], build_args: Iterable[tuple[str, str | None]], env: dict[str, str]
) -> str:
    """The history text of a ``RUN``: the declared build arguments' values (``|2 A=1
    B=2``, the environment's value when set) before the command."""
    values: dict[str, str] = {}
    for key, value in build_args:
        values[key] = env.get(key, value or "")
    words = [f"|{len(values)}", *(f"{k}={v}" for k, v in values.items())] if values else []
    return " ".join([*words, *args])


def _mount(
    d: StageDispatcher, instruction: RunInstruction, mount: RunMount, source: StageNode | None
) -> llb.MountSpec | llb.SecretEnv | tuple[llb.SecretEnv, llb.SecretMount]:
    if mount.type is MountType.SECRET:
        return _secret(mount)
    if mount.type is MountType.SSH:
        if mount.source:
            raise instruction.error("ssh does not support source")
        return llb.SSHMount(
            mount.target or "",
            id=mount.id or "",
            uid=mount.uid or 0,
            gid=mount.gid or 0,
            mode=mount.mode if mount.mode is not None else 0o600,
            optional=not mount.required,
        )
    target = mount.target or ""
    if not target.startswith("/"):
        target = posixpath.normpath(posixpath.join("/", d.state.cwd, target))
    if target == "/":
        raise instruction.error(f'invalid mount target "{target}"')
    if mount.type is MountType.TMPFS:
        return llb.TmpfsMount(target, size=mount.size or 0)
    state = _mount_source(d, instruction, mount, source)
    selector = ""
    path = posixpath.normpath(posixpath.join("/", mount.source or ""))
    if path != "/":
        selector = path
    elif mount.uid is not None or mount.gid is not None or mount.mode is not None:
        state = state.file(
            llb.mkdir(
                "/cache",
                mount.mode if mount.mode is not None else 0o755,
                owner=llb.Chown(mount.uid or 0, mount.gid or 0),
            ),
            constraints=llb.Constraints(
                custom_name="[internal] settings cache mount permissions",
                locations=(d.location(instruction),),
            ),
        )
        selector = "/cache"
    if mount.type is MountType.CACHE:
        cache_id = mount.id or posixpath.normpath(mount.target or ".")
        return llb.CacheMount(
            target,
            d.ctx.options.cache_id_namespace + "/" + cache_id,
            sharing=_SHARING[mount.sharing],
            source=state,
            selector=selector,
            readonly=mount.readonly,
        )
    if source is None:
        d.ctx.context_paths.add(path)
    return llb.BindMount(
        target, state, selector=selector, readonly=mount.readonly, no_output=not mount.readonly
    )


def _mount_source(
    d: StageDispatcher, instruction: RunInstruction, mount: RunMount, source: StageNode | None
) -> llb.State:
    if source is not None:
        if not source.dispatched or source.state is None:
            raise instruction.error(
                f"cannot mount from stage {mount.source_stage!r}, it needs to be defined before "
                f"current stage {d.node.display_name or 'stage-' + str(d.node.index)!r}"
            )
        return source.state
    if mount.type is MountType.CACHE:
        return llb.scratch()
    return d.ctx.build_context


def _secret(
    mount: RunMount,
) -> llb.SecretEnv | llb.SecretMount | tuple[llb.SecretEnv, llb.SecretMount]:
    secret_id = mount.id or mount.source or ""
    if not secret_id:
        secret_id = posixpath.basename(mount.target or "")
    optional = not mount.required

    def file(dest: str) -> llb.SecretMount:
        return llb.SecretMount(
            dest,
            secret_id,
            uid=mount.uid or 0,
            gid=mount.gid or 0,
            mode=mount.mode if mount.mode is not None else 0o400,
            optional=optional,
        )

    if mount.env is None:
        return file(mount.target or "/run/secrets/" + posixpath.basename(secret_id))
    variable = llb.SecretEnv(mount.env or secret_id, secret_id, optional=optional)
    if not mount.target:
        return variable
    return variable, file(mount.target)
