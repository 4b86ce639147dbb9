"""``image pull`` against a hostile registry's answers (a fake client, no network): an
index that lists the same child many times, level after level, is fetched once per
digest, not once per path (exponential with the nesting)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dockyard.cli._image_registry import pull_image
from dockyard.content import ContentStore, ImageStore
from dockyard.core import Digest
from dockyard.oci import Descriptor, MediaType, parse_manifest
from dockyard.registry import FetchedManifest, Reference

_CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
).encode()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.from_bytes(data)), "size": len(data)}


class _Registry:
    """Documents by digest; counts what was asked for."""

    def __init__(self, top: bytes, documents: dict[str, tuple[str, bytes]]) -> None:
        self.top = top
        self.documents = documents
        self.asked: Counter[str] = Counter()

    async def get_manifest(
        self, ref: Reference, *, expected: Descriptor | None = None
    ) -> FetchedManifest:
        data = self.top if expected is None else self.documents[str(expected.digest)][1]
        self.asked[str(Digest.from_bytes(data))] += 1
        manifest = parse_manifest(data)
        desc = Descriptor(
            media_type=manifest.media_type, digest=Digest.from_bytes(data), size=len(data)
        )
        return FetchedManifest(descriptor=desc, data=data, manifest=manifest)

    async def get_blob(self, ref: Reference, descriptor: Descriptor) -> bytes:
        self.asked[str(descriptor.digest)] += 1
        return _CONFIG


def _nested(fan_out: int, levels: int) -> _Registry:
    documents: dict[str, tuple[str, bytes]] = {}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": _descriptor(MediaType.OCI_CONFIG, _CONFIG),
            "layers": [],
        }
    ).encode()
    child = _descriptor(MediaType.OCI_MANIFEST, manifest)
    child["platform"] = {"architecture": "amd64", "os": "linux"}
    documents[child["digest"]] = (MediaType.OCI_MANIFEST, manifest)
    for _ in range(levels):
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": [child] * fan_out}
        ).encode()
        child = _descriptor(MediaType.OCI_INDEX, index)
        child["platform"] = {"architecture": "amd64", "os": "linux"}
        documents[child["digest"]] = (MediaType.OCI_INDEX, index)
    return _Registry(documents[child["digest"]][1], documents)


async def test_repeated_index_entries_are_fetched_once(tmp_path: Path) -> None:
    registry = _nested(fan_out=10, levels=3)
    content = ContentStore(tmp_path / "content")
    try:
        with ImageStore.open(tmp_path, content) as store:
            result = await pull_image(
                registry,  # type: ignore[arg-type]
                content,
                store,
                Reference.parse("example.com/repo:tag"),
                all_platforms=True,
            )
    finally:
        content.close()
    assert max(registry.asked.values()) == 1, registry.asked.most_common(3)
    assert len(registry.asked) == 5  # three indexes, the manifest, its config
    assert result.target.media_type == MediaType.OCI_INDEX


class _Pushed:
    """A registry that has every blob and records the manifests pushed."""

    def __init__(self) -> None:
        self.manifests: Counter[str] = Counter()

    async def blob_exists(self, ref: Reference, desc: Descriptor) -> bool:
        return True

    async def push_blob(self, ref: Reference, desc: Descriptor, *args: Any, **kw: Any) -> str:
        return "exists"

    async def push_manifest(
        self, ref: Reference, data: bytes, media_type: str, *, by_digest: bool = False
    ) -> Descriptor:
        self.manifests[str(Digest.from_bytes(data))] += 1
        return Descriptor(media_type=media_type, digest=Digest.from_bytes(data), size=len(data))

    async def push_image(
        self,
        ref: Reference,
        *,
        manifest: bytes,
        media_type: str,
        children: Sequence[tuple[bytes, str]] = (),
        **kw: Any,
    ) -> Descriptor:
        for data, kind in children:
            await self.push_manifest(ref, data, kind, by_digest=True)
        return await self.push_manifest(ref, manifest, media_type)


async def test_push_and_mount_sources_visit_each_document_once(tmp_path: Path) -> None:
    """An index pulled from a hostile registry (kept by --all-platforms) is pushed, and
    looked at for cross-repository mounts, once per document too."""
    from dockyard.cli import _image_registry

    registry = _nested(fan_out=10, levels=3)
    content = ContentStore(tmp_path / "content")
    reads: Counter[str] = Counter()
    real_read = content.read

    async def counting_read(digest: Digest | str, *, verify: bool = True) -> bytes:
        reads[str(digest)] += 1
        return await real_read(digest, verify=verify)

    try:
        with ImageStore.open(tmp_path, content) as store:
            await pull_image(
                registry,  # type: ignore[arg-type]
                content,
                store,
                Reference.parse("example.com/repo:tag"),
                all_platforms=True,
            )
            content.read = counting_read  # type: ignore[method-assign]
            found = await _image_registry._layers_of(
                content, (await store.get("example.com/repo:tag")).target
            )
            assert found == set()
            assert max(reads.values()) == 1, reads.most_common(2)
            reads.clear()
            pushed = _Pushed()
            image = await store.get("example.com/repo:tag")
            await _image_registry.push_image(
                pushed,  # type: ignore[arg-type]
                content,
                store,
                image,
                Reference.parse("example.com/other:tag"),
            )
    finally:
        content.close()
    assert len(pushed.manifests) == 4
    assert max(pushed.manifests.values()) == 1, pushed.manifests.most_common(2)
    # once to push, once looking for layers to mount from the pulled repository
    assert max(reads.values()) == 2, reads.most_common(2)
