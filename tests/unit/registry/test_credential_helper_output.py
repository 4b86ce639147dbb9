"""A credential helper that fails after printing its answer: the error names the helper
and what it said, but never the secret it printed; a long output is cut."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dockyard.core import AuthError
from dockyard.registry import DockerConfigCredentials


def _helper(tmp_path: Path, script: str) -> tuple[Path, dict[str, str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-leaky"
    helper.write_text(script)
    helper.chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "leaky"}))
    env = {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path)}
    return config, env


async def test_a_failing_helper_does_not_show_the_secret(tmp_path: Path) -> None:
    config, env = _helper(
        tmp_path,
        "#!/bin/sh\n"
        'echo \'{"ServerURL": "h", "Username": "me", "Secret": "t0ps3cret"}\'\n'
        "echo 'keychain locked' >&2\n"
        "exit 1\n",
    )
    with pytest.raises(AuthError) as info:
        await DockerConfigCredentials(config, env=env).get("reg.example")
    assert "t0ps3cret" not in info.value.message
    assert "keychain locked" in info.value.message


async def test_a_failing_helper_output_is_cut(tmp_path: Path) -> None:
    config, env = _helper(tmp_path, "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' x\nexit 1\n")
    with pytest.raises(AuthError) as info:
        await DockerConfigCredentials(config, env=env).get("reg.example")
    assert len(info.value.message) < 2000
