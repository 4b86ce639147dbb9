"""Client-side content stores: OCI image layout directories of the client's host that
the engine reads blobs from (``--cache-from type=local``, ``oci-layout://`` build
contexts) and, when writable, writes blobs into (``--cache-to type=local``) — when the
engine is a daemon that cannot see the client's files.

The engine names a store by the id the session offers it under and a blob by its
``sha256:`` digest, nothing else: a digest is validated (``sha256`` and 64 lowercase hex
digits) before it becomes the path ``blobs/sha256/<hex>``, and every path inside the
layout is opened through :func:`dockyard.core.fspath.open_in_root` (a symlink in the
layout never leads out of it). A blob written by the engine goes to a temp file inside
the layout, is checked against its digest and size, and only then renamed to its name
(no half-written blob is ever visible). ``index.json`` is read with a size limit and
changed only by :meth:`LayoutStore.commit`, which names a manifest whose blobs are all
present with the store's ``tag`` and keeps the index's other entries.

The methods here block (small reads, hashing, fsync): the transports call them in
threads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.core import ContentError, Digest, DockyardError, NotFoundError, UsageError, jsontext
from dockyard.core.fspath import open_dir_in_root, open_in_root

__all__ = [
    "DEFAULT_TAG",
    "MAX_INDEX_BYTES",
    "MAX_MANIFEST_BYTES",
    "BlobWriter",
    "LayoutEntry",
    "LayoutStore",
    "blob_digest",
    "check_store_id",
]

DEFAULT_TAG = "latest"
MAX_INDEX_BYTES = 16 << 20
"""The largest ``index.json`` read (as ``dockyard.content.OCILayout``)."""
MAX_MANIFEST_BYTES = 16 << 20
"""The largest manifest or index blob read to check a commit."""

LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        _OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
_MAX_DEPTH = 4
_CHUNK = 1 << 20
_BLOBS = "blobs/sha256"
_HEX = frozenset("0123456789abcdef")


def blob_digest(text: str) -> Digest:
    """``text`` as a blob digest a store may be asked for: ``sha256:`` and 64 lowercase
    hex digits (a :class:`~dockyard.core.ContentError` otherwise) — the only form that
    ever becomes a path."""
    algorithm, colon, hexpart = text.partition(":")
    if algorithm != "sha256" or not colon or len(hexpart) != 64 or not _HEX.issuperset(hexpart):
        raise ContentError(f"invalid blob digest {text[:80]!r} (expected sha256:<64 hex digits>)")
    return Digest(text)


def check_store_id(id: str) -> None:
    """Store ids are short plain names (``cache-to-0``): they travel in
    ``oci-layout://ID@DIGEST`` references, so no ``:``, ``@`` or ``/``."""
    if (
        not id
        or len(id) > 128
        or not (id[0].isascii() and id[0].isalnum())
        or not all(c.isascii() and (c.isalnum() or c in "._-") for c in id)
    ):
        raise UsageError(f"invalid content store id {id!r} (letters, digits, '.', '_', '-')")


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutEntry:
    """A descriptor of a layout's ``index.json`` (or one the engine commits)."""

    media_type: str
    digest: Digest
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LayoutStore:
    """An OCI image layout directory ``path`` of the client offered as a content store.

    Read-only unless ``writable``; a writable store's :meth:`commit` names the
    committed manifest ``tag`` in ``index.json``. Blocking methods (see the module
    docstring)."""

    path: Path
    writable: bool = False
    tag: str = DEFAULT_TAG

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).absolute())
        if not self.tag or any(c in self.tag for c in "\0\n"):
            raise UsageError(f"invalid tag {self.tag!r} for the OCI layout {self.path}")

    def __repr__(self) -> str:
        mode = "writable" if self.writable else "read-only"
        return f"LayoutStore({str(self.path)!r}, {mode}, tag={self.tag!r})"

    # -- reading -----------------------------------------------------------------------

    def _root(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"OCI layout {self.path} does not exist") from None
        except NotADirectoryError:
            raise NotFoundError(f"OCI layout {self.path} is not a directory") from None
        except OSError as exc:
            raise DockyardError(f"cannot open the OCI layout {self.path}: {exc.strerror}") from exc

    def _open_file(self, root: int, name: str, what: str) -> int | None:
        """An fd of the regular file ``name`` inside the layout, ``None`` if missing (a
        FIFO there does not block the open: it is refused as not a regular file)."""
        try:
            fd = open_in_root(root, name, os.O_RDONLY | os.O_NONBLOCK)
        except NotFoundError:
            return None
        except DockyardError as exc:
            raise ContentError(f"{what} in the OCI layout {self.path}: {exc.message}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ContentError(f"{what} in the OCI layout {self.path} is not a regular file")
        return fd

    def blob_size(self, digest: Digest | str) -> int | None:
        """The size of blob ``digest``, ``None`` if the store does not have it."""
        d = blob_digest(digest)
        if not self.path.exists():
            return None  # a writable store is made by its first blob
        fd = self._blob_fd(d)
        if fd is None:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def open_blob(self, digest: Digest | str) -> BinaryIO:
        """Blob ``digest`` to read (unverified: the reader checks it);
        :class:`~dockyard.core.NotFoundError` if missing."""
        d = blob_digest(digest)
        fd = self._blob_fd(d)
        if fd is None:
            raise NotFoundError(f"blob {d} not found in the OCI layout {self.path}")
        return os.fdopen(fd, "rb")

    def _blob_fd(self, d: Digest) -> int | None:
        """An fd of blob ``d`` opened inside the layout, ``None`` if missing."""
        root = self._root()
        try:
            return self._open_file(root, f"{_BLOBS}/{d.hex}", f"blob {d}")
        finally:
            os.close(root)

    def _read_small(self, root: int, name: str, limit: int) -> bytes | None:
        fd = self._open_file(root, name, name)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ContentError(f"{name} of the OCI layout {self.path} is too large")
        return data

    def _index(self, root: int) -> dict[str, Any] | None:
        data = self._read_small(root, "index.json", MAX_INDEX_BYTES)
        if data is None:
            return None
        try:
            index = jsontext.loads(data)
        except ValueError:
            raise ContentError(
                f"index.json of the OCI layout {self.path} is not valid JSON"
            ) from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise ContentError(f"index.json of the OCI layout {self.path} is not an image index")
        return index

    def resolve(self, tag: str | None = None) -> LayoutEntry:
        """The ``index.json`` entry named ``tag`` (the ``ref.name`` annotation, or a
        containerd image name or its tag) — what the client sends the engine instead of
        a tag. :class:`~dockyard.core.NotFoundError` when there is none."""
        tag = tag or self.tag
        root = self._root()
        try:
            index = self._index(root)
        finally:
            os.close(root)
        if index is None:
            raise NotFoundError(f"{self.path} is not an OCI layout: index.json is missing")
        for entry in index.get("manifests", []):
            if not isinstance(entry, dict):
                continue
            annotations = entry.get("annotations")
            if not isinstance(annotations, dict):
                annotations = {}
            full = annotations.get(_CONTAINERD_NAME, "")
            if tag == annotations.get(REF_NAME_ANNOTATION) or (
                isinstance(full, str) and full and tag in (full, full.rsplit(":", 1)[-1])
            ):
                return _entry(entry, self.path)
        raise NotFoundError(f"no image tagged {tag!r} in the OCI layout {self.path}")

    # -- writing -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if not self.writable:
            raise UsageError(f"the OCI layout {self.path} was offered read-only")

    def blob_writer(self, digest: Digest | str, size: int) -> BlobWriter:
        """A writer of blob ``digest`` (``size`` bytes) into this (writable) store."""
        self._check_writable()
        d = blob_digest(digest)
        if size < 0:
            raise ContentError(f"invalid size {size} of blob {d}")
        return BlobWriter(self, d, size)

    def commit(self, media_type: str, digest: Digest | str, size: int) -> None:
        """Name the manifest ``digest`` with this store's tag in ``index.json`` (made if
        missing, with ``oci-layout``), replacing the entry of that tag and keeping the
        others — once the manifest and every blob below it are in the store."""
        self._check_writable()
        d = blob_digest(digest)
        if not media_type or any(c in media_type for c in "\0\n"):
            raise ContentError(f"invalid media type {media_type!r} of {d}")
        root = self._root()
        try:
            self._check_present(root, media_type, d, size, 0)
            fcntl.flock(root, fcntl.LOCK_EX)  # one index update at a time
            index = self._index(root) or {"schemaVersion": 2, "mediaType": _OCI_INDEX}
            kept = [
                e
                for e in index.get("manifests", [])
                if not (
                    isinstance(e, dict)
                    and isinstance(e.get("annotations"), dict)
                    and e["annotations"].get(REF_NAME_ANNOTATION) == self.tag
                )
            ]
            entry = {
                "mediaType": media_type,
                "digest": str(d),
                "size": size,
                "annotations": {REF_NAME_ANNOTATION: self.tag},
            }
            index["manifests"] = [*kept, entry]
            if self._read_small(root, "oci-layout", MAX_INDEX_BYTES) is None:
                layout = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}, separators=(",", ":"))
                _replace(root, "oci-layout", layout.encode())
            _replace(root, "index.json", json.dumps(index, separators=(",", ":")).encode())
        finally:
            os.close(root)  # releases the lock

    def _check_present(
        self, root: int, media_type: str, digest: Digest, size: int, depth: int
    ) -> None:
        """``digest`` is in the store with ``size`` bytes, and so is everything a
        manifest or index lists (nested indexes followed a few levels)."""
        fd = self._open_file(root, f"{_BLOBS}/{digest.hex}", f"blob {digest}")
        if fd is None:
            raise NotFoundError(f"blob {digest} is not in the OCI layout {self.path}")
        with os.fdopen(fd, "rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise ContentError(
                    f"blob {digest} in the OCI layout {self.path} has {actual} bytes, not {size}"
                )
            if media_type not in _MANIFEST_TYPES:
                return
            if size > MAX_MANIFEST_BYTES:
                raise ContentError(f"manifest {digest} is too large")
            data = f.read(size + 1)
        if hashlib.sha256(data).hexdigest() != digest.hex:
            raise ContentError(f"blob {digest} in the OCI layout {self.path} is corrupt")
        if depth >= _MAX_DEPTH:
            raise ContentError(f"manifest {digest}: indexes nested too deeply")
        try:
            document = jsontext.loads(data)
        except ValueError:
            raise ContentError(f"manifest {digest} is not valid JSON") from None
        if not isinstance(document, dict):
            raise ContentError(f"manifest {digest} is not a JSON object")
        children: list[Any] = []
        if isinstance(document.get("config"), dict):
            children.append(document["config"])
        for key in ("layers", "manifests"):
            listed = document.get(key, [])
            if isinstance(listed, list):
                children.extend(listed)
        for child in children:
            if not isinstance(child, dict):
                raise ContentError(f"manifest {digest} lists a malformed descriptor")
            found = _entry(child, self.path)
            self._check_present(root, found.media_type, found.digest, found.size, depth + 1)


