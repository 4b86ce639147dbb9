"""The engine's CDI settings (from the environment by default) and the ``device``
entitlement checked by name: an engine that allows ``device`` takes ``device=NAME``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import llb
from dockyard.core import DeviceGrant, DockyardError, Entitlement
from dockyard.engine import BuildRequest, Engine, EngineConfig
from dockyard.executor.cdi import CdiConfig


def test_cdi_config_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKYARD_CDI_SPEC_DIRS", raising=False)
    monkeypatch.delenv("DOCKYARD_CDI_DISABLED", raising=False)
    assert EngineConfig(state_dir=tmp_path).cdi == CdiConfig()
    monkeypatch.setenv("DOCKYARD_CDI_SPEC_DIRS", "/srv/cdi")
    monkeypatch.setenv("DOCKYARD_CDI_DISABLED", "1")
    config = EngineConfig(state_dir=tmp_path)
    assert config.cdi == CdiConfig(disabled=True, spec_dirs=(Path("/srv/cdi"),))


def test_parse_entitlements_keeps_device_names() -> None:
    grants = EngineConfig.parse_entitlements(["device=v.com/c=a", "network.host"])
    assert grants == {DeviceGrant(name="v.com/c=a"), Entitlement.NETWORK_HOST}


def _check(allowed: frozenset[Entitlement], asked: frozenset[object]) -> None:
    engine = Engine.__new__(Engine)
    engine.config = EngineConfig(state_dir=Path("/nonexistent"), entitlements=allowed)
    request = BuildRequest(definition=llb.scratch().marshal(), entitlements=asked)  # type: ignore[arg-type]
    engine._check_entitlements(request)


def test_device_grants_are_allowed_by_the_device_entitlement() -> None:
    _check(frozenset({Entitlement.DEVICE}), frozenset({DeviceGrant(name="v.com/c=a")}))
    _check(frozenset({Entitlement.DEVICE}), frozenset({Entitlement.DEVICE}))
    with pytest.raises(DockyardError, match="granting entitlement device is not allowed"):
        _check(frozenset({Entitlement.NETWORK_HOST}), frozenset({DeviceGrant(name="v.com/c")}))
