"""The AWS SDK's default credentials chain, by hand (remotecache._awscreds): each
provider on its own (STS, the container endpoint and instance metadata answered by
httpx mock transports: nothing leaves the process), the order in which the chain picks
them, refreshes before expiry, and secrets kept out of messages and reprs."""

from __future__ import annotations

import json
import stat
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dockyard.core import AuthError, ConfigError
from dockyard.remotecache import AwsCredentials
from dockyard.remotecache._awscreds import (
    AssumeRole,
    CachedCredentials,
    ContainerCredentials,
    InstanceMetadata,
    ProcessCredentials,
    StaticCredentials,
    Sts,
    WebIdentity,
    default_credentials,
    with_client_credentials,
)

SECRET = "wJalrXUtnFEMI-unit-secret"
TOKEN = "session-token-unit-0123"
WEB_TOKEN = "eyJ-web-identity-token"


def files(tmp_path: Path, *, config: str = "", credentials: str = "") -> dict[str, str]:
    """An environment whose AWS files are these (and nothing else of the host's)."""
    (tmp_path / "config").write_text(config)
    (tmp_path / "credentials").write_text(credentials)
    return {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def sts_answer(action: str, key: str, expires: str = "2099-01-01T00:00:00Z") -> bytes:
    return (
        f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<{action}Result><Credentials><AccessKeyId>{key}</AccessKeyId>"
        f"<SecretAccessKey>{key}-secret</SecretAccessKey><SessionToken>{key}-token"
        f"</SessionToken><Expiration>{expires}</Expiration></Credentials></{action}Result>"
        f"</{action}Response>"
    ).encode()


class FakeSts:
    """STS on a mock transport: each request recorded (form, headers); AssumeRole
    answers ``ROLE-<n>`` keys, AssumeRoleWithWebIdentity ``WEB-<n>``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], httpx.Headers]] = []

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            form = dict(urllib.parse.parse_qsl(request.content.decode()))
            self.calls.append((str(request.url), form, request.headers))
            action = form["Action"]
            if form.get("RoleArn", "").endswith("/denied"):
                return httpx.Response(
                    403,
                    content=b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>not "
                    b"allowed</Message></Error></ErrorResponse>",
                )
            prefix = "ROLE" if action == "AssumeRole" else "WEB"
            return httpx.Response(200, content=sts_answer(action, f"{prefix}-{len(self.calls)}"))

        return httpx.MockTransport(handle)


# -- the order of the chain -------------------------------------------------------------


def test_the_environment_comes_first(tmp_path: Path) -> None:
    env = files(
        tmp_path, credentials="[default]\naws_access_key_id=FILE\naws_secret_access_key=f\n"
    )
    env |= {"AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_PROFILE": "x"}
    env["AWS_SESSION_TOKEN"] = TOKEN
    provider = default_credentials(env)
    assert isinstance(provider, StaticCredentials)  # before a profile, even a named one
    assert provider.credentials == AwsCredentials(
        access_key_id="ENV", secret_access_key=SECRET, session_token=TOKEN
    )
    other = default_credentials(
        files(tmp_path) | {"AWS_ACCESS_KEY": "OLD", "AWS_SECRET_KEY": SECRET}
    )  # the SDK's older spellings
    assert isinstance(other, StaticCredentials)
    assert other.credentials.access_key_id == "OLD"
    half = default_credentials(files(tmp_path) | {"AWS_ACCESS_KEY_ID": "ENV"})
    assert not isinstance(half, StaticCredentials)  # a key without its secret: not used


def test_web_identity_from_the_environment_before_a_profile(tmp_path: Path) -> None:
    env = files(tmp_path, credentials="[default]\naws_access_key_id=F\naws_secret_access_key=f\n")
    env |= {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token"),
        "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/web",
        "AWS_ROLE_SESSION_NAME": "ci",
    }
    provider = default_credentials(env, region="eu-west-1")
    assert isinstance(provider, WebIdentity)
    assert provider.role_arn.endswith("role/web")
    assert provider.session_name == "ci"
    assert provider.sts.url() == "https://sts.eu-west-1.amazonaws.com"
    del env["AWS_ROLE_ARN"]
    with pytest.raises(ConfigError, match="without AWS_ROLE_ARN"):
        default_credentials(env)


def test_profiles_from_both_files(tmp_path: Path) -> None:
    config = (
        "[default]\nregion = eu-central-1\n"
        "[profile ci]\naws_access_key_id = CONFIG\naws_secret_access_key = c\n"
        "[profile both]\naws_access_key_id = FROMCONFIG\naws_secret_access_key = c\n"
        "[notaprofile]\naws_access_key_id = NOPE\naws_secret_access_key = n\n"
    )
    credentials = (
        "[default]\naws_access_key_id = DEF\naws_secret_access_key = d\n"
        "[both]\naws_access_key_id = FROMCREDS\naws_secret_access_key = c2\n"
    )
    env = files(tmp_path, config=config, credentials=credentials)

    def key(**more: str) -> str:
        provider = default_credentials(env | more)
        assert isinstance(provider, StaticCredentials)
        return provider.credentials.access_key_id

    assert key() == "DEF"
    assert key(AWS_PROFILE="ci") == "CONFIG"  # [profile ci] of the config file
    assert key(AWS_PROFILE="both") == "FROMCREDS"  # the credentials file wins
    assert key(AWS_DEFAULT_PROFILE="ci") == "CONFIG"
    with pytest.raises(ConfigError, match="AWS_PROFILE='notaprofile': no such profile"):
        default_credentials(env | {"AWS_PROFILE": "notaprofile"})  # [x] in config: not one


def test_a_missing_default_profile_falls_through_to_the_instance(tmp_path: Path) -> None:
    env = files(tmp_path)
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:9"
    del env["AWS_EC2_METADATA_DISABLED"]
    provider = default_credentials(env)
    assert isinstance(provider, InstanceMetadata)
    assert provider.endpoint == "http://127.0.0.1:9"
    # a profile without credentials of its own: the container, then the instance
    env2 = files(tmp_path, config="[default]\nregion=us-east-1\n")
    env2["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:9/creds"
    assert isinstance(default_credentials(env2), ContainerCredentials)


async def test_nothing_found_says_where_it_looked(tmp_path: Path) -> None:
    provider = default_credentials(files(tmp_path))
    with pytest.raises(AuthError, match="no AWS credentials") as caught:
        await provider.retrieve()
    assert "AWS_ACCESS_KEY_ID" in str(caught.value)


def test_an_ini_error_names_the_line_not_its_text(tmp_path: Path) -> None:
    env = files(tmp_path, credentials=f"[default]\naws_access_key_id=A\n{SECRET}\n")
    with pytest.raises(ConfigError, match="line 3") as caught:
        default_credentials(env)
    assert SECRET not in str(caught.value)


# -- assume role chains -------------------------------------------------------------------


def test_source_profile_chains(tmp_path: Path) -> None:
    config = (
        "[profile base]\naws_access_key_id = BASE\naws_secret_access_key = b\n"
        "[profile mid]\nrole_arn = arn:aws:iam::1:role/mid\nsource_profile = base\n"
        "[profile top]\nrole_arn = arn:aws:iam::1:role/top\nsource_profile = mid\n"
        "external_id = ext\nduration_seconds = 1800\nrole_session_name = s\n"
        "[profile self]\naws_access_key_id = SELF\naws_secret_access_key = s\n"
        "role_arn = arn:aws:iam::1:role/self\nsource_profile = self\n"
        "[profile loop1]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = loop2\n"
        "[profile loop2]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = loop1\n"
        "[profile orphan]\nrole_arn = arn:aws:iam::1:role/o\nsource_profile = nobody\n"
        "[profile empty]\nregion = us-east-1\n"
        "[profile useless]\nrole_arn = arn:aws:iam::1:role/u\nsource_profile = empty\n"
        "[profile mfa]\nrole_arn = arn:aws:iam::1:role/m\nsource_profile = base\n"
        "mfa_serial = arn:aws:iam::1:mfa/me\n"
        "[profile two]\nrole_arn = arn:aws:iam::1:role/t\nsource_profile = base\n"
        "credential_process = /bin/true\n"
    )
    env = files(tmp_path, config=config)
    top = default_credentials(env | {"AWS_PROFILE": "top"}, region="us-west-2")
    assert isinstance(top, AssumeRole)
    assert (top.role_arn, top.external_id, top.duration, top.session_name) == (
        "arn:aws:iam::1:role/top",
        "ext",
        1800,
        "s",
    )
    mid = top.source
    assert isinstance(mid, AssumeRole)
    assert mid.role_arn == "arn:aws:iam::1:role/mid"
    assert mid.duration == 900  # the SDK's default
    assert isinstance(mid.source, StaticCredentials)
    assert mid.source.credentials.access_key_id == "BASE"

    own = default_credentials(env | {"AWS_PROFILE": "self"})  # a profile naming itself
    assert isinstance(own, AssumeRole)
    assert isinstance(own.source, StaticCredentials)
    assert own.source.credentials.access_key_id == "SELF"

    with pytest.raises(ConfigError, match="loop"):
        default_credentials(env | {"AWS_PROFILE": "loop1"})
    with pytest.raises(ConfigError, match="'nobody' does not exist"):
        default_credentials(env | {"AWS_PROFILE": "orphan"})
    with pytest.raises(ConfigError, match="'empty' has no credentials"):
        default_credentials(env | {"AWS_PROFILE": "useless"})
    with pytest.raises(ConfigError, match="MFA"):
        default_credentials(env | {"AWS_PROFILE": "mfa"})
    with pytest.raises(ConfigError, match="only one kind"):  # as the SDK refuses it
        default_credentials(env | {"AWS_PROFILE": "two"})


def test_a_long_source_profile_chain_is_a_config_error(tmp_path: Path) -> None:
    # each source_profile was followed by recursion: 2000 profiles raised RecursionError
    # (a traceback); a chain of roles that long is no configuration STS would serve
    lines = ["[profile p0]\naws_access_key_id = K\naws_secret_access_key = s\n"]
    for i in range(1, 2000):
        lines.append(f"[profile p{i}]\nrole_arn = arn:aws:iam::1:role/r{i}\n")
        lines.append(f"source_profile = p{i - 1}\n")
    env = files(tmp_path, config="".join(lines))
    with pytest.raises(ConfigError, match=r"'p1999': a chain of more than 32 source_profile"):
        default_credentials(env | {"AWS_PROFILE": "p1999"})
    assert isinstance(default_credentials(env | {"AWS_PROFILE": "p32"}), AssumeRole)


async def test_assume_role_signs_with_the_source_and_reads_the_answer(tmp_path: Path) -> None:
    sts = FakeSts()
    config = (
        "[profile base]\naws_access_key_id = BASE\naws_secret_access_key = " + SECRET + "\n"
        "[profile top]\nrole_arn = arn:aws:iam::1:role/top\nsource_profile = base\n"
        "external_id = ext\nregion = ap-south-1\n"
    )
    env = files(tmp_path, config=config) | {"AWS_PROFILE": "top"}
    provider = default_credentials(env, transport=sts.transport())
    found = await provider.retrieve()
    assert found.access_key_id == "ROLE-1"
    assert found.secret_access_key == "ROLE-1-secret"
    assert found.session_token == "ROLE-1-token"
    assert found.expires_at == 4070908800.0  # 2099-01-01
    url, form, headers = sts.calls[0]
    assert url == "https://sts.ap-south-1.amazonaws.com"  # the profile's region
    assert form["Action"] == "AssumeRole"
    assert form["RoleArn"] == "arn:aws:iam::1:role/top"
    assert form["ExternalId"] == "ext"
    assert form["DurationSeconds"] == "900"
    assert form["RoleSessionName"]
    authorization = headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=BASE/")
    assert "/ap-south-1/sts/aws4_request" in authorization
    assert SECRET not in authorization
    # the cache's region (BuildKit gives the SDK its region) and an endpoint override
    provider = default_credentials(
        env | {"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:1/sts/"},
        region="eu-west-3",
        transport=sts.transport(),
    )
    await provider.retrieve()
    assert sts.calls[1][0] == "http://127.0.0.1:1/sts/"
    assert "/eu-west-3/sts/aws4_request" in sts.calls[1][2]["authorization"]


async def test_sts_refusal_is_an_auth_error_without_secrets(tmp_path: Path) -> None:
    sts = FakeSts()
    provider = AssumeRole(
        source=StaticCredentials(
            credentials=AwsCredentials(access_key_id="K", secret_access_key=SECRET),
            source="test",
        ),
        role_arn="arn:aws:iam::1:role/denied",
        sts=Sts(region="us-east-1", transport=sts.transport()),
    )
    with pytest.raises(AuthError, match="AccessDenied: not allowed") as caught:
        await provider.retrieve()
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(provider)


async def test_web_identity_reads_the_token_at_each_call(tmp_path: Path) -> None:
    sts = FakeSts()
    token_file = tmp_path / "token"
    token_file.write_text(WEB_TOKEN + "\n")
    provider = WebIdentity(
        token_file=token_file,
        role_arn="arn:aws:iam::1:role/web",
        sts=Sts(region="us-east-1", transport=sts.transport()),
    )
    assert (await provider.retrieve()).access_key_id == "WEB-1"
    token_file.write_text("rotated")
    await provider.retrieve()
    (_, first, headers), (_, second, _) = sts.calls
    assert first["Action"] == "AssumeRoleWithWebIdentity"
    assert first["WebIdentityToken"] == WEB_TOKEN
    assert second["WebIdentityToken"] == "rotated"
    assert "authorization" not in headers  # unsigned, as the SDK sends it
    token_file.unlink()
    with pytest.raises(AuthError, match="cannot read the token file") as caught:
        await provider.retrieve()
    assert WEB_TOKEN not in str(caught.value)
    # from a profile
    env = files(
        tmp_path,
        config=f"[default]\nweb_identity_token_file = {token_file}\nrole_arn = arn:r\n",
    )
    assert isinstance(default_credentials(env), WebIdentity)


# -- credential_process -------------------------------------------------------------------


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_credential_process(tmp_path: Path) -> None:
    answer = {
        "Version": 1,
        "AccessKeyId": "PROC",
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": "2099-01-01T00:00:00Z",
    }
    good = script(tmp_path, "good", f"cat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    env = files(tmp_path, config=f"[profile p]\ncredential_process = {good} --flag\n")
    provider = default_credentials(env | {"AWS_PROFILE": "p"})
    assert isinstance(provider, ProcessCredentials)
    found = await provider.retrieve()
    assert (found.access_key_id, found.secret_access_key, found.session_token) == (
        "PROC",
        SECRET,
        TOKEN,
    )
    assert found.expires_at == 4070908800.0
    assert SECRET not in repr(found)

    bad_version = script(tmp_path, "v2", f"echo '{json.dumps(answer | {'Version': 2})}'\n")
    with pytest.raises(AuthError, match="Version is not 1") as caught:
        await ProcessCredentials(command=str(bad_version), profile="p").retrieve()
    assert SECRET not in str(caught.value)
    failing = script(tmp_path, "fail", f"echo {SECRET}\necho 'token expired, log in' >&2\nexit 3\n")
    with pytest.raises(AuthError, match="status 3: token expired, log in") as caught:
        await ProcessCredentials(command=str(failing), profile="p").retrieve()
    assert SECRET not in str(caught.value)  # its standard output is never quoted
    pid_file = tmp_path / "child.pid"
    slow = script(tmp_path, "slow", f"sleep 30 &\necho $! > {pid_file}\nwait\n")
    started = time.monotonic()
    with pytest.raises(AuthError, match="no answer within"):
        await ProcessCredentials(command=str(slow), profile="p", timeout=0.5).retrieve()
    assert time.monotonic() - started < 10  # not held until its child ends
    child = int(pid_file.read_text())
    # ended with it (killed, then reaped by init: gone or a zombie for an instant)
    assert _gone(child)


async def test_credential_process_endless_output_is_cut(tmp_path: Path) -> None:
    # a program that writes without end (a broken script, `cat /dev/zero`) is ended once
    # its output passes the limit: it was read whole into memory until the timeout
    # (60 s at hundreds of MB/s) and only then measured
    endless = script(tmp_path, "endless", "while :; do printf '%08192d' 0; done\n")
    started = time.monotonic()
    with pytest.raises(AuthError, match="output larger than 65536 bytes"):
        await ProcessCredentials(command=str(endless), profile="p", timeout=20).retrieve()
    assert time.monotonic() - started < 10
    # a long standard error is kept by its end (its last line is quoted on a failure)
    answer = {"Version": 1, "AccessKeyId": "PROC", "SecretAccessKey": SECRET}
    noisy = script(
        tmp_path,
        "noisy",
        "i=0; while [ $i -lt 256 ]; do printf '%08192d\\n' $i >&2; i=$((i + 1)); done\n"
        f"echo '{json.dumps(answer)}'\necho 'the last words' >&2\n",
    )
    found = await ProcessCredentials(command=str(noisy), profile="p").retrieve()
    assert found.access_key_id == "PROC"
    failing = script(tmp_path, "noisy-fail", f"cat {noisy} | sh >/dev/null\nexit 4\n")
    with pytest.raises(AuthError, match=r"status 4: the last words$"):
        await ProcessCredentials(command=str(failing), profile="p").retrieve()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in "ZX"


# -- container credentials ----------------------------------------------------------------


def recording(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.MockTransport(handle), seen


def creds_json(key: str, token_key: str = "Token") -> dict[str, str]:
    return {
        "AccessKeyId": key,
        "SecretAccessKey": SECRET,
        token_key: TOKEN,
        "Expiration": "2099-01-01T00:00:00Z",
    }


async def test_container_credentials(tmp_path: Path) -> None:
    transport, seen = recording(lambda r: httpx.Response(200, json=creds_json("ECS")))
    env = files(tmp_path) | {
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/ignored",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "plain-token",
    }
    provider = default_credentials(env, transport=transport)
    assert isinstance(provider, ContainerCredentials)
    found = await provider.retrieve()
    assert (found.access_key_id, found.session_token) == ("ECS", TOKEN)
    # the relative URI wins, on the ECS agent's address (a mock: nothing is sent)
    assert str(seen[0].url) == "http://169.254.170.2/v2/credentials/abc"
    assert seen[0].headers["authorization"] == "plain-token"
    assert "plain-token" not in repr(provider)

    token_file = tmp_path / "eks-token"
    token_file.write_text("file-token\n")
    del env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = str(token_file)
    provider = default_credentials(env, transport=transport)
    await provider.retrieve()
    assert str(seen[1].url) == "http://127.0.0.1:9/ignored"
    assert seen[1].headers["authorization"] == "file-token"  # the file wins

    for refused in ("http://10.0.0.5/creds", "http://example.com/creds", "ftp://127.0.0.1/"):
        with pytest.raises(ConfigError, match="FULL_URI"):
            default_credentials(env | {"AWS_CONTAINER_CREDENTIALS_FULL_URI": refused})
    with pytest.raises(ConfigError, match="user or password") as caught:
        default_credentials(env | {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "ftp://u:pw-9@h/"})
    assert "pw-9" not in str(caught.value)
    for allowed in ("https://creds.example.com/x", "http://169.254.170.23/v1", "http://[::1]:8/"):
        assert isinstance(
            default_credentials(env | {"AWS_CONTAINER_CREDENTIALS_FULL_URI": allowed}),
            ContainerCredentials,
        )

    denied, _ = recording(
        lambda r: httpx.Response(403, json={"code": "Forbidden", "message": "bad token"})
    )
    with pytest.raises(AuthError, match="HTTP 403: Forbidden bad token") as refused_403:
        await ContainerCredentials(
            url="http://127.0.0.1:9/c", token="secret-token", transport=denied
        ).retrieve()
    assert "secret-token" not in str(refused_403.value)
    token_file.write_text("evil\r\nX-Injected: 1")
    with pytest.raises(AuthError, match="line break"):
        await provider.retrieve()


async def test_endpoint_tokens_a_header_cannot_carry() -> None:
    # an instance metadata session token or a container authorization token with a
    # non-ASCII character raised httpx's UnicodeEncodeError (a traceback)
    def imds(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/latest/api/token":
            return httpx.Response(200, content=b"tok\x80en")
        raise AssertionError("no request with the token")

    with pytest.raises(AuthError, match="an invalid session token"):
        await InstanceMetadata(
            endpoint="http://127.0.0.1:9", transport=httpx.MockTransport(imds)
        ).retrieve()
    unused, seen = recording(lambda r: httpx.Response(500))
    with pytest.raises(AuthError, match="authorization token holds a character") as caught:
        await ContainerCredentials(
            url="http://127.0.0.1:9/c", token="s\u00e9cret", transport=unused
        ).retrieve()
    assert "s\u00e9cret" not in str(caught.value)
    assert not seen


# -- instance metadata --------------------------------------------------------------------


class FakeImds:
    def __init__(self, *, tokens: bool = True, role: str = "builder") -> None:
        self.tokens = tokens
        self.role = role
        self.seen: list[httpx.Request] = []
        self.issued = 0

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            path = request.url.path
            if path == "/latest/api/token":
                if request.method != "PUT" or not self.tokens:
                    return httpx.Response(403 if not self.tokens else 405)
                assert request.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
                return httpx.Response(200, text="imds-session-token")
            if self.tokens and request.headers.get("x-aws-ec2-metadata-token") != (
                "imds-session-token"
            ):
                return httpx.Response(401)
            if path == "/latest/meta-data/iam/security-credentials/":
                return (
                    httpx.Response(200, text=f"{self.role}\n")
                    if self.role
                    else (httpx.Response(404))
                )
            if path == f"/latest/meta-data/iam/security-credentials/{self.role}":
                self.issued += 1
                return httpx.Response(
                    200, json={"Code": "Success", **creds_json(f"IMDS-{self.issued}")}
                )
            return httpx.Response(404)

        return httpx.MockTransport(handle)


async def test_instance_metadata_v2(tmp_path: Path) -> None:
    imds = FakeImds()
    env = files(tmp_path) | {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9/"}
    del env["AWS_EC2_METADATA_DISABLED"]
    provider = default_credentials(env, transport=imds.transport())
    found = await provider.retrieve()
    assert (found.access_key_id, found.session_token) == ("IMDS-1", TOKEN)
    assert [(r.method, r.url.path) for r in imds.seen] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", "/latest/meta-data/iam/security-credentials/builder"),
    ]
    assert all(str(r.url).startswith("http://127.0.0.1:9/") for r in imds.seen)
    assert "imds-session-token" not in repr(provider)

    v1 = FakeImds(tokens=False)
    assert (await InstanceMetadata(endpoint="http://127.0.0.1:9", transport=v1.transport())
            .retrieve()).access_key_id == "IMDS-1"  # fmt: skip
    with pytest.raises(AuthError, match="no session token"):
        await InstanceMetadata(
            endpoint="http://127.0.0.1:9",
            v1_disabled=True,
            transport=FakeImds(tokens=False).transport(),
        ).retrieve()
    with pytest.raises(AuthError, match="no IAM role"):
        await InstanceMetadata(
            endpoint="http://127.0.0.1:9", transport=FakeImds(role="").transport()
        ).retrieve()
    # the default address, or IPv6's (never reached here: a mock transport)
    env6 = files(tmp_path) | {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"}
    del env6["AWS_EC2_METADATA_DISABLED"]
    provider6 = default_credentials(env6)
    assert isinstance(provider6, InstanceMetadata)
    assert provider6.endpoint == "http://[fd00:ec2::254]"
    with pytest.raises(ConfigError, match="AWS_EC2_METADATA_SERVICE_ENDPOINT"):
        default_credentials(env | {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://u:p@127.0.0.1/"})


def test_credential_source(tmp_path: Path) -> None:
    config = (
        "[profile env]\nrole_arn = arn:r\ncredential_source = Environment\n"
        "[profile ec2]\nrole_arn = arn:r\ncredential_source = Ec2InstanceMetadata\n"
        "[profile ecs]\nrole_arn = arn:r\ncredential_source = EcsContainer\n"
        "[profile odd]\nrole_arn = arn:r\ncredential_source = Somewhere\n"
    )
    env = files(tmp_path, config=config)
    del env["AWS_EC2_METADATA_DISABLED"]
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:9"
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://127.0.0.1:8/c"
    for name, kind in (("ec2", InstanceMetadata), ("ecs", ContainerCredentials)):
        provider = default_credentials(env | {"AWS_PROFILE": name})
        assert isinstance(provider, AssumeRole)
        assert isinstance(provider.source, kind)
    with pytest.raises(ConfigError, match="Environment has no credentials"):
        default_credentials(env | {"AWS_PROFILE": "env"})
    with pytest.raises(ConfigError, match="Somewhere"):
        default_credentials(env | {"AWS_PROFILE": "odd"})


def test_sso_is_refused_clearly(tmp_path: Path) -> None:
    env = files(
        tmp_path, config="[default]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = r\n"
    )
    with pytest.raises(ConfigError, match="SSO"):
        default_credentials(env)


# -- refresh ------------------------------------------------------------------------------


class Counting:
    def __init__(self, lifetime: float, clock: Callable[[], float]) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self.calls = 0
        self.fail = False

    def describe(self) -> str:
        return "counting"

    async def retrieve(self) -> AwsCredentials:
        if self.fail:
            raise AuthError("refresh failed")
        self.calls += 1
        return AwsCredentials(
            access_key_id=f"K{self.calls}",
            secret_access_key=SECRET,
            expires_at=self.clock() + self.lifetime,
        )


async def test_cached_credentials_refresh_before_expiry() -> None:
    now = [1000.0]
    source = Counting(3600, lambda: now[0])
    cache = CachedCredentials(source, clock=lambda: now[0])
    assert (await cache.get()).access_key_id == "K1"
    now[0] += 3000
    assert (await cache.get()).access_key_id == "K1"  # 10 min left
    now[0] += 301  # less than 5 min left: fetched again before they expire
    assert (await cache.get()).access_key_id == "K2"
    # short-lived ones: at half their lifetime
    short = Counting(60, lambda: now[0])
    cache = CachedCredentials(short, clock=lambda: now[0])
    await cache.get()
    now[0] += 29
    assert (await cache.get()).access_key_id == "K1"
    now[0] += 2
    assert (await cache.get()).access_key_id == "K2"
    # a failed refresh keeps the ones not yet expired, then fails
    short.fail = True
    now[0] += 45
    assert (await cache.get()).access_key_id == "K2"
    now[0] += 20
    with pytest.raises(AuthError, match="refresh failed"):
        await cache.get()
    # fixed credentials are never fetched again
    fixed = Counting(0, lambda: now[0])
    fixed_cache = CachedCredentials(
        StaticCredentials(
            credentials=AwsCredentials(access_key_id="S", secret_access_key=SECRET), source="t"
        )
    )
    for _ in range(3):
        await fixed_cache.get()
    assert fixed.calls == 0
    assert fixed_cache.fetches == 1
    assert SECRET not in repr(fixed_cache)


async def test_the_s3_client_signs_with_refreshed_credentials() -> None:
    from dockyard.remotecache import S3Client

    now = [1000.0]
    source = Counting(120, lambda: now[0])
    used: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        used.append(request.headers["authorization"].split("Credential=")[1].split("/")[0])
        return httpx.Response(200)

    async with S3Client(
        bucket="b",
        region="us-east-1",
        credentials=CachedCredentials(source, clock=lambda: now[0]),
        endpoint_url="http://127.0.0.1:9",
        use_path_style=True,
        transport=httpx.MockTransport(handle),
    ) as s3:
        await s3.put_bytes("a", b"1")
        now[0] += 30
        await s3.put_bytes("b", b"2")
        now[0] += 40  # past half their lifetime: new ones before the next request
        await s3.put_bytes("c", b"3")
    assert used == ["K1", "K1", "K2"]

    source.fail = True
    now[0] += 1000
    async with S3Client(
        bucket="b",
        region="us-east-1",
        credentials=CachedCredentials(source, clock=lambda: now[0]),
        endpoint_url="http://127.0.0.1:9",
        use_path_style=True,
        transport=httpx.MockTransport(handle),
    ) as s3:
        with pytest.raises(AuthError, match=r"s3 PUT s3://b/d: refresh failed"):
            await s3.put_bytes("d", b"4")


# -- the client forwards what the chain finds ---------------------------------------------


async def test_a_client_forwards_the_chains_credentials_as_buildx_does(tmp_path: Path) -> None:
    sts = FakeSts()
    config = (
        "[profile base]\naws_access_key_id = BASE\naws_secret_access_key = b\n"
        "[default]\nrole_arn = arn:aws:iam::1:role/top\nsource_profile = base\n"
    )
    env = files(tmp_path, config=config)
    attrs = {"bucket": "b", "region": "sa-east-1"}
    out = await with_client_credentials(attrs, env, transport=sts.transport())
    assert out == {
        **attrs,
        "access_key_id": "ROLE-1",
        "secret_access_key": "ROLE-1-secret",
        "session_token": "ROLE-1-token",
    }
    # STS in the configured region, else the cache's
    assert sts.calls[0][0] == "https://sts.sa-east-1.amazonaws.com"
    await with_client_credentials(
        attrs, env | {"AWS_REGION": "us-east-2"}, transport=sts.transport()
    )
    assert sts.calls[1][0] == "https://sts.us-east-2.amazonaws.com"
    own = {**attrs, "access_key_id": "MINE", "secret_access_key": "mine"}
    assert await with_client_credentials(own, env, transport=sts.transport()) == own
    assert len(sts.calls) == 2  # both given: the chain is not asked
    half = {**attrs, "access_key_id": "MINE"}
    assert await with_client_credentials(half, env, transport=sts.transport()) == {
        **half,
        "secret_access_key": "ROLE-3-secret",
        "session_token": "ROLE-3-token",
    }
    # nothing found, or a failing chain: nothing added (the daemon uses its own)
    assert await with_client_credentials(attrs, files(tmp_path)) == attrs
    denied = files(tmp_path, config=config.replace("role/top", "role/denied"))
    assert await with_client_credentials(attrs, denied, transport=sts.transport()) == attrs
