"""``dockyard build`` against a real registry, bad input: an unknown image or tag is
``image not found: <ref>``, wrong credentials an auth error naming the registry (never
the password) — exit code 1 and no traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard.cli.main import main
from dockyard.testing.registry import REGISTRY_BINARY, start_registry
from tests.integration.conftest import need_tools, requirement_missing


def _need_registry() -> None:
    if not Path(REGISTRY_BINARY).exists():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")


def _context(tmp_path: Path, base: str) -> Path:
    context = tmp_path / "context"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {base}\nRUN true\n")
    return context


@pytest.mark.parametrize("what", ["repository", "tag"])
def test_an_unknown_image_or_tag(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    _need_registry()
    with start_registry(tmp_path / "registry") as registry:
        if what == "tag":
            # the repository exists, the tag does not
            assert main(["build", "--state-dir", str(state), "-q", "-t",
                         registry.ref("known/app:v1"), "--push",
                         str(_context(tmp_path / "seed", "busybox"))]) == 0  # fmt: skip
            capsys.readouterr()
        missing = registry.ref("known/app:v2" if what == "tag" else "nothing/here:v1")
        code = main(["build", "--state-dir", str(state), "--progress", "plain",
                     str(_context(tmp_path, missing))])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"image not found: {missing}" in err
    assert "Traceback" not in err


def test_wrong_credentials_name_the_registry(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_registry()
    need_tools("openssl", "htpasswd")
    with start_registry(tmp_path / "registry", auth="htpasswd", tls=True) as registry:
        user = next(iter(registry.users))
        wrong = "not-the-password-" + "x" * 8
        docker_config = tmp_path / "docker-config"
        docker_config.mkdir()
        auth = base64.b64encode(f"{user}:{wrong}".encode()).decode()
        (docker_config / "config.json").write_text(
            json.dumps({"auths": {registry.host: {"auth": auth}}})
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
        base = registry.ref("private/base:v1")
        code = main(["build", "--state-dir", str(state), "--progress", "plain",
                     str(_context(tmp_path, base))])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"authentication to registry {registry.host} failed" in err
        assert wrong not in err
        assert "Traceback" not in err
        # pushing with them is refused the same way
        code = main(["build", "--state-dir", str(state), "--progress", "plain", "-t",
                     registry.ref("private/app:v1"), "--push",
                     str(_context(tmp_path / "push", "busybox"))])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"authentication to registry {registry.host} failed" in err
        assert wrong not in err
        assert "Traceback" not in err
