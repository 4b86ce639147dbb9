from __future__ import annotations

import asyncio
import base64
import json
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from dockyard.core import AuthError, ConfigError
from dockyard.registry import (
    Credentials,
    CredentialsProvider,
    DockerConfigCredentials,
    StaticCredentials,
    docker_config_path,
)
from dockyard.testing.processes import processes_with

# A credential helper speaking docker's protocol: the server URL on stdin, JSON out.
HELPER = """#!/bin/sh
read server
echo "$server" >> "{log}"
case "$server" in
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"hubuser","Secret":"hubpass"}}' ;;
  tokenhost.example) echo '{{"ServerURL":"x","Username":"<token>","Secret":"refresh-me"}}' ;;
  broken.example) echo 'boom' >&2; exit 3 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def helper_env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fake"
    script.write_text(HELPER.format(log=tmp_path / "helper.log"))
    script.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(tmp_path)}


def write_config(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


async def test_auths_entries(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:secret:with:colons")},
                "registry.example:5000": {"username": "u", "password": "p"},
                "http://oauth.example/v2/": {"identitytoken": "refresh"},
                "tok.example": {"registrytoken": "bearer-token"},
                "empty.example": {},
            }
        },
    )
    provider = DockerConfigCredentials(path)
    assert isinstance(provider, CredentialsProvider)
    assert await provider.get("docker.io") == Credentials(
        username="hub", password="secret:with:colons"
    )
    assert await provider.get("registry-1.docker.io") == await provider.get("docker.io")
    assert await provider.get("registry.example:5000") == Credentials(username="u", password="p")
    assert await provider.get("oauth.example") == Credentials(identity_token="refresh")
    assert await provider.get("tok.example") == Credentials(registry_token="bearer-token")
    assert await provider.get("empty.example") is None
    assert await provider.get("unknown.example") is None


async def test_secrets_are_not_in_repr() -> None:
    creds = Credentials(username="u", password="hunter2", identity_token="tok")
    assert "hunter2" not in repr(creds)
    assert "tok'" not in repr(creds)


async def test_file_changes_are_noticed(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"a.example": {"username": "one", "password": "p"}}})
    provider = DockerConfigCredentials(path)
    first = await provider.get("a.example")
    assert first is not None
    assert first.username == "one"
    path.write_text(json.dumps({"auths": {"a.example": {"username": "second", "password": "p"}}}))
    second = await provider.get("a.example")
    assert second is not None
    assert second.username == "second"


async def test_missing_file_means_no_credentials(tmp_path: Path) -> None:
    assert await DockerConfigCredentials(tmp_path / "nope.json").get("docker.io") is None


async def test_cred_helpers_and_store(tmp_path: Path, helper_env: dict[str, str]) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {"fallback.example": {"auth": b64("fb:pw")}},
            "credsStore": "fake",
            "credHelpers": {"tokenhost.example": "fake"},
        },
    )
    provider = DockerConfigCredentials(path, env=helper_env)
    assert await provider.get("docker.io") == Credentials(username="hubuser", password="hubpass")
    assert await provider.get("tokenhost.example") == Credentials(identity_token="refresh-me")
    # The helper knows nothing: the auths entry is used.
    assert await provider.get("fallback.example") == Credentials(username="fb", password="pw")
    assert await provider.get("nothing.example") is None
    with pytest.raises(AuthError, match=r"docker-credential-fake failed for broken\.example: boom"):
        await provider.get("broken.example")
    asked = (tmp_path / "helper.log").read_text().split()
    assert asked[0] == "https://index.docker.io/v1/"  # docker's name for Docker Hub


async def test_missing_helper(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"credHelpers": {"x.example": "absent"}})
    provider = DockerConfigCredentials(path, env={"PATH": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"docker-credential-absent .* is not in PATH"):
        await provider.get("x.example")
    # Hosts without a helper are unaffected.
    assert await provider.get("y.example") is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "expected a JSON object"),
        ("{", "invalid docker config"),
        ('{"auths": {"h": {"auth": "!!!"}}}', "'auth' is not base64"),
        ('{"auths": {"h": {"auth": "' + b64("nocolon") + '"}}}', "'auth' is not base64"),
        ('{"auths": {"h": {"username": 3}}}', "'username' must be a string"),
        ('{"auths": []}', "'auths' must be an object"),
        ('{"credHelpers": {"h": 1}}', "'credHelpers' must map"),
    ],
)
async def test_malformed_config(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(doc)
    with pytest.raises(ConfigError, match=message) as info:
        await DockerConfigCredentials(path).get("h")
    assert str(path) in str(info.value)


def test_config_path() -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/etc/dc"}) == Path("/etc/dc/config.json")
    assert docker_config_path({"HOME": "/home/u"}) == Path("/home/u/.docker/config.json")


async def test_docker_config_env_is_used(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"e.example": {"auth": b64("a:b")}}})
    )
    provider = DockerConfigCredentials(env={"DOCKER_CONFIG": str(tmp_path)})
    assert await provider.get("e.example") == Credentials(username="a", password="b")


async def test_static_credentials() -> None:
    provider = StaticCredentials({"https://index.docker.io/v1/": Credentials(username="x")})
    assert isinstance(provider, CredentialsProvider)
    assert await provider.get("docker.io") == Credentials(username="x")
    assert await provider.get("other") is None


# A helper that never answers and started a process holding its stdout and stderr.
SILENT_HELPER = """#!/bin/sh
{holder} &
exec sleep 600
"""


async def test_a_helper_that_does_not_answer_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its time is up: it is killed and the lookup fails, though a process it started
    still holds its pipes (the stop used to wait for the end of those too: the time
    limit never came). What it started is stopped with it (its process group)."""
    token = f"dockyard-helper-holder-{os.getpid()}-{id(tmp_path)}"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-silent"
    holder = shlex.join([sys.executable, "-c", "import time; time.sleep(600)", token])
    script.write_text(SILENT_HELPER.format(holder=holder))
    script.chmod(0o755)
    path = write_config(tmp_path, {"credsStore": "silent"})
    provider = DockerConfigCredentials(path, env={"PATH": f"{bindir}:/usr/bin:/bin"})
    monkeypatch.setattr("dockyard.registry._dockerconfig._HELPER_TIMEOUT", 0.5)
    lookup = asyncio.ensure_future(provider.get("slow.example"))
    try:
        done, _ = await asyncio.wait([lookup], timeout=20)  # only against the hang
        if not done:
            for pid in processes_with(token):
                os.kill(pid, signal.SIGKILL)
        with pytest.raises(AuthError, match=r"did not answer for slow\.example"):
            await lookup
        assert done
        assert processes_with(str(script)) == []
        for _ in range(100):  # the group's SIGKILL is sent; its delivery is not awaited
            if not processes_with(token):
                break
            await asyncio.sleep(0.05)
        assert processes_with(token) == []
    finally:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)
