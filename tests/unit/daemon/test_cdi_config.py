"""``[cdi]`` of the daemon's config file (buildkitd.toml's, in our key spelling) and how
it reaches the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.core import ConfigError
from dockyard.daemon import DaemonConfig
from dockyard.executor.cdi import DEFAULT_SPEC_DIRS, CdiConfig


def test_defaults() -> None:
    config = DaemonConfig.from_toml("")
    assert config.cdi == CdiConfig()
    assert config.cdi.spec_dirs == DEFAULT_SPEC_DIRS
    assert not config.cdi.disabled


def test_cdi_table(tmp_path: Path) -> None:
    source = tmp_path / "dockyardd.toml"
    config = DaemonConfig.from_toml(
        """
[cdi]
disabled = true
spec-dirs = ["/etc/cdi", "cdi.d"]
auto-allowed = ["vendor.com/gpu", "vendor.com/nic=eth0"]
""",
        source=source,
    )
    assert config.cdi == CdiConfig(
        disabled=True,
        spec_dirs=(Path("/etc/cdi"), tmp_path / "cdi.d"),  # relative to the file
        auto_allowed=("vendor.com/gpu", "vendor.com/nic=eth0"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cdi]\nspecDirs = ['/x']", "cdi.specDirs: unknown key (did you mean 'spec-dirs'?)"),
        ("[cdi]\nautoAllowed = []", "cdi.autoAllowed: unknown key (did you mean 'auto-allowed'?)"),
        ("[cdi]\ndisabled = 'yes'", "cdi.disabled: must be true or false"),
        ("[cdi]\nspec-dirs = [1]", "cdi.spec-dirs: must be a list of strings"),
        ("[cdi]\nauto-allowed = ['x=y']", "cdi.auto-allowed: invalid device 'x=y'"),
        ("cdi = 'on'", "cdi: must be a table"),
    ],
)
def test_bad_values_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        DaemonConfig.from_toml(text)
    assert message in info.value.message