def _entry(obj: dict[str, Any], where: Path) -> LayoutEntry:
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool):
        raise ContentError(f"a malformed descriptor in the OCI layout {where}")
    if size < 0:
        raise ContentError(f"a descriptor of negative size in the OCI layout {where}")
    return LayoutEntry(
        media_type=media_type if isinstance(media_type, str) else "",
        digest=blob_digest(digest),
        size=size,
    )


def _replace(root: int, name: str, data: bytes) -> None:
    """Write ``name`` (a plain name in the layout's top directory) atomically."""
    temp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(
        temp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
        dir_fd=root,
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(temp, name, src_dir_fd=root, dst_dir_fd=root)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=root)
        raise
    os.fsync(root)


class BlobWriter:
    """One blob written into a writable :class:`LayoutStore`: :meth:`write` the bytes
    in order (more than the announced size is refused at once), then exactly one of
    :meth:`commit` (checks size and digest, publishes ``blobs/sha256/<hex>``) or
    :meth:`abort` (removes the temp file). Nothing appears under the blob's name
    unless it was complete and correct."""

    def __init__(self, store: LayoutStore, digest: Digest, size: int) -> None:
        self.store = store
        self.digest = digest
        self.size = size
        self.written = 0
        self._hash = hashlib.sha256()
        self._dir = -1
        self._fd = -1
        self._temp = ""

    def _open(self) -> None:
        if self._fd >= 0:
            return
        try:
            self.store.path.mkdir(parents=True, exist_ok=True)
            self._dir = open_dir_in_root(self.store.path, _BLOBS, create=True)
        except OSError as exc:
            raise DockyardError(
                f"cannot write into the OCI layout {self.store.path}: {exc.strerror}"
            ) from exc
        except DockyardError as exc:
            raise ContentError(f"OCI layout {self.store.path}: {exc.message}") from exc
        self._temp = f".{self.digest.hex}.{secrets.token_hex(6)}.tmp"
        try:
            self._fd = os.open(
                self._temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=self._dir,
            )
        except OSError as exc:
            self._close()
            raise DockyardError(
                f"cannot write blob {self.digest} into {self.store.path}: {exc.strerror}"
            ) from exc

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self.size:
            self.abort()
            raise ContentError(f"blob {self.digest}: more than the announced {self.size} bytes")
        self._open()
        self._hash.update(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.abort()
            raise DockyardError(
                f"cannot write blob {self.digest} into {self.store.path}: {exc.strerror}"
            ) from exc
        self.written += len(data)

    def commit(self) -> None:
        self._open()
        try:
            if self.written != self.size:
                raise ContentError(
                    f"blob {self.digest}: {self.written} bytes arrived, not {self.size}"
                )
            if self._hash.hexdigest() != self.digest.hex:
                raise ContentError(
                    f"blob {self.digest}: the bytes that arrived have another digest"
                )
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.rename(self._temp, self.digest.hex, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            self._temp = ""
            _fsync_dir(self._dir)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise DockyardError(
                    f"cannot write blob {self.digest} into {self.store.path}: {exc.strerror}"
                ) from exc
            raise
        finally:
            self._close()

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._temp and self._dir >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self._temp, dir_fd=self._dir)
            self._temp = ""
        self._close()

    def _close(self) -> None:
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1


def _fsync_dir(dir_fd: int) -> None:
    """fsync the directory behind ``dir_fd`` (an ``O_PATH`` fd cannot be synced)."""
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EACCES:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
