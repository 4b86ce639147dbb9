"""What an end-to-end build produced, in a form two builders can be compared by.

An image saved as a tarball with a ``manifest.json`` (``docker save``, Dockyard's
``-o type=docker``) is read into its config and layers; the layers are applied in order
(whiteouts and opaque directories honoured) into a tree of :class:`Entry` values; a
tree is written as one line per path (``tree_lines``), relative to the base image when
the image was built on one, so that the builders' different base images (Dockyard's
test busybox has an ``app`` user, the peer's has not) do not show.

The image config is reduced to the fields a Dockerfile sets (``config_subset``), with
the base image's history entries left out. Stdlib only (plus ``zstandard`` for zstd
layers): the peer regeneration script imports this module too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import posixpath
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_FIELDS",
    "Entry",
    "SavedImage",
    "config_subset",
    "flatten",
    "line_path",
    "quote_path",
    "read_saved_image",
    "tree_lines",
]

CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)
"""The fields of an image's ``config`` that Dockerfile instructions set."""


def quote_path(path: str) -> str:
    """``path`` as the first word of a tree line (JSON-quoted when it has spaces)."""
    return json.dumps(path) if any(c.isspace() or c == '"' for c in path) else path


def line_path(line: str) -> str:
    """The path a tree line is about."""
    if line.startswith('"'):
        return str(json.JSONDecoder().raw_decode(line)[0])
    return line.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a tree: ``kind`` is file, dir, symlink, char, block or fifo;
    ``digest``/``size`` for files, ``target`` for symlinks, ``device`` (``MAJOR,MINOR``)
    for device nodes."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    digest: str = ""
    target: str = ""
    device: str = ""

    def line(self, path: str) -> str:
        head = f"{quote_path(path)} {self.kind} {self.mode:04o} {self.uid}:{self.gid}"
        if self.kind == "file":
            return f"{head} {self.size} {self.digest}"
        if self.kind == "symlink":
            return f"{head} -> {self.target}"
        if self.device:
            return f"{head} {self.device}"
        return head


@dataclass(frozen=True, slots=True)
class SavedImage:
    """An image's config (the JSON object) and its layers (uncompressed tar bytes)."""

    config: Mapping[str, Any]
    layers: tuple[bytes, ...]

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.config.get("rootfs", {}).get("diff_ids") or ())

    def history(self) -> list[Mapping[str, Any]]:
        return list(self.config.get("history") or [])


