"""``COPY`` and ``ADD``: one file op copying every source to the destination.

Sources: the build context (or ``--from``'s stage, image or named context) with
wildcards, directory contents copied into the destination and symlinks followed (the
copy itself resolves them); heredoc bodies (written to a scratch file first); for ``ADD``
also http(s) URLs (``llb.http``, ``--checksum`` pinning the content, never unpacked unless
``--unpack``) and git URLs (``llb.git``, ``--keep-git-dir``, ``--checksum`` pinning the
commit). ``ADD`` unpacks local archives. The destination is relative to the working
directory; a trailing ``/`` means "into this directory" and is kept.

``--chown`` names are resolved from the destination's own ``/etc/passwd`` and
``/etc/group`` when the copy runs (the owner names the destination input); ``--chmod``
is octal or symbolic; ``--parents`` keeps the source path (from a ``/./`` pivot) and
requires non-wildcard sources to exist; ``--exclude`` filters; ``--link`` copies onto an
empty layer and merges it on top, so the layer does not depend on what is below.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from dockyard import llb
from dockyard.core import UsageError

from ._convert_paths import normalize_path
from ._convert_stages import Command, StageNode
from ._instructions import AddInstruction, CopyInstruction
from ._text import parse_go_bool
from ._values import BadValue, parse_checksum

if TYPE_CHECKING:
    from ._convert_dispatch import StageDispatcher

__all__ = ["GitRef", "dispatch_copy", "parse_git_ref"]

_SCHEME_RE = re.compile(r"^[a-zA-Z0-9+.-]+://")
_SCP_RE = re.compile(r"^([a-zA-Z0-9._-]+)@([a-zA-Z0-9._-]+):(.*?)(?:#(.*))?$")
_GIT_SCHEMES = frozenset({"http", "https", "ssh", "git"})


@dataclass(frozen=True, slots=True, kw_only=True)
class GitRef:
    """A git URL as ``ADD`` reads it: ``remote`` without fragment or query, the ``ref``
    and ``subdir`` from ``#ref:subdir`` or the query (``?ref=``, ``?tag=``, ``?branch=``,
    ``?subdir=``, ``?checksum=``, ``?keep-git-dir=``, ``?submodules=``)."""

    remote: str
    ref: str = ""
    subdir: str = ""
    checksum: str = ""
    keep_git_dir: bool | None = None
    submodules: bool | None = None


class GitRefError(ValueError):
    pass


def parse_git_ref(text: str) -> GitRef | None:
    """The git reference ``text`` is, or ``None`` for anything else (local paths, plain
    http(s) URLs — those need a path ending in ``.git`` to count as git). Raises
    :class:`GitRefError` for a git URL with a bad query."""
    if text.startswith(("./", "../", "github.com/")):
        return None
    if _SCHEME_RE.match(text):
        parts = urlsplit(text)
        if parts.scheme.lower() not in _GIT_SCHEMES:
            return None
        if parts.scheme.lower() in ("http", "https") and not parts.path.endswith(".git"):
            return None
        remote = parts._replace(fragment="", query="").geturl()
        fragment = parts.fragment
        query = parts.query
    else:
        match = _SCP_RE.match(text)
        if match is None:
            return None
        head, _, fragment = text.partition("#")
        remote, _, query = head.partition("?")
    ref, _, subdir = fragment.partition(":")
    return _with_query(GitRef(remote=remote, ref=ref, subdir=subdir), query)


def _with_query(git: GitRef, query: str) -> GitRef:
    if not query:
        return git
    values = parse_qs(query, keep_blank_values=True)
    ref, subdir, checksum = git.ref, git.subdir, git.checksum
    keep: bool | None = None
    submodules: bool | None = None
    tag = branch = ""
    for key, items in values.items():
        if len(items) > 1:
            raise GitRefError(f"query {key!r} has multiple values")
        value = items[0] if items else ""
        if not value and key not in ("submodules", "keep-git-dir"):
            raise GitRefError(f"query {key!r} has no value")
        if key == "ref":
            if ref and ref != value:
                raise GitRefError(f"ref conflicts: {ref!r} vs {value!r}")
            ref = value
        elif key == "tag":
            tag = value
        elif key == "branch":
            branch = value
        elif key == "subdir":
            if subdir and subdir != value:
                raise GitRefError(f"subdir conflicts: {subdir!r} vs {value!r}")
            subdir = value
        elif key in ("checksum", "commit"):
            checksum = value
        elif key in ("keep-git-dir", "submodules"):
            parsed = True if not value else parse_go_bool(value)
            if parsed is None:
                raise GitRefError(f"invalid {key} value: {value!r}")
            if key == "keep-git-dir":
                keep = parsed
            else:
                submodules = parsed
        else:
            raise GitRefError(f"unexpected query {key!r}")
    if tag:
        if not tag.startswith("refs/tags/"):
            tag = "refs/tags/" + tag
        if ref and ref != tag:
            raise GitRefError(f"ref conflicts: {ref!r} vs {tag!r}")
        ref = tag
    if branch:
        if tag:
            raise GitRefError("branch conflicts with tag")
        if not branch.startswith("refs/heads/"):
            branch = "refs/heads/" + branch
        if ref and ref != branch:
            raise GitRefError(f"ref conflicts: {ref!r} vs {branch!r}")
        ref = branch
    if checksum and not ref:
        ref = checksum
    return GitRef(
        remote=git.remote,
        ref=ref,
        subdir=subdir,
        checksum=checksum,
        keep_git_dir=keep,
        submodules=submodules,
    )


def _is_http(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_remote_source(source: str) -> bool:
    """Whether an ``ADD`` source is a URL or a git reference (not a context path); a
    malformed git URL counts as one (the conversion reports it)."""
    if _is_http(source):
        return True
    try:
        return parse_git_ref(source) is not None
    except GitRefError:
        return True


def _has_wildcards(name: str) -> bool:
    i = 0
    while i < len(name):
        ch = name[i]
        if ch in "*?[":
            return True
        if ch == "\\":
            i += 1
        i += 1
    return False


_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _url_filename(url: str) -> str:
    """The name BuildKit gives a download: the last element of the URL's decoded path
    (Go's ``path.Base`` of ``url.Parse(src).Path``: trailing slashes dropped, ``%XX``
    decoded), ``__unnamed__`` for a URL with no such element or one Go cannot parse."""
    if _CONTROL_RE.search(url):
        return "__unnamed__"
    try:
        raw = urlsplit(url).path
    except ValueError:
        return "__unnamed__"
    if _BAD_ESCAPE_RE.search(raw):
        return "__unnamed__"
    path = unquote(raw).rstrip("/")
    base = path.rsplit("/", 1)[-1]
    return base if base and base != "." else "__unnamed__"


def dispatch_copy(
    d: StageDispatcher, instruction: CopyInstruction | AddInstruction, command: Command
) -> None:
    is_add = isinstance(instruction, AddInstruction)
    keyword = "ADD" if is_add else "COPY"
    source_node = command.sources[0] if command.sources else None
    source_state = _source_state(d, instruction, source_node)
    written = "./" if instruction.dest in (".", "") else instruction.dest
    dest = normalize_path(d.state.cwd, written, keep_slash=True)
    owner: llb.Chown | None = None
    if instruction.chown:
        try:
            owner = llb.Chown.parse(instruction.chown)
        except UsageError as exc:
            raise instruction.error(f"{keyword} --chown: {exc.message}") from None
    mode: int | str | None = None
    if instruction.mode is not None:
        mode = (
            instruction.mode.octal if instruction.mode.octal is not None else instruction.mode.text
        )
    checksum = instruction.checksum if isinstance(instruction, AddInstruction) else None
    if checksum:
        if len(instruction.sources) != 1 or instruction.contents:
            raise instruction.error("checksum can't be specified for multiple sources")
        only = instruction.sources[0]
        if not _is_http(only) and _git(instruction, only) is None:
            raise instruction.error("checksum requires HTTP(S) or Git sources")

    message = [keyword]
    if isinstance(instruction, CopyInstruction) and instruction.parents:
        message.append("--parents")
    if instruction.chown:
        message.append(f"--chown={instruction.chown}")
    if instruction.chmod:
        message.append(f"--chmod={instruction.chmod}")

    name = d.display(instruction.original, d.env)
    title = d.node.progress.name(name, onbuild=command.onbuild, env=d.env)
    created = d.ctx.created
    common = {
        "owner": owner,
        "mode": mode,
        "exclude_patterns": instruction.excludes,
        "created": created,
    }
    action: llb.FileAction | None = None

    def add(source: llb.State, src: str, **options: object) -> None:
        nonlocal action
        if action is None:
            action = llb.copy(source, src, dest, **common, **options)  # type: ignore[arg-type]
        else:
            action = action.copy(source, src, dest, **common, **options)  # type: ignore[arg-type]

    for src in instruction.sources:
        message.append(src)
        git = _git(instruction, src)
        if git is not None:
            if not isinstance(instruction, AddInstruction):
                raise instruction.error("source can't be a git ref for COPY")
            add(_git_state(d, instruction, git, title), "/", create_dest_path=True)
        elif _is_http(src):
            if not isinstance(instruction, AddInstruction):
                raise instruction.error("source can't be a URL for COPY")
            filename = _url_filename(src)
            if instruction.checksum:
                try:
                    parse_checksum(instruction.checksum)
                except BadValue as exc:
                    raise instruction.error(f"ADD --checksum: {exc}") from None
            try:
                http = llb.http(
                    src,
                    filename=filename,
                    checksum=instruction.checksum or None,
                    constraints=llb.Constraints(
                        custom_name=title, locations=(d.location(instruction),)
                    ),
                )
            except UsageError as exc:
                raise instruction.error(f"ADD {src}: {exc.message}") from None
            add(http, filename, create_dest_path=True, attempt_unpack=bool(instruction.unpack))
        else:
            path, options = _local_source(instruction, src, is_add)
            add(source_state, path, **options)
            if source_node is None:
                d.ctx.context_paths.add(posixpath.normpath(posixpath.join("/", src)))

    for content in instruction.contents:
        message.append("<<" + content.path)
        inline = llb.scratch().file(
            llb.mkfile(content.path, 0o644, content.data),
            constraints=llb.Constraints(
                custom_name="[internal] preparing inline document",
                locations=(d.location(instruction),),
            ),
        )
        add(inline, content.path, create_dest_path=True)
    message.append(instruction.dest)
    assert action is not None  # the parser requires at least one source

    if instruction.link and not instruction.chmod:
        title = d.node.progress.again(name, onbuild=command.onbuild, env=d.env)
        group_id = f"dockerfile:{d.node.display_name}:{instruction.line}:{d.node.progress.index}"
        layer = llb.scratch().file(
            action,
            constraints=d.constraints(
                instruction,
                title,
                progress_group=llb.ProgressGroup(id=group_id, name=title, weak=True),
            ),
        )
        link_name = d.node.progress.again("LINK " + name, onbuild=command.onbuild, env=d.env)
        merged = llb.merge(
            [d.state, layer],
            constraints=d.constraints(
                instruction,
                link_name,
                progress_group=llb.ProgressGroup(id=group_id, name=title, weak=False),
            ),
        )
        d.state = d.state.with_output(merged.output)
    else:
        d.state = d.state.file(action, constraints=d.constraints(instruction, title))
    d.commit(" ".join(message), layer=True)


def _source_state(
    d: StageDispatcher, instruction: CopyInstruction | AddInstruction, node: StageNode | None
) -> llb.State:
    if node is None:
        return d.ctx.build_context
    if not node.dispatched or node.state is None:
        source = instruction.from_stage if isinstance(instruction, CopyInstruction) else ""
        raise instruction.error(
            f"cannot copy from stage {source!r}, it needs to be defined before current stage "
            f"{d.node.display_name or 'stage-' + str(d.node.index)!r}"
        )
    return node.state


def _git(instruction: CopyInstruction | AddInstruction, src: str) -> GitRef | None:
    try:
        return parse_git_ref(src)
    except GitRefError as exc:
        raise instruction.error(f"{instruction.keyword} {src}: {exc}") from None


def _git_state(
    d: StageDispatcher, instruction: AddInstruction, git: GitRef, title: str
) -> llb.State:
    keep: bool | None = instruction.keep_git_dir or None
    if keep is not None and git.keep_git_dir is not None and keep != git.keep_git_dir:
        raise instruction.error("inconsistent keep-git-dir configuration")
    if git.keep_git_dir is not None:
        keep = git.keep_git_dir
    checksum = instruction.checksum or ""
    if checksum and git.checksum and checksum != git.checksum:
        raise instruction.error(f"checksum mismatch {checksum!r} != {git.checksum!r}")
    checksum = git.checksum or checksum
    try:
        return llb.git(
            git.remote,
            git.ref,
            subdir=git.subdir,
            keep_git_dir=bool(keep),
            checksum=checksum or None,
            constraints=llb.Constraints(custom_name=title, locations=(d.location(instruction),)),
        )
    except UsageError as exc:
        raise instruction.error(f"ADD {git.remote}: {exc.message}") from None


def _local_source(
    instruction: CopyInstruction | AddInstruction, src: str, is_add: bool
) -> tuple[str, dict[str, object]]:
    include: list[str] = []
    required: list[str] = []
    if isinstance(instruction, CopyInstruction) and instruction.parents:
        parent, pivot, pattern = src.partition("/./")
        if pivot:
            src = parent
        else:
            pattern, src = src, "/"
        pattern = normalize_path("/", pattern)
        include = [pattern.removeprefix("/")]
        if not _has_wildcards(src) and not _has_wildcards(pattern):
            required = [normalize_path("/", posixpath.normpath(f"{src}/{pattern}"))]
    src = normalize_path("/", src)
    unpack = is_add
    if isinstance(instruction, AddInstruction) and instruction.unpack is not None:
        unpack = instruction.unpack
    return src, {
        "follow_symlinks": True,
        "dir_contents_only": True,
        "include_patterns": include,
        "required_paths": required,
        "attempt_unpack": unpack,
        "create_dest_path": True,
        "allow_wildcard": True,
        "allow_empty_wildcard": True,
    }
