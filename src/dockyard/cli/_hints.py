"""What the engine asked of a context's directories last time, kept for the next build of
that context: the file sync requests (directory name and patterns) of its session, so
that the next build's session walks them as soon as it starts
(``BuildOptions.prefetch``) instead of when the engine asks — after it opened its
stores and ran the frontend, which is where the follow paths of the request come from.

The hints are a guess and nothing more: a walk is used only for a request equal to the
one it was made for, and it is made after the build started (as a walk made when asked
would be). A missing, unreadable or malformed file means no prefetch. They live in the
user's ``$XDG_CACHE_HOME/dockyard/walks/`` (default ``~/.cache``), one small file per
context directory, Dockerfile and target, rewritten only when the requests change.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.session import SyncRequest

__all__ = ["HINTS_DIR", "MAX_REQUESTS", "WalkHints"]

HINTS_DIR = "walks"
MAX_REQUESTS = 16
"""Requests kept per context (a build asks for its context, its ``.dockerignore``, the
Dockerfile and each named context once)."""

_FORMAT = 1
_MAX_FILES = 256  # hint files kept; the oldest go first


class WalkHints:
    """The hints of one build's context directory and Dockerfile (see the module
    docstring): :attr:`requests` as loaded, :meth:`save` the requests of this build."""

    def __init__(self, path: Path, requests: tuple[SyncRequest, ...]) -> None:
        self.path = path
        self.requests = requests

    @classmethod
    def load(
        cls, context: str, dockerfile: str | None, target: str | None = None
    ) -> WalkHints | None:
        """The hints of a build of the directory ``context`` with ``dockerfile`` and
        ``target`` (the stages built decide the paths a build reads); ``None`` for a
        context that is not a directory: a URL, ``-``."""
        if context == "-" or dockerfile == "-" or not os.path.isdir(context):
            return None
        context_dir = os.path.realpath(context)
        dockerfile_path = os.path.realpath(dockerfile or os.path.join(context_dir, "Dockerfile"))
        key = hashlib.sha256(
            f"{_FORMAT}\0{context_dir}\0{dockerfile_path}\0{target or ''}".encode(
                "utf-8", "surrogateescape"
            )
        ).hexdigest()
        from ._memo import user_cache_dir

        path = user_cache_dir(HINTS_DIR) / f"{key[:32]}.json"
        return cls(path, _read(path))

    def save(self, requests: Sequence[SyncRequest]) -> None:
        """Keep ``requests`` (the build's ``BuildResult.synced``) for the next build;
        best effort (a hint that cannot be written is no error)."""
        unique: list[SyncRequest] = []
        for request in requests:
            if request not in unique and len(unique) < MAX_REQUESTS:
                unique.append(request)
        if tuple(unique) == self.requests:
            return
        data = json.dumps(
            {
                "format": _FORMAT,
                "requests": [
                    {
                        "name": r.name,
                        "include": list(r.include_patterns),
                        "exclude": list(r.exclude_patterns),
                        "follow": list(r.follow_paths),
                    }
                    for r in unique
                ],
            }
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fresh = not self.path.parent.is_dir()
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(data, encoding="utf-8")
            os.replace(tmp, self.path)
            if not self.requests and not fresh:
                from ._memo import keep_newest

                keep_newest(self.path.parent, (".json",), _MAX_FILES)
        except OSError:
            tmp.unlink(missing_ok=True)
        self.requests = tuple(unique)


def _read(path: Path) -> tuple[SyncRequest, ...]:
    from dockyard.core import UsageError
    from dockyard.session import SyncRequest

    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
        if document.get("format") != _FORMAT:
            return ()
        out: list[SyncRequest] = []
        for item in document["requests"][:MAX_REQUESTS]:
            fields = [item["include"], item["exclude"], item["follow"]]
            if not isinstance(item["name"], str) or not all(
                isinstance(f, list) and all(isinstance(p, str) for p in f) for f in fields
            ):
                return ()
            out.append(
                SyncRequest(
                    name=item["name"],
                    include_patterns=tuple(fields[0]),
                    exclude_patterns=tuple(fields[1]),
                    follow_paths=tuple(fields[2]),
                )
            )
        return tuple(out)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError):
        return ()
