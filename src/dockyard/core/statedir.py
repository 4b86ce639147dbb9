"""The engine's state directory as a place: where it is by default, and its
*generation* — a token that changes whenever something a finished build relied on is
taken away or would now be found differently.

A build's result stays valid while its cache records, its blobs and the image names it
read or wrote stay as they were, and no name it looked for in vain appeared. Everything
that removes, re-points or adds one of them — pruning cache records
(``CacheManager.prune``, crash recovery), collecting blobs (``Engine.prune``), a new,
re-pointed or deleted image name (``ImageStore.put``/``delete``: a ``FROM`` a build took
from a registry is found in the store once the name is there) — calls :func:`bump_generation` *after* the change is durable. Whoever wants to trust a
remembered build later (``dockyard build``'s no-op replay, :mod:`dockyard.cli._memo`)
reads the generation *before* the build starts and trusts the memory only while the
generation is still that value: a change that raced with the build is always seen.

Imported on its own (``from dockyard.core.statedir import ...``) by callers that want
nothing else: standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "GENERATION_FILE",
    "STATE_DIR_ENV",
    "bump_generation",
    "default_state_dir",
    "read_generation",
    "state_token",
]

STATE_DIR_ENV = "DOCKYARD_STATE_DIR"
GENERATION_FILE = "generation"


def default_state_dir(environ: Mapping[str, str] | None = None, *, uid: int | None = None) -> Path:
    """Where the engine keeps its state unless told otherwise: ``$DOCKYARD_STATE_DIR``;
    else ``/var/lib/dockyard`` as root and ``$XDG_DATA_HOME/dockyard`` (default
    ``~/.local/share/dockyard``) for other users."""
    env = os.environ if environ is None else environ
    explicit = env.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    if (os.geteuid() if uid is None else uid) == 0:
        return Path("/var/lib/dockyard")
    data_home = env.get("XDG_DATA_HOME") or str(
        Path(env.get("HOME") or "~").expanduser() / ".local/share"
    )
    return Path(data_home) / "dockyard"


def read_generation(state_dir: Path | str) -> str:
    """The current generation of ``state_dir`` (``"0"`` before the first change)."""
    try:
        with open(os.path.join(state_dir, GENERATION_FILE), encoding="ascii") as f:
            return f.read().strip() or "0"
    except FileNotFoundError:
        return "0"


def bump_generation(state_dir: Path | str) -> None:
    """Give ``state_dir`` a new generation (a fresh random token, replaced atomically;
    concurrent bumps all end in some new value, which is all that matters)."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, GENERATION_FILE)
    token = os.urandom(16).hex()
    tmp = f"{path}.{os.getpid()}.{token[:8]}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


def state_token(version: str, identity: str, generation: str) -> str:
    """A daemon's *state token*: its version, its configuration (``identity``) and its
    state directory's generation, digested. A client's remembered build holds while the
    token is the same; the daemon's ``Info`` answers it, and a client that can read the
    daemon's ``<socket>.state`` file and state directory computes the same value."""
    import hashlib

    text = "\0".join((version, identity, generation))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
