"""Registry credentials asked of the client (the shape of dockyard.registry's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockyard.core import AuthError, ConfigError
from dockyard.registry import Credentials, DockerConfigCredentials
from dockyard.session import CredentialsSource, Session, SessionCredentials

from .harness import Harness


class Table:
    def __init__(self, table: dict[str, Credentials]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def get(self, host: str) -> Credentials | None:
        self.asked.append(host)
        if host == "broken.example":
            raise AuthError("credential helper for broken.example failed")
        return self.table.get(host)


async def test_round_trip(harness: Harness) -> None:
    source = Table(
        {
            "registry.example": Credentials(username="u", password="p"),
            "token.example": Credentials(identity_token="id", registry_token="rt"),
        }
    )
    async with harness.open(Session(credentials=source)) as handle:
        got = await handle.credentials.get("registry.example")
        assert got == SessionCredentials(username="u", password="p")
        assert "p" not in repr(got).replace("username='u'", "")
        assert await handle.credentials.get("token.example") == SessionCredentials(
            identity_token="id", registry_token="rt"
        )
        assert await handle.credentials.get("other.example") is None
        with pytest.raises(AuthError, match=r"broken\.example failed"):
            await handle.credentials.get("broken.example")
    assert source.asked == ["registry.example", "token.example", "other.example", "broken.example"]


async def test_no_credentials_source_means_anonymous(harness: Harness) -> None:
    async with harness.open(Session()) as handle:
        assert await handle.credentials.get("docker.io") is None


async def test_docker_config_credentials_serve_the_session(
    harness: Harness, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}}}))
    provider = DockerConfigCredentials(config, env={})
    assert isinstance(provider, CredentialsSource)
    async with harness.open(Session(credentials=provider)) as handle:
        assert await handle.credentials.get("127.0.0.1:5000") == SessionCredentials(
            username="user", password="pass"
        )
        config.write_text("{not json")
        with pytest.raises(ConfigError, match="invalid docker config"):
            await handle.credentials.get("127.0.0.1:5000")
