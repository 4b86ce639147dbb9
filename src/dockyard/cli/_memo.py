"""``dockyard build``'s replay of a build that changed nothing.

The rebuild that changes nothing is the one users time. On the embedded engine it
costs little work but a whole engine's start (imports, SQLite, the solver's walk over
every step) for an answer that is already known: every step cached, the same image
stored under the same names; through a daemon, the client's start and a session that
sends the context again. So ``dockyard build`` remembers such builds and, when the same
command is run again on the same inputs, replays the remembered progress and result
without starting an engine (or, for a daemon on a unix socket, after one ``Info`` call
for its state token).

What a memory is keyed by (:func:`prepare`) — everything the build could depend on
apart from the engine's state:

- the command line's values (the context and Dockerfile as absolute paths, tags,
  build arguments — with the values of ``--build-arg KEY`` taken from the
  environment — target, platform, labels, network, ``--add-host``, ``--ulimit``,
  ``--shm-size``, ``--cgroup-parent``, ``--allow``, ``SOURCE_DATE_EPOCH``),
  the state directory, runtime and snapshotter, or the daemon's address;
- the bytes of the Dockerfile and of both places its ignore file may be
  (``<Dockerfile>.dockerignore``, ``<context>/.dockerignore``);
- the metadata of every entry of the context that the ignore file leaves in it (path,
  type, mode, owner, size, inode, mtime and ctime, a symlink's target): a file whose
  content changed has a new ctime, which nothing can set back;
- Dockyard's own version and code (the sizes and mtimes of its modules) and Python's.

The engine's state is tracked by its *generation* (:mod:`dockyard.core.statedir`): read
before the build starts, it must still be the same when the memory is used; pruning
cache records or blobs and re-pointing or deleting an image name change it. A daemon
answers ``Info`` with a *state token* digesting its generation, version and
configuration.

Which builds are remembered: only those the engine reports *replayable* (a
Dockerfile build in which every step came from the cache, nothing ran but the local
sources that read the context, and every base image came from the local image store)
— so a memory is only ever made by a build that was itself a no-op, and it replays
that build's events (times shifted to now), its ``--iidfile``/``--metadata-file``
contents (the image descriptor's ``org.opencontainers.image.created`` set to now
without ``SOURCE_DATE_EPOCH``, as an export that ran now writes it) and its closing
lines. Not remembered (the engine always runs): a daemon on tcp, a
context from a URL or stdin, named contexts, secrets, SSH, ``-o``/``--push``/
``--load``, cache import or export, ``--no-cache``/``--no-cache-filter``, ``--pull``,
``--check``, OCI-layout bases, and registries that have mirrors or want credentials.
A base image resolved in a registry is asked about again before a replay — one ``HEAD``
of its tag (:func:`dockyard.registry.tag_unchanged`), what BuildKit asks on every
build — and the build runs if the tag moved or the registry cannot say.

Memories live in ``<state>/memo/`` (at most :data:`KEEP`, the oldest dropped), readable
by whoever owns the state directory, which already holds everything a build produces;
those of daemon builds in the user's ``$XDG_CACHE_HOME/dockyard/memo`` (default
``~/.cache``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.client import BuildResult
    from dockyard.core import Event
    from dockyard.core.pathmatch import MatchState, PatternMatcher

__all__ = ["KEEP", "Memo", "code_fingerprint", "prepare", "verified_code"]

FORMAT = 1
MEMO_DIR = "memo"
#: memories kept per state directory
KEEP = 256
# The daemon's default socket (dockyard.client.DEFAULT_SOCKET, kept equal by a test):
# with a daemon listening there, the address rules pick it.
DEFAULT_SOCKET = "/run/dockyard/dockyardd.sock"
# The flags that always need the engine (each a click parameter of `dockyard build`).
_ENGINE_ONLY = (
    "secrets",
    "ssh",
    "outputs",
    "push",
    "load",
    "cache_from",
    "cache_to",
    "no_cache",
    "no_cache_filter",
    "build_contexts",
    "pull",
    "check",
)
#: seconds a daemon's state token may take (a local socket: it answers at once)
INFO_TIMEOUT = 2.0
_TIMES = ("started", "completed", "timestamp")
_CREATED = "org.opencontainers.image.created"


class Memo:
    """The memory of one ``dockyard build`` invocation: its key, where it is kept, and
    the engine's generation when the build started — the embedded engine's state
    directory (``state_dir``), or a daemon's state token (``daemon``: its address)."""

    def __init__(
        self,
        state_dir: Path | None,
        key: str,
        generation: str,
        *,
        stamp_created: bool = True,
        daemon: str | None = None,
        directory: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.daemon = daemon
        self.key = key
        self.generation = generation
        # without SOURCE_DATE_EPOCH an export stamps its response with the time it ran
        self.stamp_created = stamp_created
        if directory is None:
            assert state_dir is not None
            directory = state_dir / MEMO_DIR
        self.directory = directory

    @property
    def path(self) -> Path:
        return self.directory / f"{self.key}.memo"

    def current_generation(self) -> str | None:
        """The engine's generation now: a state directory's, read again (a prune may have
        run since :func:`prepare`); a daemon's state token as :func:`prepare` just asked
        for it (a second call would cost as much as the rest of the replay)."""
        if self.daemon is not None:
            return self.generation
        from dockyard.core.statedir import read_generation

        assert self.state_dir is not None
        return read_generation(self.state_dir)

    # -- using one -----------------------------------------------------------------------
    def replay(
        self,
        *,
        progress: str,
        quiet: bool,
        iidfile: str | None,
        metadata_file: str | None,
    ) -> int | None:
        """Replay the remembered build: its progress through the renderer of
        ``progress``, its files and closing lines; the exit code, or ``None`` when
        there is nothing valid to replay (the build must run)."""
        memory = self._load()
        if memory is None:
            return None
        import click

        from dockyard.core import DockyardError

        from ._common import report_error, write_texts

        if not quiet:
            from dockyard.cli.progress import make_renderer

            renderer = make_renderer(progress, sys.stderr)
            try:
                for event in _shifted(pickle.loads(memory["events"])):
                    renderer.emit(event)
            finally:
                renderer.close()
        metadata = memory["metadata_json"]
        if metadata_file is not None and metadata and self.stamp_created:
            metadata = _restamped(metadata)
        try:
            write_texts(((iidfile, memory["image_id"] or ""), (metadata_file, metadata)))
        except DockyardError as exc:
            return report_error(exc)
        if quiet:  # as buildx: an empty line without an image
            click.echo(memory["image_id"] or "")
        elif progress != "rawjson":
            for line in memory["lines"]:
                click.echo(line, err=True)
        return 0

    def _load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, "rb") as f:
                memory = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError):
            return None
        if not isinstance(memory, dict) or memory.get("format") != FORMAT:
            return None
        if memory.get("generation") != self.current_generation():
            return None
        if self.state_dir is not None:  # a daemon's blobs are behind its state token
            blobs = self.state_dir / "content" / "blobs" / "sha256"
            for digest in memory.get("blobs", ()):
                if not (blobs / str(digest).removeprefix("sha256:")).is_file():
                    return None
        checks = memory.get("checks", ())
        if checks:  # base images resolved in a registry: has a tag moved?
            from dockyard.registry import tag_unchanged

            if not all(tag_unchanged(check) for check in checks):
                return None
        return memory

    # -- making one ----------------------------------------------------------------------
    def save(self, result: BuildResult, events: Sequence[Event], lines: Sequence[str]) -> None:
        """Remember a finished build the engine found replayable (best effort: a
        memory that cannot be written is simply not there next time)."""
        if not result.replayable or not result.built:
            return
        memory = {
            "format": FORMAT,
            "generation": self.generation,
            "image_id": result.image_id,
            "metadata_json": result.metadata_json(),
            "lines": list(lines),
            "blobs": [result.image_digest] if result.image_digest else [],
            "checks": list(result.replay_checks),
            "events": pickle.dumps(list(events), protocol=pickle.HIGHEST_PROTOCOL),
        }
        directory = self.directory
        tmp = directory / f".{self.key}.{os.getpid()}.tmp"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                pickle.dump(memory, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
            _trim(directory)
        except OSError:
            tmp.unlink(missing_ok=True)


def prepare(params: Mapping[str, Any], *, addr: str | None) -> Memo | None:
    """The memo of a ``dockyard build`` whose click parameters are ``params`` (``addr``:
    the daemon address given to ``dockyard`` or ``build``), or ``None`` when such a
    build is never replayed (see the module docstring). Reads the context's metadata
    and the Dockerfile: call it before the build starts."""
    if any(params.get(name) for name in _ENGINE_ONLY):
        return None
    context = params["context"]
    if context == "-" or params.get("dockerfile") == "-" or not os.path.isdir(context):
        return None
    host = os.environ.get("DOCKYARD_HOST", "").strip()
    state = params.get("state_dir")
    # the address rules of dockyard.client, in order
    address = addr or (host if host != "embedded" else "") or None
    if address is None and not state and not host and os.path.exists(DEFAULT_SOCKET):
        from dockyard.core.address import daemon_listening

        if daemon_listening(Path(DEFAULT_SOCKET)):
            address = f"unix://{DEFAULT_SOCKET}"
    state_dir: Path | None = None
    directory: Path | None = None
    where: tuple[object, ...]
    if address is not None:
        if not address.startswith("unix://"):
            return None  # tcp daemons (and their TLS) are not asked: the build runs
        token = daemon_token(address)  # before anything is read: see core.statedir
        if token is None:
            return None
        generation, where = token, ("daemon", address)
        directory = _client_memo_dir()
    else:
        from dockyard.core.statedir import default_state_dir, read_generation

        state_dir = Path(os.path.abspath(state if state else default_state_dir()))
        generation = read_generation(state_dir)  # before anything is read: core.statedir
        where = ("state", str(state_dir), params.get("runtime"), params.get("snapshotter"))
    context_dir = os.path.realpath(context)
    dockerfile = os.path.realpath(params.get("dockerfile") or os.path.join(context, "Dockerfile"))
    digest = hashlib.sha256()
    try:
        _add(digest, "format", FORMAT, "python", sys.version, sys.executable)
        _add(digest, "code", *(verified_code or code_fingerprint()))
        _add(digest, "engine", *where)
        _add(digest, "paths", context_dir, dockerfile)
        for name in (
            "tags",
            "target",
            "platform",
            "labels",
            "annotations",
            "network",
            "add_hosts",
            "ulimits",
            "shm_size",
            "cgroup_parent",
            "allow",
        ):
            _add(digest, name, repr(params.get(name)))
        for item in params.get("build_args") or ():
            key, sep, _ = item.partition("=")
            _add(digest, "arg", item, sep or os.environ.get(key))
        _add(digest, "epoch", os.environ.get("SOURCE_DATE_EPOCH"))
        ignore: bytes | None = None  # the ignore file that applies: the Dockerfile's first
        for path in (
            dockerfile,
            dockerfile + ".dockerignore",
            os.path.join(context_dir, ".dockerignore"),
        ):
            data = _read(path)
            _add(digest, "file", path, None if data is None else hashlib.sha256(data).hexdigest())
            if ignore is None and path != dockerfile:
                ignore = data
        if directory is not None:
            hot = _Hot(directory, digest, make_parents=True)
        else:
            assert state_dir is not None
            hot = _Hot(state_dir / MEMO_DIR, digest, make_parents=False)
        if hot.changed(context_dir):
            return None  # a file edited lately changed again: no memory can match
        _walk(digest, context_dir, _ignored(ignore), hot)
        hot.save()
    except (OSError, ValueError):
        return None  # unreadable, or a bad ignore pattern: the build reports it properly
    epoch = "SOURCE_DATE_EPOCH" in os.environ or any(
        item.partition("=")[0] == "SOURCE_DATE_EPOCH" for item in params.get("build_args") or ()
    )
    return Memo(
        state_dir,
        digest.hexdigest(),
        generation,
        stamp_created=not epoch,
        daemon=address,
        directory=directory,
    )


def daemon_token(address: str) -> str | None:
    """The state token of the daemon at ``address`` (``unix://PATH``): computed from its
    ``PATH.state`` file and its state directory's generation when this user can read
    both and the daemon listens (as root, usually: nothing to import), else one ``Info``
    call (grpc's synchronous API: no event loop, no session); ``None`` when it does not
    answer or does not say."""
    path = address.removeprefix("unix://")
    token = _token_from_files(path)
    if token is not None:
        return token
    import grpc

    from dockyard.api._gen import control_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Control"].full_name
    try:
        with grpc.insecure_channel("unix:" + address.removeprefix("unix://")) as channel:
            info = channel.unary_unary(
                f"/{service}/Info",
                request_serializer=pb.InfoRequest.SerializeToString,
                response_deserializer=pb.InfoResponse.FromString,
            )
            response = info(pb.InfoRequest(), timeout=INFO_TIMEOUT)
    except grpc.RpcError:
        return None
    return str(response.state_token) or None


def _token_from_files(socket_path: str) -> str | None:
    import json

    from dockyard.core.address import daemon_listening
    from dockyard.core.statedir import read_generation, state_token

    try:
        with open(socket_path + ".state", encoding="utf-8") as f:
            info = json.load(f)
        version, identity = str(info["version"]), str(info["identity"])
        generation = read_generation(str(info["state_dir"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # the file is written before the socket answers: a live socket is its daemon's
    if not daemon_listening(Path(socket_path)):
        return None
    return state_token(version, identity, generation)


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/dockyard/<name>`` (default ``~/.cache``): this user's files."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dockyard" / name


def _client_memo_dir() -> Path:
    """Where this user keeps memories of builds on daemons."""
    return user_cache_dir(MEMO_DIR)


# -- the key ---------------------------------------------------------------------------


def _add(digest: Any, *values: object) -> None:
    digest.update(repr(values).encode("utf-8", "surrogateescape"))
    digest.update(b"\n")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _ignored(data: bytes | None) -> PatternMatcher | None:
    """The matcher of the ignore file's patterns (``None`` without patterns); a
    malformed pattern raises ``ValueError``."""
    if data is None:
        return None
    from dockyard.core.pathmatch import PatternMatcher
    from dockyard.dockerfile._dockerignore import read_dockerignore

    patterns = read_dockerignore(data)
    return PatternMatcher(patterns) if patterns else None


class _Hot:
    """The context's most recently changed files (newest ctime) as the last walk saw
    them, kept beside the memories under the key of everything but the walk. A file
    edited lately is the likeliest to change again (the edit-build loop): when one of
    them changed, no memory can match, and :func:`prepare` says so after a few
    ``lstat`` calls instead of walking the whole context (~12 ms for 2,000 entries)."""

    SIZE = 16

    def __init__(self, directory: Path, pre: Any, *, make_parents: bool) -> None:
        self.path = directory / f"{pre.copy().hexdigest()}.hot"
        # a state directory is made by the engine (a build refused for its flags must
        # leave none behind): the list is kept once it exists
        self.make_parents = make_parents
        self.loaded: list[tuple[str, str]] = []
        self.newest: list[tuple[int, str, str]] = []  # (ctime, path, signature)
        self._floor = -1

    @staticmethod
    def signature(st: os.stat_result) -> str:
        return (
            f"{st.st_mode}:{st.st_uid}:{st.st_gid}:{st.st_ino}:"
            f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        )

    def changed(self, root: str) -> bool:
        """Whether one of the files noted last time is not as it was (the new state is
        noted, so that the next build walks and can be remembered)."""
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().split("\n")
        except OSError:
            return False
        entries = [tuple(line.split("\0", 1)) for line in lines if "\0" in line]
        self.loaded = [(p, sig) for p, sig in entries if _relative(p)]
        changed = False
        now: list[tuple[str, str]] = []
        for path, sig in self.loaded:
            try:
                current = self.signature(os.lstat(os.path.join(root, path)))
            except OSError:
                current = "gone"
            changed = changed or current != sig
            now.append((path, current))
        if changed:
            self._write(now)
        return changed

    def seen(self, path: str, st: os.stat_result) -> None:
        ctime = st.st_ctime_ns
        if ctime <= self._floor:
            return
        import heapq

        item = (ctime, path, self.signature(st))
        if len(self.newest) < self.SIZE:
            heapq.heappush(self.newest, item)
        else:
            heapq.heapreplace(self.newest, item)
        if len(self.newest) == self.SIZE:
            self._floor = self.newest[0][0]

    def save(self) -> None:
        """Note the newest files of this walk (written only when they differ)."""
        noted = [(p, sig) for _, p, sig in sorted(self.newest, reverse=True)]
        if noted != self.loaded:
            self._write(noted)

    def _write(self, entries: list[tuple[str, str]]) -> None:
        data = "".join(f"{p}\0{sig}\n" for p, sig in entries)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            if not self.make_parents and not self.path.parent.parent.is_dir():
                return
            self.path.parent.mkdir(mode=0o700, parents=self.make_parents, exist_ok=True)
            tmp.write_text(data, encoding="utf-8", errors="surrogateescape")
            os.replace(tmp, self.path)
            if not self.loaded:  # a new list: keep their number bounded too
                _trim(self.path.parent)
        except OSError:
            tmp.unlink(missing_ok=True)


def _relative(path: str) -> bool:
    """A path inside the context (what a walk wrote; anything else is not looked at)."""
    return bool(path) and not path.startswith("/") and ".." not in path.split("/")


def _walk(digest: Any, root: str, ignored: PatternMatcher | None, hot: _Hot | None = None) -> None:
    """Every entry under ``root`` that the ignore patterns leave in the context (a
    directory they exclude whole is not entered), not following symlinks, sorted,
    with its metadata; ``hot`` is told each file's."""
    update = digest.update
    seen = hot.seen if hot is not None else None
    pending: list[tuple[str, MatchState | None]] = [("", None)]
    while pending:
        rel, parent_state = pending.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            path = f"{rel}/{entry.name}" if rel else entry.name
            mode = st.st_mode
            is_dir = stat.S_ISDIR(mode)
            state = None
            if ignored is not None:
                excluded, state = ignored.match_with_parent(path, parent_state)
                if excluded and not (is_dir and ignored.may_include_inside(path)):
                    continue
            link = os.readlink(entry.path) if stat.S_ISLNK(mode) else ""
            # a directory's times change with any entry made or removed in it, ignored
            # ones too; its entries are all here (or ignored), so its times add nothing
            times = "" if is_dir else f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
            record = f"{path}\0{mode}\0{st.st_uid}\0{st.st_gid}\0{st.st_ino}\0{times}\0{link}\n"
            update(record.encode("utf-8", "surrogateescape"))
            if seen is not None and not is_dir:
                seen(path, st)
            if is_dir:
                pending.append((path, state))
    st = os.lstat(root)
    _add(digest, "root", st.st_mode, st.st_uid, st.st_gid, st.st_ino)


#: Set by a warm server (cli._warm) in the child it forks, right after it found the
#: fingerprint unchanged: the child need not walk the package again.
verified_code: tuple[str, ...] | None = None


def code_fingerprint() -> tuple[str, ...]:
    """Dockyard's version and the size and mtime of each of its modules (in the order
    of a sorted top-down ``os.walk``; ``scandir`` entries' own ``stat``, no path joins:
    the warm server asks on every command)."""
    import dockyard

    package = os.path.dirname(os.path.abspath(dockyard.__file__))
    parts = [dockyard.__version__]

    def visit(directory: str, rel: str) -> None:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        below = []
        for entry in items:
            if entry.is_dir():  # as os.walk sorts them (a link to a directory is not entered)
                if entry.name != "__pycache__" and not entry.is_symlink():
                    below.append(entry)
            elif entry.name.endswith((".py", ".pyi", ".json")):
                st = entry.stat()
                parts.append(f"{rel}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
        for entry in below:
            visit(entry.path, f"{rel}/{entry.name}")

    visit(package, "")
    return tuple(parts)


# -- replaying ---------------------------------------------------------------------------


def _shifted(events: Sequence[Event]) -> list[Event]:
    """``events`` moved in time so that the first starts now."""
    import dataclasses

    times = [
        value
        for event in events
        for name in _TIMES
        if (value := getattr(event, name, None)) is not None
    ]
    if not times:
        return list(events)
    delta = time.time() - min(times)
    out: list[Event] = []
    for event in events:
        changes = {
            name: value + delta
            for name in _TIMES
            if (value := getattr(event, name, None)) is not None
        }
        out.append(dataclasses.replace(event, **changes) if changes else event)
    return out


def _restamped(metadata_json: str) -> str:
    """The ``--metadata-file`` document with the image descriptor's
    ``org.opencontainers.image.created`` set to now, as an export that ran now writes
    it (the image itself, and so its digest, does not change)."""
    import json

    document = json.loads(metadata_json)
    descriptor = document.get("containerimage.descriptor")
    annotations = descriptor.get("annotations") if isinstance(descriptor, dict) else None
    if isinstance(annotations, dict) and _CREATED in annotations:
        annotations[_CREATED] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _trim(directory: Path) -> None:
    """Keep the :data:`KEEP` most recently written memories (and as many lists of
    recently changed files)."""
    keep_newest(directory, (".memo", ".hot"), KEEP)


def keep_newest(directory: Path, suffixes: tuple[str, ...], keep: int) -> None:
    """Remove all but the ``keep`` most recently written files of each suffix in
    ``directory`` (best effort)."""
    for suffix in suffixes:
        try:
            entries = [e for e in os.scandir(directory) if e.name.endswith(suffix)]
            if len(entries) <= keep:
                continue
            entries.sort(key=lambda e: e.stat().st_mtime_ns)
        except OSError:
            return
        for entry in entries[: len(entries) - keep]:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