def _decompress(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    if blob[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(blob)
    return blob


def read_saved_image(path: Path) -> SavedImage:
    """The (single) image of a docker-format tarball at ``path``."""
    with tarfile.open(path) as tar:

        def member(name: str) -> bytes:
            f = tar.extractfile(name)
            if f is None:
                raise ValueError(f"{path}: {name} is not a file")
            return f.read()

        manifest = json.loads(member("manifest.json"))
        if len(manifest) != 1:
            raise ValueError(f"{path}: {len(manifest)} images, expected one")
        config = json.loads(member(manifest[0]["Config"]))
        layers = tuple(_decompress(member(name)) for name in manifest[0]["Layers"])
    return SavedImage(config=config, layers=layers)


_KINDS = {
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    path = posixpath.normpath("/" + name.lstrip("/"))
    return "/" if path in ("/", "//", "/.") else path


def flatten(layers: Iterable[bytes]) -> dict[str, Entry]:
    """The tree the ``layers`` (uncompressed tars, lowest first) make: whiteouts remove
    paths, an opaque marker empties its directory of what lower layers put there, and a
    hard link is the file it links to."""
    tree: dict[str, Entry] = {}
    for layer in layers:
        added: dict[str, Entry] = {}
        removed: list[str] = []
        opaque: list[str] = []
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            for info in tar:
                path = _norm(info.name)
                parent, base = posixpath.split(path)
                if base == ".wh..wh..opq":
                    opaque.append(parent)
                    continue
                if base.startswith(".wh."):
                    removed.append(posixpath.join(parent, base[4:]))
                    continue
                if info.isreg():
                    f = tar.extractfile(info)
                    data = f.read() if f is not None else b""
                    added[path] = Entry(
                        kind="file",
                        mode=info.mode & 0o7777,
                        uid=info.uid,
                        gid=info.gid,
                        size=len(data),
                        digest=hashlib.sha256(data).hexdigest(),
                    )
                elif info.islnk():
                    linked = added.get(_norm(info.linkname)) or tree.get(_norm(info.linkname))
                    if linked is None:
                        raise ValueError(f"hard link {path} to missing {info.linkname}")
                    added[path] = linked
                else:
                    added[path] = Entry(
                        kind=_KINDS.get(info.type, f"type-{info.type!r}"),
                        mode=info.mode & 0o7777,
                        uid=info.uid,
                        gid=info.gid,
                        target=info.linkname if info.issym() else "",
                        device=f"{info.devmajor},{info.devminor}"
                        if info.isdev() and not info.isfifo()
                        else "",
                    )
        for gone in (*removed, *(f"{d}/" for d in opaque)):
            prefix = gone if gone.endswith("/") else gone + "/"
            for path in [p for p in tree if p == gone or p.startswith(prefix)]:
                del tree[path]
        tree.update(added)
    return tree


def tree_lines(tree: Mapping[str, Entry], base: Mapping[str, Entry] | None = None) -> list[str]:
    """One line per path of ``tree`` (sorted), or, with ``base``, per path added or
    changed relative to ``base`` and ``PATH removed`` for paths it no longer has (the
    topmost only: what a removed directory held is not listed)."""
    lines = []
    for path in sorted(set(tree) | set(base or {})):
        entry = tree.get(path)
        if entry is None:
            parent = posixpath.dirname(path)
            if parent != "/" and parent not in tree:
                continue  # under a removed directory: that one is listed
            lines.append(f"{quote_path(path)} removed")
        elif base is None or base.get(path) != entry:
            lines.append(entry.line(path))
    return lines


def _drop_empty(value: Any) -> Any:
    return None if value in (None, {}, "") else value


def config_subset(
    image: SavedImage, base: SavedImage | None, *, times: bool = False
) -> dict[str, Any]:
    """The Dockerfile-set fields of ``image``'s config, its platform and author, its history after
    ``base``'s (``created_by`` and ``empty_layer``) and the number of layers it adds;
    ``base`` is the image it was built on (``None``: compared whole). ``times`` adds the
    image's and the history entries' ``created`` (for builds with a fixed epoch)."""
    config = image.config.get("config") or {}
    out: dict[str, Any] = {"base": "busybox" if base is not None else "none"}
    for name in CONFIG_FIELDS:
        value = _drop_empty(config.get(name))
        if value is not None:
            out[name] = value
    for name in ("architecture", "os", "variant"):
        value = _drop_empty(image.config.get(name))
        if value is not None:
            out[name] = value
    author = _drop_empty(image.config.get("author"))
    if author is not None:
        out["author"] = author
    skip_history = len(base.history()) if base is not None else 0
    skip_layers = len(base.diff_ids) if base is not None else 0
    out["history"] = [
        {"created_by": h.get("created_by", ""), "empty_layer": bool(h.get("empty_layer"))}
        | ({"created": h.get("created")} if times else {})
        for h in image.history()[skip_history:]
    ]
    if times:
        out["created"] = image.config.get("created")
    out["layers"] = len(image.diff_ids) - skip_layers
    return out


def built_on(image: SavedImage, base: SavedImage) -> bool:
    """Whether ``image``'s layers start with all of ``base``'s."""
    ids: Sequence[str] = image.diff_ids
    return tuple(ids[: len(base.diff_ids)]) == base.diff_ids and bool(base.diff_ids)


def describe(
    image: SavedImage, base: SavedImage, *, times: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """The tree lines and config subset of ``image``, relative to ``base`` when it was
    built on it (``times``: see :func:`config_subset`)."""
    on_base = built_on(image, base)
    tree = flatten(image.layers)
    base_tree = flatten(base.layers) if on_base else None
    return tree_lines(tree, base_tree), config_subset(image, base if on_base else None, times=times)
