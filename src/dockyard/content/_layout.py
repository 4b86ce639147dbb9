"""OCI image layouts (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``), as a
directory or a tarball, read and written.

Reading is contained: a blob is only ever looked up by its validated digest, inside a
directory through :func:`dockyard.core.open_in_root` (symlinks cannot lead out of the
layout), inside a tarball among its regular-file members (hard links resolve inside
the archive). Every blob copied out is verified against its descriptor's digest and size.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.core import (
    ContentError,
    Digest,
    DockyardError,
    NotFoundError,
    PathEscapeError,
    jsontext,
)
from dockyard.core.fspath import clean_rel, open_in_root
from dockyard.oci import Descriptor, ImageIndex, MediaType, canonical_json, parse_manifest

from ._store import CHUNK, ContentStore

__all__ = [
    "LAYOUT_VERSION",
    "REF_NAME_ANNOTATION",
    "OCILayout",
    "children",
    "write_oci_layout",
]

LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
_MAX_JSON = 16 << 20
_MANIFEST_TYPES = {
    MediaType.OCI_MANIFEST,
    MediaType.OCI_INDEX,
    MediaType.DOCKER_MANIFEST,
    MediaType.DOCKER_MANIFEST_LIST,
}


def children(desc: Descriptor, data: bytes) -> list[Descriptor]:
    """The descriptors an index or manifest blob points at (config first, then layers)."""
    manifest = parse_manifest(data, desc.media_type)
    if isinstance(manifest, ImageIndex):
        return list(manifest.manifests)
    return [manifest.config, *manifest.layers]


def _blob_name(digest: Digest | str) -> str:
    try:
        d = Digest.parse(digest)
    except ValueError as exc:
        raise ContentError(str(exc)) from exc
    return f"blobs/{d.algorithm}/{d.hex}"


class OCILayout:
    """An OCI layout to read: a directory or a tarball (:meth:`open`)."""

    def __init__(self, source: Path, tar: tarfile.TarFile | None) -> None:
        self.source = source
        self.index_bytes = b""
        self.index = ImageIndex()
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        if tar is not None:
            for m in tar.getmembers():
                if not (m.isreg() or m.islnk()):
                    continue
                try:
                    name = clean_rel(m.name)
                except PathEscapeError:
                    continue
                self._members[name] = m

    def _load_index(self, data: bytes) -> None:
        try:
            obj = jsontext.loads(data)
        except ValueError as exc:
            raise ContentError(f"{self.source}: index.json is not valid JSON") from exc
        self.index = ImageIndex.from_json(obj, MediaType.OCI_INDEX)
        self.index_bytes = data

    @classmethod
    def open(cls, path: Path) -> OCILayout:
        """Open a layout directory or tarball (blocking; small reads only)."""
        path = Path(path)
        if path.is_dir():
            _check_layout_file(_read_dir_file(path, "oci-layout", _MAX_JSON), path)
            layout = cls(path, None)
            layout._load_index(_read_dir_file(path, "index.json", _MAX_JSON))
            return layout
        try:
            tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
        except FileNotFoundError as exc:
            raise NotFoundError(f"OCI layout {path} does not exist") from exc
        except (tarfile.TarError, OSError) as exc:
            raise ContentError(f"{path} is neither an OCI layout directory nor a tarball") from exc
        try:
            layout = cls(path, tar)
            _check_layout_file(layout._tar_file("oci-layout", _MAX_JSON), path)
            layout._load_index(layout._tar_file("index.json", _MAX_JSON))
        except BaseException:
            tar.close()
            raise
        return layout

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> OCILayout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tar_file(self, name: str, limit: int) -> bytes:
        member = self._members.get(name)
        if member is None or self._tar is None:
            raise NotFoundError(f"{self.source}: {name} not found in the OCI layout tarball")
        f = self._tar.extractfile(member)
        if f is None:
            raise ContentError(f"{self.source}: {name} is not a regular file")
        data = f.read(limit + 1)
        if len(data) > limit:
            raise ContentError(f"{self.source}: {name} is too large")
        return data

    def open_blob(self, digest: Digest | str) -> BinaryIO:
        """The blob (unverified: :meth:`read_blob` and :meth:`copy_to` verify)."""
        name = _blob_name(digest)
        if self._tar is not None:
            member = self._members.get(name)
            if member is None:
                raise NotFoundError(f"blob {digest} not found in OCI layout {self.source}")
            f = self._tar.extractfile(member)
            if f is None:
                raise ContentError(f"{self.source}: {name} is not a regular file")
            return f  # type: ignore[return-value]
        try:
            fd = open_in_root(self.source, name)
        except NotFoundError as exc:
            raise NotFoundError(f"blob {digest} not found in OCI layout {self.source}") from exc
        return os.fdopen(fd, "rb")

    def read_blob(self, desc: Descriptor) -> bytes:
        """A small blob (manifest, config), checked against ``desc``."""
        with self.open_blob(desc.digest) as f:
            data = f.read(desc.size + 1)
        if len(data) != desc.size or Digest.from_bytes(data) != desc.digest:
            raise ContentError(
                f"blob {desc.digest} in OCI layout {self.source} does not match its descriptor"
            )
        return data

    def resolve(self, ref: str | None = None) -> Descriptor:
        """The index entry named ``ref``: a tag (ref-name annotation), a full name, or a
        digest; ``None`` picks the only entry."""
        entries = self.index.manifests
        if ref is None:
            if len(entries) != 1:
                raise NotFoundError(f"OCI layout {self.source} has {len(entries)} images: name one")
            return entries[0]
        for d in entries:
            if ref in (str(d.digest), d.annotations.get(REF_NAME_ANNOTATION)):
                return d
            full = d.annotations.get(_CONTAINERD_NAME, "")
            if full and (ref == full or full.rsplit(":", 1)[-1] == ref):
                return d
        if ref.startswith("sha256:"):
            # a manifest inside a nested index
            return Descriptor(
                media_type=MediaType.OCI_MANIFEST, digest=Digest.parse(ref), size=self._size(ref)
            )
        raise NotFoundError(f"image {ref!r} not found in OCI layout {self.source}")

    def _size(self, digest: str) -> int:
        name = _blob_name(digest)
        if self._tar is not None:
            m = self._members.get(name)
            if m is None:
                raise NotFoundError(f"blob {digest} not found in OCI layout {self.source}")
            return m.size
        try:
            fd = open_in_root(self.source, name)
        except NotFoundError as exc:
            raise NotFoundError(f"blob {digest} not found in OCI layout {self.source}") from exc
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def walk(self, desc: Descriptor) -> Iterator[Descriptor]:
        """``desc`` and everything below it, parents before children (reads manifests)."""
        yield desc
        if desc.media_type in _MANIFEST_TYPES:
            for child in children(desc, self.read_blob(desc)):
                yield from self.walk(child)

    async def copy_to(
        self, store: ContentStore, desc: Descriptor, *, lease: str | None = None
    ) -> list[Descriptor]:
        """Import ``desc`` and everything below it into ``store``, verified; returns them."""
        copied: list[Descriptor] = []
        for d in await asyncio.to_thread(lambda: list(self.walk(desc))):
            copied.append(d)
            if store.has(d.digest):
                if lease is not None:
                    store.add_to_lease(lease, d.digest)
                continue

            def run(d: Descriptor = d) -> BinaryIO:
                return self.open_blob(d.digest)

            src = await asyncio.to_thread(run)
            try:
                await store.ingest(
                    f"oci-layout-{d.digest}",
                    src,
                    expected_digest=d.digest,
                    expected_size=d.size,
                    lease=lease,
                )
            finally:
                src.close()
        return copied


def _read_dir_file(root: Path, name: str, limit: int) -> bytes:
    try:
        fd = open_in_root(root, name)
    except NotFoundError as exc:
        raise NotFoundError(f"{root} is not an OCI layout: {name} is missing") from exc
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ContentError(f"{root}: {name} is too large")
    return data


def _check_layout_file(data: bytes, source: Path) -> None:
    try:
        version = jsontext.loads(data).get("imageLayoutVersion")
    except (ValueError, AttributeError) as exc:
        raise ContentError(f"{source}: oci-layout is not valid JSON") from exc
    if version != LAYOUT_VERSION:
        raise ContentError(f"{source}: unsupported OCI layout version {version!r}")


def _layout_bytes() -> bytes:
    return canonical_json({"imageLayoutVersion": LAYOUT_VERSION})


def _collect(store: ContentStore, roots: Iterable[Descriptor]) -> list[Descriptor]:
    """Every blob below ``roots`` in the store, each once, parents first."""
    out: list[Descriptor] = []
    seen: set[str] = set()

    def visit(d: Descriptor) -> None:
        if d.digest in seen:
            return
        seen.add(d.digest)
        out.append(d)
        if d.media_type in _MANIFEST_TYPES:
            with store.open(d.digest) as f:
                data = f.read()
            for child in children(d, data):
                visit(child)

    for root in roots:
        visit(root)
    return out


async def write_oci_layout(
    store: ContentStore,
    index: ImageIndex,
    dest: Path | BinaryIO,
    *,
    tar: bool = False,
    mtime: int = 0,
    write_index: bool = True,
) -> None:
    """Write ``index`` and every blob below it from ``store`` as an OCI layout.

    ``tar=False``: ``dest`` is a directory (created; existing blobs are kept, index.json
    is replaced — or, with ``write_index=False``, left to the caller, who names what it
    wrote in it). ``tar=True``: a tarball to path ``dest`` (written to a temporary name
    and renamed) or to the writable binary file ``dest``; entries in a fixed order with
    ``mtime`` as their time, so equal content gives equal bytes.
    """
    blobs = await asyncio.to_thread(_collect, store, index.manifests)
    for d in blobs:
        if not store.has(d.digest):
            raise NotFoundError(f"blob {d.digest} ({d.media_type}) is not in the content store")
    index_bytes = index.to_bytes()
    if not tar:
        if not isinstance(dest, Path):
            raise DockyardError("an OCI layout directory needs a path")
        await asyncio.to_thread(
            _write_dir, store, blobs, index_bytes if write_index else None, dest
        )
        return
    if isinstance(dest, Path):
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:  # noqa: ASYNC230 - tiny; data goes in a thread
                await asyncio.to_thread(_write_tar, store, blobs, index_bytes, f, mtime)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    await asyncio.to_thread(_write_tar, store, blobs, index_bytes, dest, mtime)


def _atomic_write(path: Path, data: bytes | None, src: BinaryIO | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        if data is not None:
            f.write(data)
        if src is not None:
            while chunk := src.read(CHUNK):
                f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_dir(
    store: ContentStore, blobs: list[Descriptor], index_bytes: bytes | None, dest: Path
) -> None:
    blob_dir = dest / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for d in blobs:
        target = blob_dir / d.digest.hex
        if target.is_file() and not target.is_symlink() and target.stat().st_size == d.size:
            continue
        with store.open(d.digest) as src:
            _atomic_write(target, None, src)
    if index_bytes is not None:
        _atomic_write(dest / "oci-layout", _layout_bytes())
        _atomic_write(dest / "index.json", index_bytes)


def _tar_entry(name: str, size: int, mtime: int, *, directory: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = mtime
    ti.mode = 0o755 if directory else 0o644
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.uname = ti.gname = ""
    return ti


def _write_tar(
    store: ContentStore,
    blobs: list[Descriptor],
    index_bytes: bytes,
    out: BinaryIO,
    mtime: int,
) -> None:
    layout = _layout_bytes()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tw:
        tw.addfile(_tar_entry("oci-layout", len(layout), mtime), io.BytesIO(layout))
        tw.addfile(_tar_entry("index.json", len(index_bytes), mtime), io.BytesIO(index_bytes))
        tw.addfile(_tar_entry("blobs", 0, mtime, directory=True))
        tw.addfile(_tar_entry("blobs/sha256", 0, mtime, directory=True))
        for d in sorted(blobs, key=lambda b: str(b.digest)):
            with store.open(d.digest) as src:
                size = os.fstat(src.fileno()).st_size
                tw.addfile(_tar_entry(f"blobs/sha256/{d.digest.hex}", size, mtime), src)
