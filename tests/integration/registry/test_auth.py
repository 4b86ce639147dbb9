"""Anonymous, htpasswd-over-TLS and token-flow access to real registries."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard.core import AuthError, Platform, RegistryError
from dockyard.registry import (
    Credentials,
    DockerConfigCredentials,
    HostConfig,
    Reference,
    RegistryClient,
    RegistryConfig,
    StaticCredentials,
)
from dockyard.testing.registry import RegistryProcess, build_image, start_registry

from .conftest import QUICK, client_for, skopeo_inspect_json


async def push_and_pull(client: RegistryClient, ref: str) -> None:
    image = build_image([{"who": ref}])
    pushed = await client.push_image(
        ref, manifest=image.manifest_bytes, media_type=image.media_type, blobs=image.blobs
    )
    assert pushed.digest == image.digest
    resolved = await client.resolve(ref, platform=Platform.parse("linux/amd64"))
    assert resolved.digest == image.digest


# -- htpasswd behind TLS ---------------------------------------------------------------


async def test_basic_auth_over_tls(tls_registry: RegistryProcess) -> None:
    async with client_for(tls_registry) as client:
        await push_and_pull(client, tls_registry.ref("private/app:v1"))
    info = await skopeo_inspect_json(tls_registry, "private/app:v1")
    assert info["Name"] == tls_registry.ref("private/app")


async def test_basic_auth_wrong_password(tls_registry: RegistryProcess) -> None:
    creds = StaticCredentials(
        {tls_registry.host: Credentials(username="alice", password="s3cret-pw")}
    )
    async with RegistryClient(
        config=tls_registry.registry_config(), credentials=creds, retry=QUICK
    ) as client:
        with pytest.raises(AuthError) as info:
            await client.resolve(tls_registry.ref("private/app:v1"))
    message = str(info.value)
    assert f"authentication to registry {tls_registry.host} failed" in message
    assert "'alice'" in message
    assert "s3cret-pw" not in message


async def test_basic_auth_without_credentials(tls_registry: RegistryProcess) -> None:
    async with client_for(tls_registry, authenticated=False) as client:
        with pytest.raises(
            AuthError, match=f"registry {tls_registry.host} requires authentication"
        ):
            await client.resolve(tls_registry.ref("private/app:v1"))


async def test_untrusted_certificate(tls_registry: RegistryProcess) -> None:
    # Configured explicitly (so not insecure), but without the test CA.
    config = RegistryConfig(hosts={tls_registry.host: HostConfig()})
    async with RegistryClient(config=config, retry=QUICK) as client:
        with pytest.raises(
            RegistryError, match=f"TLS certificate of registry {tls_registry.host} is not trusted"
        ):
            await client.resolve(tls_registry.ref("private/app:v1"))


async def test_loopback_default_accepts_the_certificate(tls_registry: RegistryProcess) -> None:
    # No configuration: loopback registries are insecure by default (HTTPS, unverified).
    creds = StaticCredentials({tls_registry.host: tls_registry.credentials()})
    async with RegistryClient(credentials=creds, retry=QUICK) as client:
        await push_and_pull(client, tls_registry.ref("private/default:v1"))


async def test_credentials_from_docker_config(
    tls_registry: RegistryProcess, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    f"https://{tls_registry.host}": {
                        "auth": base64.b64encode(b"alice:wonderland").decode()
                    }
                }
            }
        )
    )
    provider = DockerConfigCredentials(env={"DOCKER_CONFIG": str(tmp_path)})
    async with RegistryClient(
        config=tls_registry.registry_config(), credentials=provider, retry=QUICK
    ) as client:
        await push_and_pull(client, tls_registry.ref("private/dockercfg:v1"))


# -- the token flow --------------------------------------------------------------------


async def test_token_flow_push_and_pull(token_registry: RegistryProcess) -> None:
    server = token_registry.token_server
    assert server is not None
    server.requests.clear()
    async with client_for(token_registry) as client:
        await push_and_pull(client, token_registry.ref("team/app:v1"))
        fetched = client.statistics().tokens_fetched
    pushes = [r for r in server.requests if "repository:team/app:pull,push" in r.scopes]
    assert pushes
    assert all(r.account == "alice" and r.status == 200 for r in server.requests)
    # Tokens are cached per scope: one for the push, one for the pull.
    assert fetched == len(server.requests) <= 2
    info = await skopeo_inspect_json(token_registry, "team/app:v1")
    assert info["Name"] == token_registry.ref("team/app")


async def test_token_flow_anonymous(token_registry: RegistryProcess) -> None:
    async with client_for(token_registry) as client:
        await push_and_pull(client, token_registry.ref("team/public:v1"))
    async with client_for(token_registry, authenticated=False) as anonymous:
        resolved = await anonymous.resolve(
            token_registry.ref("team/public:v1"), platform=Platform.parse("linux/amd64")
        )
        assert resolved.config.architecture == "amd64"
        image = build_image([{"x": "y"}])
        with pytest.raises(AuthError, match=f"registry {token_registry.host}"):
            await anonymous.push_image(
                token_registry.ref("team/public:v2"),
                manifest=image.manifest_bytes,
                media_type=image.media_type,
                blobs=image.blobs,
            )


async def test_token_flow_wrong_password(token_registry: RegistryProcess) -> None:
    creds = StaticCredentials({token_registry.host: Credentials(username="alice", password="no")})
    async with RegistryClient(
        config=token_registry.registry_config(), credentials=creds, retry=QUICK
    ) as client:
        with pytest.raises(
            AuthError, match=f"authentication to registry {token_registry.host} failed"
        ):
            await client.resolve(token_registry.ref("team/app:v1"))


async def test_token_flow_identity_token(token_registry: RegistryProcess) -> None:
    server = token_registry.token_server
    assert server is not None
    server.requests.clear()
    creds = StaticCredentials({token_registry.host: Credentials(identity_token="alice-refresh")})
    async with RegistryClient(
        config=token_registry.registry_config(), credentials=creds, retry=QUICK
    ) as client:
        await push_and_pull(client, token_registry.ref("team/oauth:v1"))
    assert {r.method for r in server.requests} == {"POST"}
    assert {r.account for r in server.requests} == {"alice"}


async def test_token_flow_cross_repository_mount(token_registry: RegistryProcess) -> None:
    server = token_registry.token_server
    assert server is not None
    image = build_image([{"base": "layer"}])
    async with client_for(token_registry) as client:
        await client.push_image(
            token_registry.ref("team/base:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
        )
        server.requests.clear()
        await client.push_image(
            token_registry.ref("team/derived:v1"),
            manifest=image.manifest_bytes,
            media_type=image.media_type,
            blobs=image.blobs,
            mount_from=[Reference.parse(token_registry.ref("team/base"))],
        )
        assert client.statistics().blobs_mounted == len(image.blobs)
    scopes = {scope for r in server.requests for scope in r.scopes}
    assert {"repository:team/derived:pull,push", "repository:team/base:pull"} <= scopes


# -- mutual TLS ------------------------------------------------------------------------


async def test_client_certificate(tmp_path: Path) -> None:
    from .conftest import _need_registry_tools

    _need_registry_tools()
    with start_registry(tmp_path / "mtls", tls=True, client_certs=True) as mtls:
        async with RegistryClient(config=mtls.registry_config(), retry=QUICK) as client:
            await push_and_pull(client, mtls.ref("mtls/app:v1"))
        without = mtls.registry_config(client_cert=False)
        async with RegistryClient(config=without, retry=QUICK) as client:
            with pytest.raises(RegistryError, match=f"registry {mtls.host}"):
                await client.resolve(mtls.ref("mtls/app:v1"))
