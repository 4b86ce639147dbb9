"""The local image store: image names → manifest (or index) descriptors.

Records live in ``<state>/metadata.db`` (SQLite, WAL), table ``image_names``; the blobs
they point at live in the :class:`~dockyard.content.ContentStore`. Each name holds the
content-store lease ``image:<name>`` on its target digest, and garbage collection keeps
everything reachable from a leased digest (an index keeps its manifests, a manifest its
config and layers), so a stored image is never collected, whoever runs the GC.
:meth:`ImageStore.roots` lists the targets too, for callers that pass roots explicitly.

Names
    The store keeps names as given and does not parse references (it sits below
    ``dockyard.registry``): callers store and look up *canonical* references, as
    ``str(dockyard.registry.Reference.parse(text))`` prints them
    (``docker.io/library/busybox:latest``). An image stored without a name is
    *dangling*: it is kept under ``<none>@<digest>`` (:data:`DANGLING_PREFIX`) until a
    named image with the same target replaces it, like docker's ``<none>`` images.

IDs
    An image's :attr:`Image.id` is its config digest (as ``docker images`` shows it) or,
    for an index, the index digest. :meth:`ImageStore.lookup` finds images by exact name,
    or by a ``sha256:`` digest or an unambiguous hex prefix of an ID or target digest
    (``docker rmi 1a2b3c``).

Several processes may use one state directory at once (a build holding the cache lock,
``dockyard images`` beside it): every write is one SQLite transaction, and the lease is
taken before the record appears and dropped after it is gone.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import ContentError, Digest, DockyardError, NotFoundError, Platform
from dockyard.core import host_platform as _host_platform
from dockyard.core.statedir import bump_generation
from dockyard.oci import (
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
    parse_manifest,
    select_platform,
)

from ._store import ContentStore

__all__ = ["DANGLING_PREFIX", "Image", "ImageStore", "LocalImage", "dangling_name"]

DANGLING_PREFIX = "<none>@"
"""Names of dangling images: ``<none>@sha256:…`` (the target digest)."""

_LEASE_PREFIX = "image:"
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{1,64})$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_names (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    config_digest TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_names_digest ON image_names(digest);
CREATE INDEX IF NOT EXISTS image_names_config ON image_names(config_digest);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """One stored name: what it points at and when it was stored.

    ``target`` is the descriptor of a manifest or an index (media type, digest, size,
    and any annotations or platform it was stored with). ``config_digest`` is the config
    of a single-manifest image (``None`` for an index). ``created`` is when the name was
    first stored, ``updated`` when it last changed target (epoch seconds).
    """

    name: str
    target: Descriptor
    config_digest: Digest | None
    created: float
    updated: float

    @property
    def id(self) -> Digest:
        """The image ID: the config digest, or the target digest for an index."""
        return self.config_digest if self.config_digest is not None else self.target.digest

    @property
    def dangling(self) -> bool:
        return self.name.startswith(DANGLING_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalImage:
    """A stored image resolved for one platform (:meth:`ImageStore.resolve`).

    ``manifest_descriptor`` is the platform's manifest (``image.target`` itself for a
    single-manifest image); ``config_bytes`` are the config blob's exact bytes.
    """

    image: Image
    manifest_descriptor: Descriptor
    manifest: ImageManifest
    config: ImageConfig
    config_bytes: bytes


def dangling_name(digest: Digest | str) -> str:
    """The name a dangling image with target ``digest`` is stored under."""
    return DANGLING_PREFIX + str(digest)


class ImageStore:
    """Image names in ``db_path`` over the blobs of ``content``; see the module docstring.

    Open with :meth:`open` for a state directory; :meth:`close` when done. Methods that
    touch the store are coroutines; SQLite calls are short and serialized by one lock.
    """

    def __init__(self, db_path: Path, content: ContentStore) -> None:
        self.content = content
        self._state_dir = db_path.parent  # its generation: see dockyard.core.statedir
        self._lock = threading.Lock()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise DockyardError(f"cannot open the image store in {db_path}: {exc}") from exc
        self._reconcile()

    @classmethod
    def open(cls, state_dir: Path | str, content: ContentStore) -> ImageStore:
        """The image store of ``state_dir`` (``<state_dir>/metadata.db``)."""
        return cls(Path(state_dir) / "metadata.db", content)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise DockyardError(f"image store: {exc}") from exc

    @staticmethod
    def _row(row: tuple[object, ...]) -> Image:
        name, _digest, descriptor, config, created, updated = row
        target = Descriptor.from_json(json.loads(str(descriptor)), f"image {name} target")
        return Image(
            name=str(name),
            target=target,
            config_digest=Digest(str(config)) if config is not None else None,
            created=float(str(created)),
            updated=float(str(updated)),
        )

    _COLUMNS = "name, digest, descriptor, config_digest, created, updated"

    def _lease(self, name: str) -> str:
        return _LEASE_PREFIX + name

    def _hold(self, name: str, digest: Digest) -> None:
        lease = self._lease(name)
        if lease not in self.content.leases():
            try:
                self.content.create_lease(lease)
            except DockyardError:
                pass  # made meanwhile by another process
        self.content.add_to_lease(lease, digest)

    def _reconcile(self) -> None:
        """Leases and records agree after a crash between the two writes."""
        rows = {
            str(r[0]): Digest(str(r[1]))
            for r in self._query("SELECT name, digest FROM image_names")
        }
        for lease in self.content.leases():
            if lease.startswith(_LEASE_PREFIX) and lease[len(_LEASE_PREFIX) :] not in rows:
                self.content.delete_lease(lease)
        held = set(self.content.leases())
        for name, digest in rows.items():
            if self._lease(name) not in held:
                self._hold(name, digest)

    async def _config_digest(self, target: Descriptor) -> Digest | None:
        if not MediaType.is_manifest(target.media_type):
            if MediaType.is_index(target.media_type):
                return None
            raise ContentError(
                f"cannot store {target.digest} as an image: {target.media_type!r} is neither "
                "an image manifest nor an index"
            )
        data = await self.content.read(target.digest)
        manifest = parse_manifest(data, target.media_type)
        if not isinstance(manifest, ImageManifest):
            raise ContentError(f"{target.digest} is not an image manifest")
        if not self.content.has(manifest.config.digest):
            raise NotFoundError(
                f"config {manifest.config.digest} of image {target.digest} is not in the "
                "content store"
            )
        return manifest.config.digest

    # -- API -------------------------------------------------------------------------------
    async def put(self, name: str | None, target: Descriptor) -> Image:
        """Store ``target`` (a manifest or index already in the content store) under
        ``name`` (canonical; ``None``: dangling), replacing what the name pointed at.

        A named image replaces the dangling record of the same target. A new name or a
        re-pointed one gives the state directory a new generation
        (:mod:`dockyard.core.statedir`). Raises
        :class:`NotFoundError` when the target (or a manifest's config) is not in the
        content store, :class:`ContentError` when it is not a manifest or index.
        """
        if name is not None and (not name or name.startswith(DANGLING_PREFIX)):
            raise DockyardError(f"invalid image name {name!r}")
        if not self.content.has(target.digest):
            raise NotFoundError(
                f"image {name or target.digest}: {target.digest} is not in the content store"
            )
        config = await self._config_digest(target)
        key = name if name is not None else dangling_name(target.digest)
        now = time.time()
        self._hold(key, target.digest)
        previous = self._query("SELECT digest FROM image_names WHERE name = ?", (key,))
        self._query(
            "INSERT INTO image_names (name, digest, descriptor, config_digest, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET digest = excluded.digest,"
            " descriptor = excluded.descriptor, config_digest = excluded.config_digest,"
            " updated = CASE WHEN image_names.digest = excluded.digest"
            " THEN image_names.updated ELSE excluded.updated END",
            (
                key,
                str(target.digest),
                target.to_bytes().decode(),
                str(config) if config is not None else None,
                now,
                now,
            ),
        )
        if previous and str(previous[0][0]) != str(target.digest):
            self.content.remove_from_lease(self._lease(key), str(previous[0][0]))
            bump_generation(self._state_dir)  # the name points elsewhere now
        elif not previous and name is not None:
            # a new name: a build remembered while it was missing may have taken its
            # FROM from a registry, and would now find this image in the store
            bump_generation(self._state_dir)
        if name is not None:
            dangling = dangling_name(target.digest)
            if self._query("SELECT 1 FROM image_names WHERE name = ?", (dangling,)):
                await self._drop(dangling)
        return await self.get(key)

    async def get(self, name: str) -> Image:
        """The image stored under exactly ``name``; :class:`NotFoundError` if none."""
        rows = self._query(f"SELECT {self._COLUMNS} FROM image_names WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(f"image not found: {name}")
        return self._row(rows[0])

    async def list(self) -> list[Image]:
        """Every stored image, by name (dangling ones last)."""
        rows = self._query(f"SELECT {self._COLUMNS} FROM image_names")
        images = [self._row(r) for r in rows]
        images.sort(key=lambda i: (i.dangling, i.name))
        return images

    async def by_digest(self, digest: Digest | str) -> builtins.list[Image]:
        """The images whose target is ``digest`` (all its names)."""
        rows = self._query(
            f"SELECT {self._COLUMNS} FROM image_names WHERE digest = ? ORDER BY name",
            (str(digest),),
        )
        return [self._row(r) for r in rows]

    async def lookup(self, text: str) -> builtins.list[Image]:
        """The images ``text`` names: an exact name (one image), else every image whose
        ID or target digest is ``text`` or starts with it (``sha256:`` optional, any
        hex prefix). The caller decides what several matches mean (``rmi`` refuses an
        ambiguous prefix unless they are one image). :class:`NotFoundError` if none."""
        exact = self._query(f"SELECT {self._COLUMNS} FROM image_names WHERE name = ?", (text,))
        if exact:
            return [self._row(exact[0])]
        match = _HEX_PREFIX.match(text)
        if match is not None:
            prefix = "sha256:" + match.group(1)
            pattern = prefix + "%"
            rows = self._query(
                f"SELECT {self._COLUMNS} FROM image_names WHERE digest LIKE ? OR config_digest"
                " LIKE ? ORDER BY name",
                (pattern, pattern),
            )
            if rows:
                images = [self._row(r) for r in rows]
                images.sort(key=lambda i: (i.dangling, i.name))
                return images
        raise NotFoundError(f"image not found: {text}")

    async def delete(self, name: str) -> Image:
        """Remove the name ``name``; its blobs become collectable unless another name or
        lease holds them. Returns what was removed; :class:`NotFoundError` if none."""
        image = await self.get(name)
        await self._drop(name)
        return image

    async def _drop(self, name: str) -> None:
        self._query("DELETE FROM image_names WHERE name = ?", (name,))
        self.content.delete_lease(self._lease(name))
        bump_generation(self._state_dir)

    def roots(self) -> set[Digest]:
        """Target digests of every stored image: roots for :meth:`ContentStore.gc`."""
        return {Digest(str(r[0])) for r in self._query("SELECT DISTINCT digest FROM image_names")}

    async def resolve(
        self,
        image: Image | str,
        platform: Platform | None = None,
        *,
        strict: bool = False,
    ) -> LocalImage:
        """The manifest and config of ``image`` (an :class:`Image` or an exact name) for
        ``platform`` (default: this host's), picked from an index like a pull would.

        Raises :class:`NotFoundError` when the name is unknown, no manifest matches the
        platform, or a blob is missing from the content store; :class:`ContentError` for
        corrupt documents.
        """
        if isinstance(image, str):
            image = await self.get(image)
        want = platform if platform is not None else _host_platform()
        desc = image.target
        for _ in range(4):
            data = await self._read(image, desc)
            manifest = parse_manifest(data, desc.media_type)
            if isinstance(manifest, ImageIndex):
                desc = select_platform(manifest, want, strict=strict, name=image.name)
                continue
            config_bytes = await self._read(image, manifest.config)
            return LocalImage(
                image=image,
                manifest_descriptor=desc,
                manifest=manifest,
                config=ImageConfig.parse(config_bytes),
                config_bytes=config_bytes,
            )
        raise ContentError(f"image {image.name}: indexes nested too deeply")

    async def _read(self, image: Image, desc: Descriptor) -> bytes:
        try:
            data = await self.content.read(desc.digest)
        except NotFoundError as exc:
            raise NotFoundError(
                f"image {image.name}: blob {desc.digest} ({desc.media_type}) is missing from "
                "the content store"
            ) from exc
        if len(data) != desc.size:
            raise ContentError(f"image {image.name}: blob {desc.digest} has the wrong size")
        return data
