"""The cache config (``application/vnd.buildkit.cacheconfig.v0``): BuildKit's JSON shape.

::

    {"layers":  [{"blob": "sha256:…", "parent": 0,          ← index of the layer below
                  "annotations": {"mediaType": …, "diffID": …, "size": …,
                                  "createdAt": …}}, …],
     "records": [{"digest": "sha256:…",                     ← the record's cache key
                  "output": 1,                               ← output index (0 omitted)
                  "keys": ["sha256:…"],                      ← other keys of the record
                  "inputs": [[{"selector": "/src", "link": 3}], …],
                  "layers": [{"layer": 5, "createdAt": …}]}, …]}

As in BuildKit, ``layers`` form a tree by their ``parent`` index (``-1``: none; ``0`` is
omitted, Go's ``omitempty``), a record's result names the *top* layer of its chain, and
``inputs[i]`` links to the records of the vertex's input ``i`` with the selector the
vertex reads it by. Dockyard's records are per vertex output and its cache keys are
content-addressed already, so a record's ``digest`` is the cache key itself (the
canonical one, which dependants' keys are made from); ``keys`` lists the other keys
naming the same result (the definition key when the content key is canonical) and
``output`` the output index. Go's decoder ignores both extra fields.

The inline form (``moby.buildkit.cache.v0`` in an image config, base64) is BuildKit's:
the ``records`` list alone, each result's ``layer`` being the position of its chain's
top layer among the image's layers, which form the chain (:meth:`CacheConfig.inline_bytes`,
:meth:`CacheConfig.parse_inline`; BuildKit's importer decodes it into a list of records
and refuses anything else).

:meth:`CacheConfig.parse` validates everything an importer relies on (indexes in range,
parent chains without cycles, digests) and raises :class:`~dockyard.core.ContentError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.core import ContentError, Digest, jsontext
from dockyard.oci import canonical_json

__all__ = [
    "CACHE_CONFIG_MEDIA_TYPE",
    "CacheConfig",
    "CacheConfigRecord",
    "CacheInput",
    "CacheLayer",
    "CacheResult",
]

CACHE_CONFIG_MEDIA_TYPE = "application/vnd.buildkit.cacheconfig.v0"
_MAX_CONFIG = 64 << 20
_MAX_OUTPUT_SLOTS = 1 << 20
"""The sum over a config's records of their output index + 1 (an imported record's
results are a list as long as its output index)."""
_MAX_CHAIN = 4096
"""The deepest layer chain a cache config may hold (an image of more layers cannot be
mounted; a hostile config's chain of ~500 000 layers made every result's walk long)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheLayer:
    """One layer blob and the index of the layer below it (``-1``: the bottom one).
    ``media_type``/``diff_id``/``size``/``created_at`` are BuildKit's annotations."""

    blob: Digest
    parent: int = -1
    media_type: str = ""
    diff_id: Digest | None = None
    size: int = -1
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"blob": str(self.blob)}
        if self.parent != 0:
            out["parent"] = self.parent
        annotations: dict[str, Any] = {}
        if self.media_type:
            annotations["mediaType"] = self.media_type
        if self.diff_id is not None:
            annotations["diffID"] = str(self.diff_id)
        if self.size >= 0:
            annotations["size"] = self.size
        if self.created_at:
            annotations["createdAt"] = self.created_at
        if annotations:
            out["annotations"] = annotations
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheResult:
    """A record's result: the top layer of its chain and when it was made."""

    layer: int
    created_at: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer}
        if self.created_at:
            out["createdAt"] = self.created_at
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheInput:
    """A link to the record of an input, with the selector the vertex reads it by."""

    link: int
    selector: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.selector:
            out["selector"] = self.selector
        out["link"] = self.link
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfigRecord:
    """One output of one vertex: its canonical cache key (``digest``), the other keys
    naming it, links to its inputs' records, and its results (empty: keys only)."""

    digest: str
    output: int = 0
    keys: tuple[str, ...] = ()
    inputs: tuple[tuple[CacheInput, ...], ...] = ()
    results: tuple[CacheResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.results:
            out["layers"] = [r.to_json() for r in self.results]
        out["digest"] = self.digest
        if self.output:
            out["output"] = self.output
        if self.keys:
            out["keys"] = list(self.keys)
        if self.inputs:
            out["inputs"] = [[i.to_json() for i in links] for links in self.inputs]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """A whole cache config; see the module docstring."""

    layers: tuple[CacheLayer, ...] = ()
    records: tuple[CacheConfigRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.layers:
            out["layers"] = [layer.to_json() for layer in self.layers]
        if self.records:
            out["records"] = [record.to_json() for record in self.records]
        return out

    def to_bytes(self) -> bytes:
        """Compact canonical JSON: equal configs give equal bytes (and digests)."""
        return canonical_json(self.to_json())

    def inline_bytes(self, image_layers: Sequence[Digest]) -> bytes | None:
        """The inline form for an image whose layers are ``image_layers`` (bottom
        first): the records, each result naming the position of its chain's top layer in
        the image; a result whose chain is not the image's bottom layers is left out.
        ``None`` when no result is left (nothing worth importing)."""
        records = []
        kept = False
        for record in self.records:
            results = []
            for result in record.results:
                chain = [layer.blob for layer in self.chain(result.layer)]
                if chain and list(image_layers[: len(chain)]) == chain:
                    results.append(CacheResult(layer=len(chain) - 1, created_at=result.created_at))
            kept = kept or bool(results)
            records.append(
                CacheConfigRecord(
                    digest=record.digest,
                    output=record.output,
                    keys=record.keys,
                    inputs=record.inputs,
                    results=tuple(results),
                )
            )
        if not kept:
            return None
        return canonical_json([record.to_json() for record in records])

    @classmethod
    def parse_inline(cls, data: bytes, image_layers: Sequence[CacheLayer]) -> CacheConfig:
        """Read an inline cache: BuildKit's list of records over ``image_layers`` (the
        image's layers as a chain, bottom first), or a whole config object (what
        Dockyard wrote before it wrote BuildKit's form); :class:`ContentError` when
        malformed."""
        obj = _load(data)
        if isinstance(obj, dict):
            return cls._from_object(obj)
        if not isinstance(obj, list):
            raise ContentError("inline cache is neither a list of records nor a cache config")
        layers = tuple(
            CacheLayer(
                blob=layer.blob,
                parent=i - 1,
                media_type=layer.media_type,
                diff_id=layer.diff_id,
                size=layer.size,
                created_at=layer.created_at,
            )
            for i, layer in enumerate(image_layers)
        )
        records = tuple(_record(item, i) for i, item in enumerate(obj))
        config = cls(layers=layers, records=records)
        config._validate()
        return config

    def chain(self, top: int) -> list[CacheLayer]:
        """The layers of the chain whose top layer is ``top``, bottom first."""
        out: list[CacheLayer] = []
        index = top
        while index >= 0:
            layer = self.layers[index]
            out.append(layer)
            index = layer.parent
        out.reverse()
        return out

    @classmethod
    def parse(cls, data: bytes) -> CacheConfig:
        """Read and validate a cache config; :class:`ContentError` when malformed."""
        obj = _load(data)
        if not isinstance(obj, dict):
            raise ContentError("cache config is not a JSON object")
        return cls._from_object(obj)

    @classmethod
    def _from_object(cls, obj: dict[str, Any]) -> CacheConfig:
        layers = tuple(_layer(item, i) for i, item in enumerate(_list(obj.get("layers"), "layers")))
        records = tuple(
            _record(item, i) for i, item in enumerate(_list(obj.get("records"), "records"))
        )
        config = cls(layers=layers, records=records)
        config._validate()
        return config

    def _validate(self) -> None:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            if not -1 <= layer.parent < n:
                raise ContentError(f"cache config: layer {i} has parent {layer.parent} of {n}")
        depth: dict[int, int] = {}
        for i in range(n):  # every parent chain ends (no cycle) within _MAX_CHAIN layers
            seen: dict[int, None] = {}  # in walk order; a set's lookups (a list's were O(n))
            j = i
            while j >= 0 and j not in depth:
                if j in seen:
                    raise ContentError(f"cache config: layer {i} is its own ancestor")
                seen[j] = None
                if len(seen) > _MAX_CHAIN:
                    raise ContentError(
                        f"cache config: layer {i}'s chain is deeper than {_MAX_CHAIN} layers"
                    )
                j = self.layers[j].parent
            base = depth.get(j, 0) if j >= 0 else 0
            for k, index in enumerate(reversed(seen), 1):
                depth[index] = base + k
                if base + k > _MAX_CHAIN:
                    raise ContentError(
                        f"cache config: layer {i}'s chain is deeper than {_MAX_CHAIN} layers"
                    )
        m = len(self.records)
        # an importer makes each record's result list as long as its output index: a
        # hostile "output": 100000000000 asked for a list of 10^11 entries
        slots = 0
        for i, record in enumerate(self.records):
            slots += record.output + 1
            if slots > _MAX_OUTPUT_SLOTS:
                raise ContentError(
                    f"cache config: record {i}'s output {record.output} is past any op's"
                    f" ({_MAX_OUTPUT_SLOTS} outputs over all records at most)"
                )
        for i, record in enumerate(self.records):
            for result in record.results:
                if not 0 <= result.layer < n:
                    raise ContentError(
                        f"cache config: record {i} names layer {result.layer} of {n}"
                    )
            for links in record.inputs:
                for link in links:
                    if not 0 <= link.link < m or link.link == i:
                        raise ContentError(
                            f"cache config: record {i} links to record {link.link} of {m}"
                        )


def _load(data: bytes) -> Any:
    if len(data) > _MAX_CONFIG:
        raise ContentError(f"cache config is too large ({len(data)} bytes)")
    try:
        return jsontext.loads(data)  # (nested past the parser's stack: a ValueError)
    except ValueError as exc:
        raise ContentError(f"cache config is not valid JSON: {exc}") from exc


def _list(value: Any, what: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ContentError(f"cache config: {what} is not a list")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContentError(f"cache config: {what} is not an object")
    return value


def _int(obj: dict[str, Any], key: str, what: str, default: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContentError(f"cache config: {what}.{key} is not an integer")
    return value


def _text(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise ContentError(f"cache config: {what}.{key} is not a string")
    return value


def _digest(text: str, what: str) -> Digest:
    try:
        return Digest.parse(text)
    except ValueError as exc:
        raise ContentError(f"cache config: {what}: {exc}") from exc


def _layer(item: Any, i: int) -> CacheLayer:
    what = f"layers[{i}]"
    obj = _object(item, what)
    annotations = _object(obj.get("annotations") or {}, f"{what}.annotations")
    diff_id = _text(annotations, "diffID", what)
    size = _int(annotations, "size", what, -1)
    return CacheLayer(
        blob=_digest(_text(obj, "blob", what), f"{what}.blob"),
        parent=_int(obj, "parent", what, 0),
        media_type=_text(annotations, "mediaType", what),
        diff_id=_digest(diff_id, f"{what}.diffID") if diff_id else None,
        size=size,
        created_at=_text(annotations, "createdAt", what),
    )


def _record(item: Any, i: int) -> CacheConfigRecord:
    what = f"records[{i}]"
    obj = _object(item, what)
    digest = _text(obj, "digest", what)
    _digest(digest, f"{what}.digest")
    keys = []
    for j, key in enumerate(_list(obj.get("keys"), f"{what}.keys")):
        if not isinstance(key, str):
            raise ContentError(f"cache config: {what}.keys[{j}] is not a string")
        _digest(key, f"{what}.keys[{j}]")
        keys.append(key)
    inputs = []
    for j, links in enumerate(_list(obj.get("inputs"), f"{what}.inputs")):
        group = []
        for k, link in enumerate(_list(links, f"{what}.inputs[{j}]")):
            where = f"{what}.inputs[{j}][{k}]"
            lobj = _object(link, where)
            group.append(
                CacheInput(
                    link=_int(lobj, "link", where, -1), selector=_text(lobj, "selector", where)
                )
            )
        inputs.append(tuple(group))
    results = []
    for j, result in enumerate(_list(obj.get("layers"), f"{what}.layers")):
        where = f"{what}.layers[{j}]"
        robj = _object(result, where)
        results.append(
            CacheResult(
                layer=_int(robj, "layer", where, -1), created_at=_text(robj, "createdAt", where)
            )
        )
    output = _int(obj, "output", what, 0)
    if output < 0:
        raise ContentError(f"cache config: {what}.output is negative")
    return CacheConfigRecord(
        digest=digest,
        output=output,
        keys=tuple(keys),
        inputs=tuple(inputs),
        results=tuple(results),
    )
