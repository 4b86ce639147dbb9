"""Golden conversion cases: ``tests/data/dockerfile/convert/<case>/``.

Each case directory holds a ``Dockerfile`` and optionally ``options.json`` (the
:class:`ConvertOptions`: ``target``, ``build_args``, ``labels``, ``platform``,
``build_platform``, ``named_contexts`` (NAME → ``--build-context`` value), ``dockerignore``,
``network``, ``hostname``, ``extra_hosts``, ``no_cache``, ``no_cache_stages``,
``resolve_mode``, ``session_id``, ``cache_id_namespace``, ``filename``). Base images come
from ``images.json`` through :class:`FakeResolver`.

Expected results: ``llb.jsonl`` (``Definition.dump_json()`` of the target), ``image.json``
(the image config), ``ops.txt`` (each op's kind, progress name and ``Dockerfile:LINE``),
``warnings.txt`` (build checks) — or ``error.txt`` when conversion must fail.

After an intended change, regenerate with ``DOCKYARD_UPDATE_GOLDEN=1 pytest
tests/unit/dockerfile/test_convert_golden.py`` and review the diff.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dockyard import llb
from dockyard.core import DockyardError, NotFoundError, Platform
from dockyard.dockerfile import (
    ConvertOptions,
    ConvertResult,
    NamedContext,
    NetworkMode,
    ResolvedImage,
    convert,
    load_named_context,
    parse_dockerfile,
)

DATA = Path(__file__).parents[2] / "data" / "dockerfile" / "convert"
UPDATE = bool(os.environ.get("DOCKYARD_UPDATE_GOLDEN"))
OUTPUTS = ("llb.jsonl", "image.json", "ops.txt", "warnings.txt", "error.txt")


class FakeResolver:
    """Base images from ``images.json``: the config for the platform asked for, and a
    digest derived from reference and platform. Records each call."""

    def __init__(self, images: dict[str, Any] | None = None) -> None:
        if images is None:
            images = json.loads((DATA / "images.json").read_text())
        self.images = {k: v for k, v in images.items() if not k.startswith("_")}
        self.calls: list[tuple[str, str, str]] = []

    async def resolve(
        self, ref: str, *, platform: Platform, resolve_mode: llb.ResolveMode
    ) -> ResolvedImage:
        self.calls.append((ref, str(platform), resolve_mode.value))
        await asyncio.sleep(0)
        name = ref.split("@", 1)[0]
        entry = self.images.get(name) or self.images.get(ref)
        if entry is None:
            raise NotFoundError("image not found")
        config = dict(entry["config"])
        config["architecture"] = platform.architecture
        config["os"] = platform.os
        if platform.variant:
            config["variant"] = platform.variant
        digest = "sha256:" + hashlib.sha256(f"{name} {platform}".encode()).hexdigest()
        return ResolvedImage(ref=name, digest=digest, config=json.dumps(config).encode())


def case_names() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if p.is_dir())


async def options_for(case: Path, resolver: FakeResolver) -> ConvertOptions:
    path = case / "options.json"
    raw: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    target = Platform.parse(raw["platform"]) if "platform" in raw else None
    build = Platform.parse(raw.get("build_platform", "linux/amd64"))
    named: dict[str, NamedContext] = {}
    for name, value in raw.get("named_contexts", {}).items():
        named[name] = await load_named_context(
            name, value, resolver=resolver, platform=target or build
        )
    return ConvertOptions(
        target=raw.get("target"),
        build_args=raw.get("build_args", {}),
        labels=raw.get("labels", {}),
        target_platform=target,
        build_platform=build,
        named_contexts=named,
        dockerignore=tuple(raw.get("dockerignore", ())),
        network=NetworkMode(raw.get("network", "default")),
        hostname=raw.get("hostname"),
        extra_hosts=tuple(
            llb.HostIP(host=h, ip=ip) for h, ip in raw.get("extra_hosts", {}).items()
        ),
        no_cache=raw.get("no_cache", False),
        no_cache_stages=frozenset(raw.get("no_cache_stages", ())),
        resolve_mode=llb.ResolveMode(raw.get("resolve_mode", "default")),
        session_id=raw.get("session_id"),
        cache_id_namespace=raw.get("cache_id_namespace", ""),
    )


def render_ops(result: ConvertResult) -> str:
    lines = []
    for op in result.definition():
        where = " ".join(f"@ {loc}" for loc in op.locations)
        name = op.name.replace("\n", "\\n") if op.kind else "(result)"
        lines.append(f"{op.digest.short()} {op.kind or 'result'}: {name} {where}".rstrip())
    return "\n".join(lines) + "\n"


async def run_case(case: Path) -> dict[str, str]:
    resolver = FakeResolver()
    options = await options_for(case, resolver)
    filename = "Dockerfile"
    raw_options = case / "options.json"
    if raw_options.exists():
        filename = json.loads(raw_options.read_text()).get("filename", filename)
    try:
        dockerfile = parse_dockerfile((case / "Dockerfile").read_bytes(), filename=filename)
        result = await convert(dockerfile, options, resolver)
    except DockyardError as exc:
        return {"error.txt": f"{type(exc).__name__}: {exc}\n"}
    out = {
        "llb.jsonl": result.definition().dump_json(),
        "image.json": result.image_config.to_bytes(indent=2).decode() + "\n",
        "ops.txt": render_ops(result),
    }
    if result.warnings:
        out["warnings.txt"] = "".join(w.short + "\n" for w in result.warnings)
    return out


@pytest.mark.parametrize("name", case_names())
async def test_golden_conversion(name: str) -> None:
    case = DATA / name
    produced = await run_case(case)
    if UPDATE:
        for output in OUTPUTS:
            path = case / output
            if output in produced:
                path.write_text(produced[output])
            elif path.exists():
                path.unlink()
    for output in OUTPUTS:
        path = case / output
        if output in produced:
            assert path.exists(), f"missing {path}; run with DOCKYARD_UPDATE_GOLDEN=1"
            assert produced[output] == path.read_text(), f"{name}/{output} differs"
        else:
            assert not path.exists(), f"{name}: expected {output} but conversion produced none"


async def test_golden_conversion_is_deterministic() -> None:
    """Two conversions of every case give byte-identical output (no random ids, no
    dependence on dict order or timing)."""
    for name in case_names():
        first = await run_case(DATA / name)
        second = await run_case(DATA / name)
        assert first == second, name
