"""Real ``docker-registry`` processes on loopback for the registry client's tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.registry import RegistryClient, RetryPolicy, StaticCredentials
from dockyard.testing.registry import REGISTRY_BINARY, RegistryProcess, start_registry
from tests.integration.conftest import need_tools, requirement_missing

QUICK = RetryPolicy(attempts=3, initial_delay=0.05, max_delay=0.5)


def _need_registry_tools() -> None:
    need_tools("openssl", "htpasswd", "skopeo")
    if not Path(REGISTRY_BINARY).is_file():
        requirement_missing(f"{REGISTRY_BINARY} not found (Debian package docker-registry)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """An anonymous plain-HTTP registry shared by a module's tests."""
    _need_registry_tools()
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """An anonymous registry of the test's own (to kill and restart)."""
    _need_registry_tools()
    with start_registry(tmp_path / "registry") as running:
        yield running


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """htpasswd basic auth behind TLS with a test CA; user alice / wonderland."""
    _need_registry_tools()
    with start_registry(
        tmp_path_factory.mktemp("tls-registry"), auth="htpasswd", tls=True
    ) as running:
        yield running


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Bearer tokens from a token server in this process; alice / wonderland, or the
    refresh token ``alice-refresh``; anonymous users may pull."""
    _need_registry_tools()
    with start_registry(
        tmp_path_factory.mktemp("token-registry"),
        auth="token",
        refresh_tokens={"alice-refresh": "alice"},
        anonymous_pull=True,
    ) as running:
        yield running


def client_for(
    registry: RegistryProcess, *, authenticated: bool = True, **kwargs: object
) -> RegistryClient:
    creds = None
    if authenticated and registry.users and (registry.tls or registry.token_server):
        creds = StaticCredentials({registry.host: registry.credentials()})
    options: dict[str, object] = {"config": registry.registry_config(), "retry": QUICK}
    options["credentials"] = creds
    options.update(kwargs)
    return RegistryClient(**options)  # type: ignore[arg-type]


async def run(*args: str) -> str:
    """Run a tool; its stdout, or an assertion error with its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}): {err.decode()}"
    return out.decode()


async def skopeo_inspect(registry: RegistryProcess, name: str, *extra: str) -> str:
    args = ["skopeo", "inspect", "--tls-verify=false", *extra]
    if registry.tls or registry.token_server:
        user = next(iter(registry.users))
        args += ["--creds", f"{user}:{registry.users[user]}"]
    return await run(*args, f"docker://{registry.ref(name)}")


async def skopeo_inspect_json(
    registry: RegistryProcess, name: str, *extra: str
) -> dict[str, object]:
    doc = json.loads(await skopeo_inspect(registry, name, *extra))
    assert isinstance(doc, dict)
    return doc
