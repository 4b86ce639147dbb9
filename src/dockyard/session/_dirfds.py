"""Directory fds for walking a tree one component at a time with ``O_NOFOLLOW``, kept
from one file to the next (walk order keeps siblings together): the receiver's
destination and the files it or a sender reads."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from dockyard.core import DockyardError, PathEscapeError, open_in_root

__all__ = ["DirStack", "SourceFiles"]

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _name(path: str) -> str:
    return path.rpartition("/")[2]


class DirStack:
    """Directory fds for one chain of nested directories below the root, each opened
    relative to its parent with ``O_NOFOLLOW`` (a symlink on the way is an error).

    With ``made`` (a layer), a missing directory on the way is created (``0700``, its
    metadata is applied at the end) and ``made`` is told its path."""

    def __init__(self, root_fd: int, made: Callable[[str], None] | None = None) -> None:
        self._root = root_fd
        self._owns_root = False
        self._chain: list[tuple[str, int]] = []
        self._made = made

    @classmethod
    def opened(
        cls, root: str | Path, flags: int, made: Callable[[str], None] | None = None
    ) -> DirStack:
        """A stack over ``root``, opened with ``flags``; :meth:`release` closes it too."""
        stack = cls(os.open(root, flags), made)
        stack._owns_root = True
        return stack

    @property
    def root(self) -> int:
        """The fd of the root (for another thread's stack over the same root)."""
        return self._root

    def fd(self, rel_dir: str) -> int:
        if not rel_dir:
            self.close()
            return self._root
        parts = rel_dir.split("/")
        keep = 0
        while keep < len(self._chain) and keep < len(parts) and self._chain[keep][0] == parts[keep]:
            keep += 1
        for _, fd in self._chain[keep:]:
            os.close(fd)
        del self._chain[keep:]
        parent = self._chain[-1][1] if self._chain else self._root
        for depth, name in enumerate(parts[keep:], keep + 1):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if self._made is None:
                    raise
                try:
                    os.mkdir(name, 0o700, dir_fd=parent)
                except FileExistsError:
                    pass  # another writer thread made it
                else:
                    self._made("/".join(parts[:depth]))
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise PathEscapeError(
                        f"file sync: {rel_dir!r} is not a directory inside the destination"
                    ) from exc
                raise
            self._chain.append((name, fd))
            parent = fd
        return parent

    def close(self) -> None:
        for _, fd in self._chain:
            os.close(fd)
        self._chain.clear()

    def release(self) -> None:
        """:meth:`close`, and the root's fd if this stack opened it."""
        self.close()
        if self._owns_root:
            self._owns_root = False
            os.close(self._root)


class SourceFiles:
    """Read fds of files below a root (the sender's directory). The parent directories are
    opened one component at a time with ``O_NOFOLLOW`` and kept for the next file (the
    walk's order keeps siblings together); a symlink or anything else unexpected on the
    way is left to :func:`open_in_root`, which resolves it inside the root."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._dirs: DirStack | None = None

    def open(self, root: Path, path: str) -> int:
        """A read fd of ``path`` inside ``root`` (never through a final symlink); raises
        :class:`~dockyard.core.NotFoundError` when it vanished, another
        :class:`~dockyard.core.DockyardError` when it cannot be opened."""
        try:
            if self._dirs is None or self._root != root:
                self.close()
                self._dirs = DirStack.opened(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._root = root
            return os.open(
                _name(path),
                os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=self._dirs.fd(_parent(path)),
            )
        except (OSError, DockyardError):
            pass
        return open_in_root(root, path, os.O_RDONLY, follow_final=False)

    def close(self) -> None:
        if self._dirs is not None:
            self._dirs.release()
            self._dirs = None
        self._root = None
