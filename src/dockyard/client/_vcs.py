"""The version-control attributes buildx sends with a build of a local directory in a
git work tree (``vcs:source``, ``vcs:revision``, ``vcs:localdir:NAME``), which
BuildKit's provenance records under ``#metadata.vcs``: a hint, never verified.

As buildx reads them, with ``git`` in the context directory: the revision is the full
commit of ``HEAD`` (``-dirty`` appended when ``BUILDX_GIT_CHECK_DIRTY`` is true and the
tree has changes), the source the URL of the remote the current branch tracks, else of
``origin``, else of ``upstream`` — its user and password removed — and each served
directory inside the work tree is named by its path from the tree's top.
``BUILDX_GIT_INFO=false`` turns it off. A directory outside any work tree, a repository
without commits or without ``git`` on this host gives no attributes (nothing fails).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["git_attributes", "strip_credentials"]

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_GIT_TIMEOUT = 30.0


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


def strip_credentials(url: str) -> str:
    """``url`` without its user and password (``https://u:p@host/x`` →
    ``https://host/x``); anything that is not a ``scheme://`` URL as it is."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


async def _git(
    git: str, cwd: Path, *args: str, config: Sequence[str] = (), raw: bool = False
) -> str | None:
    """The first line of ``git ARGS``' output in ``cwd`` (``None``: it failed).

    The work tree may be anyone's clone (or a directory someone else made): its config
    must not run programs here. A file-system monitor (``core.fsmonitor``, run by ``git
    status``) is switched off, the index is only read (``GIT_OPTIONAL_LOCKS=0``), no
    prompt is shown. ``config`` adds ``-c`` settings (the dirty check switches the
    repository's content filters off, :func:`_dirty`); ``raw``: the whole output, not
    its first line. The commands run here read local state only: none fetches
    (``core.sshCommand``, ``credential.helper``, ``protocol.*`` are never used), runs a
    hook, a pager (output is a pipe) or a diff (``show --quiet``)."""
    from dockyard.core.procs import stop_process

    env = dict(os.environ, LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0")
    settings = ["log.showSignature=false", "core.fsmonitor=false", *config]
    try:
        process = await asyncio.create_subprocess_exec(
            git,
            *(part for setting in settings for part in ("-c", setting)),
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(process.communicate(), _GIT_TIMEOUT)
    except TimeoutError:
        await stop_process(process)
        return None
    except BaseException:  # cancelled: git is not left running
        await stop_process(process)
        raise
    if process.returncode != 0:
        return None
    if raw:
        return out.decode("utf-8", "replace")
    lines = out.decode("utf-8", "replace").splitlines()
    return lines[0].replace("'", "") if lines else ""


_FILTER_COMMAND = re.compile(r"filter\.(.+)\.(clean|smudge|process)", re.DOTALL)


async def _dirty(git: str, cwd: Path) -> bool:
    """Whether the work tree has changes (``git status --porcelain --ignored``), asked
    without running the repository's programs: ``git status`` passes a file whose stat
    data changed through its content filter (``filter.NAME.clean``/``process``, chosen by
    ``.gitattributes``) — a command any config the work tree holds may name. Every filter
    the config defines is emptied for the call (``-c filter.NAME.clean=``: no filter);
    submodules are compared by commit only (``--ignore-submodules=dirty``: their work
    trees, with configs of their own, would be checked by a git run inside them). A
    filter name ``-c`` cannot carry (holding ``=``) or a failure counts as dirty."""
    listed = await _git(
        git, cwd, "config", "-z", "--name-only", "--get-regexp", r"^filter\.", raw=True
    )
    overrides: list[str] = []
    for name in (listed or "").split("\0"):
        match = _FILTER_COMMAND.fullmatch(name)
        if match is None:
            continue
        if "=" in match.group(1):
            return True
        overrides += [f"filter.{match.group(1)}.{kind}=" for kind in ("clean", "process")]
    status = await _git(
        git,
        cwd,
        "status",
        "--porcelain",
        "--ignored",
        "--ignore-submodules=dirty",
        config=sorted(set(overrides)),
    )
    return status is None or bool(status.strip())


async def _remote_url(git: str, cwd: Path) -> str:
    candidates: list[str] = []
    symref = await _git(git, cwd, "symbolic-ref", "-q", "HEAD")
    if symref:
        tracked = await _git(git, cwd, "for-each-ref", "--format=%(upstream:remotename)", symref)
        if tracked:
            candidates.append(tracked)
    candidates += ["origin", "upstream"]
    for remote in candidates:
        url = await _git(git, cwd, "remote", "get-url", remote)
        if url:
            return strip_credentials(url)
    return ""


async def git_attributes(
    context: Path,
    directories: Mapping[str, Path],
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """The ``vcs:*`` frontend attributes of a build whose ``context`` directory may be in
    a git work tree; ``directories`` are the local directories the session serves, by
    name (``context``, ``dockerfile``), named by their path in the tree."""
    env = os.environ if env is None else env
    if not _flag(env, "BUILDX_GIT_INFO", True):
        return ()
    git = shutil.which("git")
    if git is None:
        return ()
    if await _git(git, context, "rev-parse", "--is-inside-work-tree") != "true":
        return ()
    root = await _git(git, context, "rev-parse", "--show-toplevel")
    out: list[tuple[str, str]] = []
    commit = await _git(git, context, "show", "--format=%H", "HEAD", "--quiet", "--")
    if commit:
        if _flag(env, "BUILDX_GIT_CHECK_DIRTY", False) and await _dirty(git, context):
            commit += "-dirty"
        out.append(("vcs:revision", commit))
    remote = await _remote_url(git, context)
    if remote:
        out.append(("vcs:source", remote))
    if root:
        out += await asyncio.to_thread(_local_dirs, root, directories)
    return tuple(out)


def _local_dirs(root: str, directories: Mapping[str, Path]) -> list[tuple[str, str]]:
    """``vcs:localdir:NAME`` of each directory inside the work tree at ``root``."""
    top = Path(os.path.realpath(root))
    out: list[tuple[str, str]] = []
    for name, directory in sorted(directories.items()):
        real = Path(os.path.realpath(directory))
        if real == top or top in real.parents:
            out.append((f"vcs:localdir:{name}", real.relative_to(top).as_posix()))
    return out
