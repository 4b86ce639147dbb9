"""Where a ``type=s3`` cache's credentials come from, against moto's S3 and STS on
loopback with signatures checked (``reset-auth``): a profile assuming a role (STS
AssumeRole, signed), web identity (STS AssumeRoleWithWebIdentity), ``credential_process``,
a container credentials endpoint and EC2 instance metadata (IMDSv2) served by small
loopback servers — never 169.254.169.254 —, credentials fetched again before they
expire, and a daemon build whose client resolved them (as buildx does). The IAM users
that sign have no S3 permission of their own where a role is assumed: a cache written
proves the role's credentials signed it."""

from __future__ import annotations

import asyncio
import datetime
import json
import stat
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from dockyard.client import Client
from dockyard.core import AuthError
from dockyard.engine import parse_cache_export, parse_cache_import
from dockyard.remotecache import AwsCredentials, CachedCredentials, S3Client
from dockyard.remotecache._awscreds import InstanceMetadata
from dockyard.testing.registry import RegistryProcess
from tests.integration.cli.conftest import _no_daemon_from_the_environment
from tests.integration.daemon.conftest import (
    DaemonProcess,
    daemon,
    daemon_config,
    running,
    socket_dir,
)

from .conftest import build, write_context
from .test_s3_cache import REGION, S3Server, keys, s3

__all__ = [
    "_no_daemon_from_the_environment",
    "daemon",
    "daemon_config",
    "running",
    "s3",
    "socket_dir",
]

S3_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
ASSUME = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
}


class Iam:
    """Users, keys and roles in moto's IAM (made while it does not check signatures)."""

    def __init__(self, s3: S3Server) -> None:
        import boto3  # type: ignore[import-untyped]

        self.client = boto3.client(
            "iam",
            endpoint_url=s3.endpoint,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )

    def user(self, name: str, policy: dict[str, Any]) -> tuple[str, str]:
        self.client.create_user(UserName=name)
        self.client.put_user_policy(
            UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy)
        )
        made = self.client.create_access_key(UserName=name)["AccessKey"]
        return made["AccessKeyId"], made["SecretAccessKey"]

    def role(self, name: str) -> str:
        arn: str = self.client.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST)
        )["Role"]["Arn"]
        self.client.put_role_policy(
            RoleName=name, PolicyName="s3", PolicyDocument=json.dumps(S3_ALL)
        )
        return arn


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean AWS environment: no keys, empty config files of the test's own."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "aws"
    home.mkdir()
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    return home


def attrs(s3: S3Server, bucket: str, extra: str = "") -> str:
    """A cache without credentials of its own."""
    return (
        f"type=s3,bucket={bucket},region={REGION},endpoint_url={s3.endpoint},"
        f"use_path_style=true{extra}"
    )


async def export_then_import(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server, bucket: str
) -> None:
    """A build writes the cache, a fresh state dir reads it: every RUN cached."""
    context = write_context(tmp_path / "ctx", base)
    first = await build(
        tmp_path / "a",
        registry,
        context,
        cache_to=(parse_cache_export(attrs(s3, bucket, ",mode=max")),),
    )
    assert not first.warnings(), first.warnings()
    again = await build(
        tmp_path / "b", registry, context, cache_from=(parse_cache_import(attrs(s3, bucket)),)
    )
    assert not again.warnings(), again.warnings()
    assert list(again.runs().values()) == [False, False], again.statuses()


