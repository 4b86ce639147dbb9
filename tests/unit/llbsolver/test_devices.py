"""CDI devices of exec ops on fakes: the ``device`` entitlement at load (BuildKit's rules:
every device, ``device=NAME``, aliases, autoallow), the edits a run hands the executor,
required and optional devices that are not there, and what keys the cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dockyard import llb
from dockyard.core import (
    BuildWarning,
    CollectingReporter,
    DeviceGrant,
    Entitlement,
    Grant,
    InvalidDefinitionError,
    NotFoundError,
)
from dockyard.executor.cdi import DeviceRegistry
from dockyard.llbsolver import EntitlementError, JobOptions, LlbSolver, Worker, load
from dockyard.solver import InMemoryCacheKeyStorage, Solver

from .fakes import DirRefs, DirSource, FakeExecutor
from .trees import make_tree

BUSYBOX = "docker.io/library/busybox:latest"


def spec(kind: str, devices: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "cdiVersion": "0.6.0",
        "kind": kind,
        "devices": [{"name": name, **body} for name, body in devices.items()],
        **extra,
    }


def env_edits(*entries: str) -> dict[str, Any]:
    return {"containerEdits": {"env": list(entries)}}


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cdi"
    d.mkdir()
    (d / "gpu.json").write_text(
        json.dumps(
            spec(
                "vendor.com/gpu",
                {
                    "a": env_edits("GPU=a"),
                    "b": {
                        **env_edits("GPU=b"),
                        "annotations": {"org.mobyproject.buildkit.device.class": "fast"},
                    },
                },
                containerEdits={"env": ["GPU_SPEC=1"]},
            )
        )
    )
    (d / "free.yaml").write_text(
        "cdiVersion: 0.6.0\nkind: vendor.com/free\n"
        "annotations:\n  org.mobyproject.buildkit.device.autoallow: true\n"
        "devices:\n- name: x\n  containerEdits:\n    env: [FREE=x]\n"
    )
    return d


class Env:
    def __init__(self, tmp: Path, registry: DeviceRegistry | None) -> None:
        self.refs = DirRefs(tmp / "store")
        self.executor = FakeExecutor()
        trees: dict[str, Callable[[Path], object]] = {
            BUSYBOX: lambda p: make_tree(p, {"etc/": None, "bin/": None}),
        }
        source = DirSource(self.refs, trees)
        self.worker = Worker(
            refs=self.refs,
            executor=self.executor,
            sources={"docker-image": source},
            devices=registry,
        )
        self.keys = InMemoryCacheKeyStorage()

    def bridge(self) -> LlbSolver:
        return LlbSolver(self.worker, Solver(result_storage=self.refs, key_storage=self.keys))


@pytest.fixture
def env(tmp_path: Path, spec_dir: Path) -> Env:
    return Env(tmp_path, DeviceRegistry([spec_dir]))


def run_with(*devices: llb.CDIDevice) -> llb.Definition:
    return llb.image("busybox").run(["gpu-test"], devices=devices).root.marshal()


async def solve(
    env: Env, definition: llb.Definition, grants: frozenset[Grant] = frozenset()
) -> CollectingReporter:
    reporter = CollectingReporter()
    ref = await env.bridge().solve(
        definition, options=JobOptions(entitlements=grants), reporter=reporter
    )
    assert ref is not None
    await ref.release()
    return reporter


# -- the entitlement -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_name", "grants", "allowed"),
    [
        ("vendor.com/gpu=a", set(), False),
        ("vendor.com/gpu=a", {Entitlement.DEVICE}, True),
        ("vendor.com/gpu=a", {DeviceGrant(name="vendor.com/gpu=a")}, True),
        ("vendor.com/gpu=a", {DeviceGrant(name="vendor.com/gpu")}, True),  # its first: a
        ("vendor.com/gpu=b", {DeviceGrant(name="vendor.com/gpu")}, False),
        ("vendor.com/gpu=*", {DeviceGrant(name="vendor.com/gpu=a")}, False),
        ("vendor.com/gpu=*", {DeviceGrant(name="vendor.com/gpu=*")}, True),
        ("fast", {DeviceGrant(name="vendor.com/gpu=b")}, True),
        ("vendor.com/free=x", set(), True),  # autoallow
        ("vendor.com/free", set(), True),
        ("vendor.com/gpu=gone", set(), True),  # selects nothing: the run's matter
        ("nvidia.com/gpu=all", {Entitlement.NETWORK_HOST}, True),
    ],
)
def test_device_entitlement(env: Env, request_name: str, grants: set[Grant], allowed: bool) -> None:
    definition = run_with(llb.CDIDevice(request_name, optional=True))
    if allowed:
        assert load(definition, env.worker, entitlements=frozenset(grants)) is not None
        return
    with pytest.raises(EntitlementError) as info:
        load(definition, env.worker, entitlements=frozenset(grants))
    message = info.value.message
    assert "'gpu-test' asks for device" in message
    assert "--allow device=vendor.com/gpu=" in message
    assert info.value.vertex is not None


def test_the_refusal_lists_every_device(env: Env) -> None:
    with pytest.raises(EntitlementError) as info:
        load(run_with(llb.CDIDevice("vendor.com/gpu=*")), env.worker)
    assert "asks for devices vendor.com/gpu=a, vendor.com/gpu=b," in info.value.message


def test_auto_allowed_by_configuration(tmp_path: Path, spec_dir: Path) -> None:
    env = Env(tmp_path, DeviceRegistry([spec_dir], auto_allowed=["vendor.com/gpu"]))
    assert load(run_with(llb.CDIDevice("vendor.com/gpu=*")), env.worker) is not None


async def test_alias_turns_the_request_into_the_device(env: Env) -> None:
    grants: frozenset[Grant] = frozenset(
        {DeviceGrant(name="vendor.com/gpu=b", alias="vendor.com/alias=mine")}
    )
    await solve(env, run_with(llb.CDIDevice("vendor.com/alias=mine")), grants)
    (call,) = env.executor.calls
    assert [e.env for e in call.process.cdi_edits] == [("GPU_SPEC=1",), ("GPU=b",)]


def test_names_outside_the_grammar_are_invalid_definitions(env: Env) -> None:
    from dockyard.api import ops as pb
    from dockyard.llbsolver._common import OpInfo
    from dockyard.llbsolver._exec import ExecOp

    node = next(n for n in run_with(llb.CDIDevice("vendor.com/gpu=a")) if n.kind == "exec")
    exec_op = pb.ExecOp()
    exec_op.CopyFrom(node.op.exec)
    exec_op.cdiDevices[0].name = "vendor.com/gpu=../../dev/sda"
    with pytest.raises(InvalidDefinitionError, match="must start with a letter or digit"):
        ExecOp(
            info=OpInfo(digest="sha256:x", name="x"), worker=env.worker, exec_op=exec_op, n_inputs=1
        )


# -- running ---------------------------------------------------------------------------


async def test_edits_reach_the_executor_in_order(env: Env) -> None:
    definition = run_with(
        llb.CDIDevice("vendor.com/free"),
        llb.CDIDevice("fast"),
        llb.CDIDevice("vendor.com/gpu=a"),
    )
    await solve(env, definition, frozenset({Entitlement.DEVICE}))
    (call,) = env.executor.calls
    assert [e.env for e in call.process.cdi_edits] == [
        ("FREE=x",),
        ("GPU_SPEC=1",),
        ("GPU=b",),
        ("GPU=a",),
    ]


async def test_no_devices_no_edits(env: Env) -> None:
    await solve(env, llb.image("busybox").run(["true"]).root.marshal())
    assert env.executor.calls[0].process.cdi_edits == ()


async def test_a_required_device_that_is_not_there(env: Env) -> None:
    definition = run_with(llb.CDIDevice("vendor.com/gpu=gone"))
    with pytest.raises(NotFoundError) as info:
        await solve(env, definition, frozenset({Entitlement.DEVICE}))
    assert "required device 'vendor.com/gpu=gone' is not registered" in info.value.message
    assert info.value.vertex is not None
    assert env.executor.calls == []


async def test_an_optional_device_that_is_not_there_warns(env: Env) -> None:
    definition = run_with(
        llb.CDIDevice("vendor.com/gpu=gone", optional=True), llb.CDIDevice("vendor.com/free")
    )
    reporter = await solve(env, definition)
    (call,) = env.executor.calls
    assert [e.env for e in call.process.cdi_edits] == [("FREE=x",)]
    warnings = [e for e in reporter.events if isinstance(e, BuildWarning)]
    assert [w.short for w in warnings] == [
        "optional device 'vendor.com/gpu=gone' is not registered"
    ]


async def test_cdi_disabled(tmp_path: Path) -> None:
    env = Env(tmp_path, None)
    reporter = await solve(env, run_with(llb.CDIDevice("vendor.com/gpu=a", optional=True)))
    assert env.executor.calls[0].process.cdi_edits == ()
    assert any(
        isinstance(e, BuildWarning) and "CDI is disabled" in e.short for e in reporter.events
    )
    with pytest.raises(NotFoundError, match="CDI is disabled on this worker"):
        await solve(env, run_with(llb.CDIDevice("vendor.com/gpu=b")))


async def test_the_cache_key_holds_the_names_not_the_specs(env: Env, spec_dir: Path) -> None:
    grants: frozenset[Grant] = frozenset({Entitlement.DEVICE})
    definition = run_with(llb.CDIDevice("vendor.com/gpu=a"))
    await solve(env, definition, grants)
    # what the spec says changes: the step is still cached (as BuildKit keys it)
    gpu = spec_dir / "gpu.json"
    gpu.write_text(gpu.read_text().replace("GPU=a", "GPU=changed"))
    await solve(env, definition, grants)
    assert len(env.executor.calls) == 1
    # another name is another step
    await solve(env, run_with(llb.CDIDevice("vendor.com/gpu")), grants)
    assert len(env.executor.calls) == 2
    assert [e.env for e in env.executor.calls[1].process.cdi_edits] == [
        ("GPU_SPEC=1",),
        ("GPU=changed",),
    ]
