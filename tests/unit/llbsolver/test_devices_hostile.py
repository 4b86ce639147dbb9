"""The ``device`` entitlement holds when the step runs, not only when its Definition was
loaded: a device that appears in the host's specs between the two (a spec generated at
boot, a hot-plugged device's) is not given to a build that was never granted it
(security audit 2, row 49)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import CollectingReporter, DeviceGrant, Entitlement, Grant
from dockyard.executor.cdi import DeviceRegistry
from dockyard.llbsolver import EntitlementError, JobOptions, LlbSolver, Worker
from dockyard.solver import InMemoryCacheKeyStorage, Solver

from .fakes import DirRefs, DirSource, FakeExecutor
from .trees import make_tree

BUSYBOX = "docker.io/library/busybox:latest"


def _spec(kind: str, *names: str, **annotations: str) -> str:
    return json.dumps(
        {
            "cdiVersion": "0.6.0",
            "kind": kind,
            "devices": [
                {
                    "name": name,
                    "containerEdits": {"env": [f"DEV={name}"]},
                    **({"annotations": annotations} if annotations else {}),
                }
                for name in names
            ],
        }
    )


class _Env:
    """A worker whose image source adds ``late`` (a spec file) to the spec directory
    when the step's image is fetched: after the Definition was loaded, before the
    step runs."""

    def __init__(self, tmp: Path, late: tuple[str, str]) -> None:
        self.spec_dir = tmp / "cdi"
        self.spec_dir.mkdir()
        (self.spec_dir / "gpu.json").write_text(_spec("vendor.com/gpu", "a"))
        self.refs = DirRefs(tmp / "store")
        self.executor = FakeExecutor()
        name, text = late

        def image(path: Path) -> None:
            (self.spec_dir / name).write_text(text)
            make_tree(path, {"etc/": None, "bin/": None})

        self.worker = Worker(
            refs=self.refs,
            executor=self.executor,
            sources={"docker-image": DirSource(self.refs, {BUSYBOX: image})},
            devices=DeviceRegistry([self.spec_dir]),
        )

    async def solve(self, device: str, grants: frozenset[Grant]) -> None:
        definition = (
            llb.image("busybox")
            .run(["gpu-test"], devices=[llb.CDIDevice(device, optional=True)])
            .root.marshal()
        )
        solver = LlbSolver(
            self.worker,
            Solver(result_storage=self.refs, key_storage=InMemoryCacheKeyStorage()),
        )
        ref = await solver.solve(
            definition, options=JobOptions(entitlements=grants), reporter=CollectingReporter()
        )
        assert ref is not None
        await ref.release()

    def used(self) -> list[tuple[str, ...]]:
        (call,) = self.executor.calls
        return [e.env for e in call.process.cdi_edits]


@pytest.mark.parametrize(
    ("device", "late", "grants"),
    [
        # a name that selected nothing when loaded
        ("vendor.com/gpu=late", ("late.json", _spec("vendor.com/gpu", "late")), set()),
        # every device of a kind, one of them granted
        (
            "vendor.com/gpu=*",
            ("late.json", _spec("vendor.com/gpu", "late")),
            {DeviceGrant(name="vendor.com/gpu=a")},
        ),
        # a class that no device had
        (
            "fast",
            (
                "late.json",
                _spec("vendor.com/other", "x", **{"org.mobyproject.buildkit.device.class": "fast"}),
            ),
            set(),
        ),
    ],
)
async def test_a_device_that_appears_after_loading_is_not_granted(
    tmp_path: Path, device: str, late: tuple[str, str], grants: set[Grant]
) -> None:
    env = _Env(tmp_path, late)
    with pytest.raises(EntitlementError, match="which this build was not granted"):
        await env.solve(device, frozenset(grants))
    assert env.executor.calls == []


async def test_a_device_that_appears_is_used_when_granted(tmp_path: Path) -> None:
    env = _Env(tmp_path, ("late.json", _spec("vendor.com/gpu", "late")))
    await env.solve("vendor.com/gpu=*", frozenset({DeviceGrant(name="vendor.com/gpu=*")}))
    assert env.used() == [("DEV=a",), ("DEV=late",)]


async def test_every_device_granted_takes_what_is_there_when_it_runs(tmp_path: Path) -> None:
    env = _Env(tmp_path, ("late.json", _spec("vendor.com/gpu", "late")))
    await env.solve("vendor.com/gpu=late", frozenset({Entitlement.DEVICE}))
    assert env.used() == [("DEV=late",)]


async def test_an_auto_allowed_device_that_appears_is_used(tmp_path: Path) -> None:
    late = json.loads(_spec("vendor.com/free", "x"))
    late["annotations"] = {"org.mobyproject.buildkit.device.autoallow": "true"}
    env = _Env(tmp_path, ("free.json", json.dumps(late)))
    await env.solve("vendor.com/free=x", frozenset())
    assert env.used() == [("DEV=x",)]


async def test_an_alias_still_names_its_device_when_it_runs(tmp_path: Path) -> None:
    env = _Env(tmp_path, ("late.json", _spec("vendor.com/gpu", "late")))
    grants: frozenset[Grant] = frozenset(
        {DeviceGrant(name="vendor.com/gpu=late", alias="vendor.com/alias=mine")}
    )
    await env.solve("vendor.com/alias=mine", grants)
    assert env.used() == [("DEV=late",)]