class Loopback:
    """A small HTTP server on 127.0.0.1 in a thread; ``handle(method, path, headers)``
    → (status, body). Every request is recorded."""

    def __init__(self, handle: Callable[[str, str, dict[str, str]], tuple[int, bytes]]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers))
                status, body = handle(self.command, self.path, headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def expiry(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def loopbacks() -> Iterator[list[Loopback]]:
    made: list[Loopback] = []
    yield made
    for server in made:
        server.close()


async def test_a_profile_assuming_a_role(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server, aws_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    iam = Iam(s3)
    key, secret = iam.user("assumer", ASSUME)  # may assume roles, not touch S3
    role = iam.role("cache-writer")
    bucket = await s3.bucket("creds-assume")
    (aws_env / "credentials").write_text(
        f"[base]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    )
    (aws_env / "config").write_text(f"[profile cache]\nrole_arn = {role}\nsource_profile = base\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3.endpoint)
    monkeypatch.setenv("AWS_PROFILE", "base")
    context = write_context(tmp_path / "ctx", base)
    s3.set_auth("0")
    try:
        # the base profile's own keys: STS only, S3 refuses them
        with pytest.raises(AuthError, match="access denied") as caught:
            await build(
                tmp_path / "refused", registry, context,
                cache_to=(parse_cache_export(attrs(s3, bucket)),),
            )  # fmt: skip
        assert secret not in str(caught.value)
        monkeypatch.setenv("AWS_PROFILE", "cache")
        await export_then_import(tmp_path, registry, base, s3, bucket)
    finally:
        s3.set_auth("inf")
    assert "manifests/buildkit" in await keys(s3, bucket)


async def test_web_identity_from_the_environment(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server, aws_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    role = Iam(s3).role("web-writer")
    bucket = await s3.bucket("creds-web")
    token = tmp_path / "web-token"
    token.write_text("eyJ.web-identity.token\n")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", role)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3.endpoint)
    context = write_context(tmp_path / "ctx", base)
    # moto's server fails an unsigned request while it checks signatures (AWS takes
    # AssumeRoleWithWebIdentity unsigned): the first request, the STS call, is let
    # through; every S3 request after it is checked
    s3.set_auth("1")
    try:
        built = await build(
            tmp_path / "a", registry, context, cache_to=(parse_cache_export(attrs(s3, bucket)),)
        )
        assert not built.warnings(), built.warnings()
    finally:
        s3.set_auth("inf")
    assert "manifests/buildkit" in await keys(s3, bucket)


async def test_credential_process(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server, aws_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key, secret = Iam(s3).user("process-user", S3_ALL)
    bucket = await s3.bucket("creds-process")
    program = tmp_path / "creds.sh"
    answer = {"Version": 1, "AccessKeyId": key, "SecretAccessKey": secret}
    program.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    (aws_env / "config").write_text(f"[default]\ncredential_process = {program}\n")
    s3.set_auth("0")
    try:
        await export_then_import(tmp_path, registry, base, s3, bucket)
    finally:
        s3.set_auth("inf")


async def test_container_credentials_endpoint(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server, aws_env: Path,
    monkeypatch: pytest.MonkeyPatch, loopbacks: list[Loopback],
) -> None:  # fmt: skip
    key, secret = Iam(s3).user("container-user", S3_ALL)
    bucket = await s3.bucket("creds-container")

    def handle(method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if headers.get("authorization") != "pod-identity-token":
            return 401, b'{"code": "Unauthorized", "message": "bad token"}'
        document = {
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            "Token": "",
            "Expiration": expiry(3600),
        }
        return 200, json.dumps(document).encode()

    server = Loopback(handle)
    loopbacks.append(server)
    token = tmp_path / "eks-token"
    token.write_text("pod-identity-token\n")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{server.url}/v1/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
    s3.set_auth("0")
    try:
        await export_then_import(tmp_path, registry, base, s3, bucket)
    finally:
        s3.set_auth("inf")
    assert server.requests
    assert all(path == "/v1/credentials" for _, path, _ in server.requests)


class Imds:
    """IMDSv2 on loopback: a token by PUT, required by every GET; the role ``builder``'s
    credentials are ``users`` in turn, each valid for ``lifetime`` seconds."""

    def __init__(self, users: list[tuple[str, str]], lifetime: float = 3600) -> None:
        self.users = users
        self.lifetime = lifetime
        self.issued = 0
        self.server = Loopback(self.handle)

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if path == "/latest/api/token":
            if method != "PUT" or "x-aws-ec2-metadata-token-ttl-seconds" not in headers:
                return 400, b""
            return 200, b"imds-token-abc"
        if headers.get("x-aws-ec2-metadata-token") != "imds-token-abc":
            return 401, b""
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, b"builder"
        if path == "/latest/meta-data/iam/security-credentials/builder":
            key, secret = self.users[self.issued % len(self.users)]
            self.issued += 1
            document = {
                "Code": "Success",
                "AccessKeyId": key,
                "SecretAccessKey": secret,
                "Token": "",
                "Expiration": expiry(self.lifetime),
            }
            return 200, json.dumps(document).encode()
        return 404, b""


async def test_instance_metadata_v2(
    tmp_path: Path, registry: RegistryProcess, base: str, s3: S3Server, aws_env: Path,
    monkeypatch: pytest.MonkeyPatch, loopbacks: list[Loopback],
) -> None:  # fmt: skip
    imds = Imds([Iam(s3).user("instance-user", S3_ALL)])
    loopbacks.append(imds.server)
    bucket = await s3.bucket("creds-imds")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    s3.set_auth("0")
    try:
        await export_then_import(tmp_path, registry, base, s3, bucket)
    finally:
        s3.set_auth("inf")
    methods = [(m, p) for m, p, _ in imds.server.requests]
    assert methods[:3] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", "/latest/meta-data/iam/security-credentials/builder"),
    ]


async def test_credentials_are_fetched_again_before_they_expire(
    s3: S3Server, loopbacks: list[Loopback]
) -> None:
    iam = Iam(s3)
    users = [iam.user("rotating-1", S3_ALL), iam.user("rotating-2", S3_ALL)]
    imds = Imds(users, lifetime=4)  # refreshed at half their lifetime: after ~2 s
    loopbacks.append(imds.server)
    bucket = await s3.bucket("creds-refresh")
    credentials = CachedCredentials(InstanceMetadata(endpoint=imds.server.url))
    s3.set_auth("0")
    try:
        async with S3Client(
            bucket=bucket,
            region=REGION,
            credentials=credentials,
            endpoint_url=s3.endpoint,
            use_path_style=True,
            backoff=0.0,
        ) as client:
            await client.put_bytes("one", b"1")
            await client.put_bytes("two", b"2")
            assert imds.issued == 1
            await asyncio.sleep(2.5)  # a long build: the first ones near their expiry
            await client.put_bytes("three", b"3")
            assert imds.issued == 2  # new ones, from the second user: accepted by S3
            assert await client.get_bytes("one", limit=10) == b"1"
    finally:
        s3.set_auth("inf")


async def test_through_the_daemon_the_client_resolves_the_chain(
    tmp_path: Path,
    running: DaemonProcess,
    s3: S3Server,
    aws_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    iam = Iam(s3)
    key, secret = iam.user("daemon-assumer", ASSUME)
    role = iam.role("daemon-writer")
    bucket = await s3.bucket("creds-daemon")
    # the client's profile assumes the role (STS, from the client); the daemon, with no
    # credentials of its own, gets the role's temporary keys in the attributes
    (aws_env / "config").write_text(
        f"[profile ci]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        f"role_arn = {role}\nsource_profile = ci\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "ci")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", s3.endpoint)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN head -c 16 /dev/urandom | od -x > /random.txt\n"
    )
    spec = attrs(s3, bucket, ",name=d")
    addr = f"unix://{running.socket}"
    import dockyard.remotecache
    from dockyard.remotecache import _awscreds

    sent: list[AwsCredentials | None] = []

    async def recorded(*args: Any, **kwargs: Any) -> AwsCredentials | None:
        found = await _awscreds.client_credentials(*args, **kwargs)
        sent.append(found)
        return found

    monkeypatch.setattr(dockyard.remotecache, "client_credentials", recorded, raising=False)

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, list(args))

    s3.set_auth("0")
    try:
        code = await cli(
            "--addr", addr, "build", "--progress", "plain",
            "--cache-to", spec + ",mode=max", "-o", str(tmp_path / "first"), str(ctx),
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 0, err
        async with Client.connect(addr) as client:
            await client.prune(all=True)
        code = await cli(
            "--addr", addr, "build", "--progress", "plain",
            "--cache-from", spec, "-o", str(tmp_path / "again"), str(ctx),
        )  # fmt: skip
        err += capsys.readouterr().err
        assert code == 0, err
        assert "CACHED" in err
    finally:
        s3.set_auth("inf")
    assert (tmp_path / "again/random.txt").read_text() == (
        tmp_path / "first/random.txt"
    ).read_text()
    assert len(sent) == 2  # once per build
    temporary = [c for c in sent if c is not None]
    assert len(temporary) == 2
    assert all(c.session_token and c.access_key_id != key for c in temporary)  # the role's
    log = running.log_text()
    for text in (secret, *(c.secret_access_key for c in temporary),
                 *(c.session_token for c in temporary)):  # fmt: skip
        assert text not in err
        assert text not in log
