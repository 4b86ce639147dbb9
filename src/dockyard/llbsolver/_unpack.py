"""``ADD``'s archive extraction (``attemptUnpackDockerCompatibility``).

A copy source that is a regular file (symlinks resolved inside the source root) holding
a tar archive — uncompressed or compressed with gzip, bzip2, xz or zstd, recognized by
content, not by name — is extracted into the destination directory instead of copied.
Anything else (or an archive that cannot be read) is copied as a file, as Docker does.

Extraction is contained in the destination directory: entry names and hard-link targets
that climb out with ``..`` are rejected, leading ``/`` are dropped, and symlinks the
archive made (or found) are resolved inside the destination, so no entry can write
outside it. OCI whiteouts (``.wh.name``) remove ``name`` as containerd's apply does.
Owners come from the archive unless the copy has an owner (parents the archive does not
list are made 0755 and stay root's, as BuildKit makes them); modes and modification
times from the archive. A hard-link entry gives the inode it shares its own owner,
xattrs, mode and times, as docker's archive code and BuildKit do.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from dockyard.core import CancelledError, ContentError, DockyardError, PathEscapeError
from dockyard.core.fspath import clean_rel, directories_down_to, resolve_in_root

from ._fsops import mkdir_all, remove_all
from ._owner import Owner
from ._paths import root_path

__all__ = ["open_archive", "unpack"]

_GZIP = b"\x1f\x8b\x08"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_ZSTD = b"\x28\xb5\x2f\xfd"
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(_GZIP):
        import gzip

        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if head.startswith(_BZIP2):
        import bz2

        return cast(IO[bytes], bz2.BZ2File(raw, mode="rb"))
    if head.startswith(_XZ):
        import lzma

        return cast(IO[bytes], lzma.LZMAFile(raw, mode="rb"))
    if head.startswith(_ZSTD):
        import zstandard

        return cast(
            IO[bytes], zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        )
    return raw


def _is_tar(raw: IO[bytes]) -> bool:
    try:
        stream = _decompressed(raw)
        header = stream.read(tarfile.BLOCKSIZE)
        tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    except Exception:  # not an archive we can read: Docker copies it as it is
        return False
    return True


@contextlib.contextmanager
def open_archive(path: Path) -> Iterator[IO[bytes] | None]:
    """The decompressed stream of ``path`` if it is a (compressed) tar archive, else
    ``None``. ``path`` must not be a symlink (it is opened with ``O_NOFOLLOW``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd < 0:
        yield None
        return
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        # a directory opens too, but is no archive (and no file object can read it)
        os.close(fd)
        yield None
        return
    with os.fdopen(fd, "rb") as raw:
        if not _is_tar(raw):
            yield None
            return
        raw.seek(0)
        stream = _decompressed(raw)
        try:
            yield stream
        finally:
            stream.close()


def unpack(
    src_root: Path,
    src: str,
    dest_root: Path,
    dest: str,
    *,
    owner: Owner | None,
    timestamp: int | None,
    cancelled: threading.Event | None = None,
) -> bool:
    """Extract ``src`` into directory ``dest`` if it is an archive; ``False`` if it is
    not (the caller copies it)."""
    source = root_path(src_root, src, follow_links=True)
    with open_archive(source) as stream:
        if stream is None:
            return False
        target = root_path(dest_root, dest, follow_links=True)
        created = mkdir_all(dest_root, target, mode=0o755, owner=owner, timestamp=timestamp)
        _Extractor(target, owner, cancelled, src).run(stream)
        if timestamp is not None:
            for path in reversed(created):
                os.utime(path, ns=(timestamp, timestamp), follow_symlinks=False)
    return True


class _Extractor:
    def __init__(
        self, root: Path, owner: Owner | None, cancelled: threading.Event | None, name: str
    ) -> None:
        self.root = root
        self.owner = owner
        self.cancelled = cancelled
        self.name = name
        # directory -> its entry, timed once the archive is written; a directory met
        # again keeps its first place (before its children) and takes the later entry
        self.dirs: dict[Path, tarfile.TarInfo] = {}
        # something was removed: a directory recorded before may now lie below a
        # symlink the archive put in place of a parent
        self.removed = False

    def run(self, stream: IO[bytes]) -> None:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    self._check_cancelled()
                    try:
                        self._member(archive, member)
                    except (ValueError, OverflowError) as exc:  # a NUL in a name, a huge uid
                        raise ContentError(
                            f"extracting {self.name}: invalid entry {member.name!r}: {exc}"
                        ) from exc
                    except OSError as exc:
                        raise DockyardError(
                            f"extracting {self.name}: entry {member.name!r}: {exc.strerror or exc}"
                        ) from exc
        except (tarfile.TarError, EOFError) as exc:
            raise ContentError(
                f"extracting {self.name}: corrupt or truncated archive: {exc}"
            ) from exc
        except OSError as exc:
            raise DockyardError(f"extracting {self.name}: {exc.strerror or exc}") from exc
        for path, member in reversed(self.dirs.items()):
            if self.removed and not directories_down_to(self.root, path):
                continue
            self._times(path, member)

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise CancelledError("archive extraction cancelled")

    def _rel(self, name: str) -> str:
        try:
            return clean_rel(name.lstrip("/"))
        except PathEscapeError:
            raise PathEscapeError(
                f"extracting {self.name}: entry {name!r} points outside the destination"
            ) from None

    def _member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = self._rel(member.name)
        if rel == ".":
            if member.isdir():
                self._meta(self.root, member)
                self.dirs[self.root] = member
            return
        parent_rel, _, base = rel.rpartition("/")
        parent = resolve_in_root(self.root, parent_rel or ".")
        if base == _OPAQUE:
            return
        if base.startswith(_WHITEOUT):
            victim = root_path(
                self.root, f"{parent_rel}/{base[len(_WHITEOUT) :]}", follow_links=False
            )
            if victim != self.root:
                remove_all(victim)
                self.removed = True
            return
        # parents the archive does not list belong to root, also with --chown (BuildKit
        # and docker's archive code chown them to the root pair, not to the copy's owner)
        mkdir_all(self.root, parent, mode=0o755)
        target = parent / base
        try:
            existing: os.stat_result | None = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            remove_all(target)
            self.removed = True
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(target, 0o700)
            self.dirs[target] = member
        elif member.isreg():
            data = archive.extractfile(member)
            assert data is not None
            fd = os.open(
                target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            with os.fdopen(fd, "wb") as out:
                while chunk := data.read(1 << 20):
                    # one member of a compression bomb may inflate to many GB: a cancel
                    # takes effect within it, not only between members
                    self._check_cancelled()
                    out.write(chunk)
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            link_rel = self._rel(member.linkname)
            source = resolve_in_root(self.root, link_rel, follow_final=False)
            st = os.lstat(source)  # FileNotFoundError: a link to nothing
            if stat.S_ISDIR(st.st_mode):
                raise ContentError(
                    f"extracting {self.name}: hard link {member.name!r} to a directory"
                )
            os.link(source, target, follow_symlinks=False)
            # docker's archive code (BuildKit's ADD) gives the shared inode the link
            # entry's owner, xattrs, mode and times (the last two not to a symlink)
            linked_symlink = stat.S_ISLNK(st.st_mode)
            self._meta(target, member, symlink=linked_symlink)
            if not linked_symlink:
                self._times(target, member)
            return
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = (
                stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            )
            os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            return  # sockets and unknown types are skipped, as Docker does
        self._meta(target, member)
        if not member.isdir():
            self._times(target, member)

    def _meta(self, path: Path, member: tarfile.TarInfo, *, symlink: bool = False) -> None:
        uid, gid = (self.owner.uid, self.owner.gid) if self.owner else (member.uid, member.gid)
        os.chown(path, uid, gid, follow_symlinks=False)
        if not (member.issym() or symlink):
            os.chmod(path, member.mode & 0o7777)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                with contextlib.suppress(OSError):
                    os.setxattr(
                        path,
                        key[len("SCHILY.xattr.") :],
                        value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False,
                    )

    def _times(self, path: Path, member: tarfile.TarInfo) -> None:
        try:
            # a PAX mtime of 1e400 or nan is a float tarfile passes on
            ns = int(member.mtime * 1_000_000_000)
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        except (OverflowError, ValueError) as exc:
            raise ContentError(
                f"extracting {self.name}: invalid entry {member.name!r}: {exc}"
            ) from exc
