"""AWS credentials as the AWS SDK for Go v2's default chain finds them (what BuildKit's
s3 cache and buildx use), written by hand over httpx.

The order (:func:`default_credentials`), the first that applies wins:

1. ``$AWS_ACCESS_KEY_ID`` + ``$AWS_SECRET_ACCESS_KEY`` (``$AWS_ACCESS_KEY`` /
   ``$AWS_SECRET_KEY``), ``$AWS_SESSION_TOKEN``;
2. ``$AWS_WEB_IDENTITY_TOKEN_FILE`` + ``$AWS_ROLE_ARN`` (``$AWS_ROLE_SESSION_NAME``):
   STS ``AssumeRoleWithWebIdentity``;
3. the profile (:mod:`._awsconfig`), resolved in this order: ``source_profile`` (its
   credentials, this profile's ``role_arn`` assumed with them — chains of any length,
   a profile naming itself ends one), static keys, ``credential_source``
   (``Environment``, ``Ec2InstanceMetadata``, ``EcsContainer``), ``web_identity_token_file``,
   SSO (an error: not read), ``credential_process``; then, the profile having none:
   container credentials (``$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``, then ``_FULL_URI``,
   ``$AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]``), then EC2 instance metadata (IMDSv2:
   a token by PUT, then the role's credentials; ``$AWS_EC2_METADATA_SERVICE_ENDPOINT``,
   off with ``$AWS_EC2_METADATA_DISABLED=true``). A ``role_arn`` of the profile is then
   assumed (STS ``AssumeRole``) with what was found.

Temporary credentials are kept by :class:`CachedCredentials`, which fetches new ones
before they expire (so a long build never signs with expired ones). STS is reached at
``https://sts.REGION.amazonaws.com`` (``$AWS_ENDPOINT_URL_STS``...), REGION being the
cache's (BuildKit passes it to the SDK) or, on a client, the configured one.

Secrets (keys, session tokens, web identity and container tokens, the IMDS token) never
appear in a message, a ``repr`` or a log; a server's error text is quoted escaped and cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dockyard.core import AuthError, ConfigError, DockyardError

from ._awsconfig import SharedConfig, load_shared_config, profile_name, region_of, service_endpoint
from ._sigv4 import AwsCredentials, sign

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AssumeRole",
    "CachedCredentials",
    "ContainerCredentials",
    "CredentialsProvider",
    "InstanceMetadata",
    "ProcessCredentials",
    "StaticCredentials",
    "Sts",
    "WebIdentity",
    "add_credentials",
    "client_credentials",
    "default_credentials",
    "with_client_credentials",
]

#: how long before their expiry temporary credentials are replaced (at most: half the
#: lifetime of short ones)
REFRESH_WINDOW = 300.0
_ASSUME_ROLE_SECONDS = 900  # the SDK's default for AssumeRole
_PROCESS_TIMEOUT = 60.0
# roles assumed one from another through source_profile (the SDK sets no limit; each is
# an STS call, and a longer chain is a configuration mistake)
_MAX_SOURCE_PROFILES = 32
_PROCESS_OUTPUT = 64 << 10
_HTTP_BODY = 64 << 10
_ECS_HOST = "169.254.170.2"
_CONTAINER_HOSTS = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23"})
_IMDS_V4 = "http://169.254.169.254"
_IMDS_V6 = "http://[fd00:ec2::254]"
_IMDS_TTL = "21600"


class CredentialsProvider(Protocol):
    """One source of credentials. ``retrieve`` asks it again each time (no caching:
    :class:`CachedCredentials` does that); errors are :class:`~dockyard.core.AuthError`
    or :class:`~dockyard.core.ConfigError` and name the source, never a secret."""

    def describe(self) -> str: ...

    async def retrieve(self) -> AwsCredentials: ...


def _expiry(text: object, what: str) -> float | None:
    """An RFC 3339 time as epoch seconds (``None``: the field is absent)."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise AuthError(f"{what}: Expiration is not a time")
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise AuthError(f"{what}: Expiration {_quote(text, 40)} is not a time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _quote(text: str, limit: int = 300) -> str:
    """A server's or a program's text for a message: escaped, cut."""
    import unicodedata

    text = text.strip()
    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(
        c if c.isprintable() and unicodedata.category(c) != "Cf" else repr(c)[1:-1] for c in text
    )


def _from_json(document: Mapping[str, object], what: str, *, token_key: str) -> AwsCredentials:
    key = document.get("AccessKeyId")
    secret = document.get("SecretAccessKey")
    token = document.get(token_key, "")
    if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
        raise AuthError(f"{what}: the answer holds no AccessKeyId and SecretAccessKey")
    if not isinstance(token, str):
        raise AuthError(f"{what}: {token_key} is not a string")
    return AwsCredentials(
        access_key_id=key,
        secret_access_key=secret,
        session_token=token,
        expires_at=_expiry(document.get("Expiration"), what),
    )


def _http_client(
    transport: httpx.AsyncBaseTransport | None, timeout: float, *, proxies: bool = False
) -> httpx.AsyncClient:
    """A client for one retrieval. ``proxies``: the environment's proxy settings apply
    (STS, as for S3); the instance and container endpoints, link-local or loopback, are
    always reached directly (as the SDKs do)."""
    import httpx

    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        follow_redirects=False,
        trust_env=proxies,
    )


async def _body(response: httpx.Response) -> bytes:
    """An answer's (decoded) body, at most :data:`_HTTP_BODY` bytes (a credentials
    answer is ~1 KiB; a hostile endpoint's endless one is cut)."""
    import httpx

    try:
        return response.content[:_HTTP_BODY]  # already read (a transport's own body)
    except httpx.ResponseNotRead:
        pass
    out = bytearray()
    async for chunk in response.aiter_bytes():
        out += chunk
        if len(out) > _HTTP_BODY:
            raise AuthError(f"{response.request.url.host}: answer larger than {_HTTP_BODY} bytes")
    return bytes(out)


def _header_value(text: str) -> bool:
    """Whether ``text`` can go into an HTTP header as it is: printable ASCII (httpx
    encodes header values as ASCII, and a line break would end the header)."""
    return text.isascii() and all(" " <= c <= "~" for c in text)


def _reason(exc: BaseException) -> str:
    return _quote(str(exc) or type(exc).__name__, 200)


# -- static, process ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticCredentials:
    """Credentials given as they are (attributes, environment, a profile's keys)."""

    credentials: AwsCredentials
    source: str

    def describe(self) -> str:
        return self.source

    async def retrieve(self) -> AwsCredentials:
        return self.credentials


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessCredentials:
    """A profile's ``credential_process``: the command runs under ``sh -c``; its standard
    output is ``{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken",
    "Expiration"}``. A failure quotes the end of its standard error, never its output."""

    command: str = field(repr=False)
    profile: str
    timeout: float = _PROCESS_TIMEOUT

    def describe(self) -> str:
        return f"credential_process of AWS profile {self.profile!r}"

    async def retrieve(self) -> AwsCredentials:
        what = self.describe()
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its children end with it (a timeout kills all)
            )
        except OSError as exc:
            raise AuthError(f"{what}: cannot run it: {exc.strerror}") from None
        assert process.stdout is not None
        assert process.stderr is not None
        # both pipes read as they fill, in bounded memory: the output up to its limit
        # (an endless writer is ended there, not read until the timeout), the standard
        # error by its end (its last line is quoted)
        errors = asyncio.ensure_future(_read_tail(process.stderr, _PROCESS_OUTPUT))
        try:
            async with asyncio.timeout(self.timeout):
                out = await _read_capped(process.stdout, _PROCESS_OUTPUT)
                if out is not None:
                    await process.wait()
                    err = await errors
        except TimeoutError:
            errors.cancel()
            await _kill_group(process)
            raise AuthError(f"{what}: no answer within {self.timeout:g} s") from None
        except BaseException:
            errors.cancel()
            await _kill_group(process)
            raise
        if out is None:
            errors.cancel()
            await _kill_group(process)
            raise AuthError(f"{what}: output larger than {_PROCESS_OUTPUT} bytes")
        if process.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
            said = f": {_quote(tail[0], 200)}" if tail else ""
            raise AuthError(f"{what}: exited with status {process.returncode}{said}")
        try:
            document = json.loads(out)
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"{what}: the output is not JSON") from None
        if not isinstance(document, dict):
            raise AuthError(f"{what}: the output is not a JSON object")
        if document.get("Version") != 1:
            raise AuthError(f"{what}: the output's Version is not 1")
        return _from_json(document, what, token_key="SessionToken")


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    """What ``stream`` gives until its end, ``None`` once that passes ``limit`` bytes."""
    out = bytearray()
    while chunk := await stream.read(1 << 16):
        out += chunk
        if len(out) > limit:
            return None
    return bytes(out)


async def _read_tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    """The last ``limit`` bytes ``stream`` gives until its end."""
    out = bytearray()
    while chunk := await stream.read(1 << 16):
        out += chunk
        if len(out) > 2 * limit:
            del out[:-limit]
    return bytes(out[-limit:])


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """End a credential process and whatever it started (its own process group)."""
    import signal

    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


# -- STS ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sts:
    """Where STS is reached: ``endpoint`` (``""``: ``https://sts.REGION.amazonaws.com``)
    and the region requests are signed for."""

    region: str
    endpoint: str = ""
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)
    timeout: float = 30.0

    def url(self) -> str:
        if self.endpoint:
            return self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"
        if not self.region:
            raise ConfigError(
                "AWS STS: no region to reach it in (set region= of the cache, AWS_REGION "
                "or the profile's region)"
            )
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"https://sts.{self.region}.{suffix}"

    async def call(
        self, action: str, params: Mapping[str, str], signer: AwsCredentials | None, what: str
    ) -> AwsCredentials:
        """One STS action (a form POST, signed with ``signer`` or unsigned), its
        ``Credentials``."""
        import httpx

        url = httpx.URL(self.url())
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise ConfigError(f"{what}: invalid STS endpoint {str(url)!r}")
        form = {"Action": action, "Version": "2011-06-15", **params}
        body = urllib.parse.urlencode(sorted(form.items())).encode()
        headers = {
            "host": url.netloc.decode(),
            "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        }
        if signer is not None:
            signed = sign(
                "POST",
                url.raw_path.decode() or "/",
                [],
                headers,
                payload_hash=hashlib.sha256(body).hexdigest(),
                credentials=signer,
                region=self.region or "us-east-1",
                service="sts",
                when=datetime.datetime.now(datetime.UTC),
                content_sha256=False,
            )
            headers = {**headers, **signed.headers}
        async with _http_client(self.transport, self.timeout, proxies=True) as http:
            for attempt in (1, 2, 3):
                try:
                    async with http.stream("POST", url, headers=headers, content=body) as answer:
                        data = await _body(answer)
                        status = answer.status_code
                except httpx.TransportError as exc:
                    if attempt == 3:
                        raise AuthError(
                            f"{what}: cannot reach {url.host}: {_reason(exc)}"
                        ) from None
                    await asyncio.sleep(0.2 * attempt)
                    continue
                if status >= 500 and attempt < 3:
                    await asyncio.sleep(0.2 * attempt)
                    continue
                break
        return _sts_credentials(data, status, what)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _sts_credentials(data: bytes, status: int, what: str) -> AwsCredentials:
    try:
        root = ET.fromstring(data) if data.strip() else None
    except ET.ParseError:
        root = None
    texts: dict[str, str] = {}
    if root is not None:
        for element in root.iter():
            name = _local(element.tag)
            if name not in texts and element.text is not None:
                texts[name] = element.text.strip()
    if status != 200:
        code = texts.get("Code", "")
        message = texts.get("Message", "")
        detail = f"{_quote(code, 100)}: {_quote(message)}" if code else f"HTTP {status}"
        raise AuthError(f"{what}: refused ({detail.rstrip(': ')})")
    if not texts.get("AccessKeyId") or not texts.get("SecretAccessKey"):
        raise AuthError(f"{what}: the answer holds no credentials")
    return AwsCredentials(
        access_key_id=texts["AccessKeyId"],
        secret_access_key=texts["SecretAccessKey"],
        session_token=texts.get("SessionToken", ""),
        expires_at=_expiry(texts.get("Expiration"), what),
    )


def _session_name(given: str) -> str:
    return given or f"dockyard-{time.time_ns()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssumeRole:
    """STS ``AssumeRole`` of ``role_arn``, signed with what ``source`` gives."""

    source: CredentialsProvider
    role_arn: str
    sts: Sts
    session_name: str = ""
    external_id: str = field(default="", repr=False)
    duration: int = _ASSUME_ROLE_SECONDS

    def describe(self) -> str:
        return f"assuming role {self.role_arn} (with {self.source.describe()})"

    async def retrieve(self) -> AwsCredentials:
        signer = await self.source.retrieve()
        params = {
            "RoleArn": self.role_arn,
            "RoleSessionName": _session_name(self.session_name),
            "DurationSeconds": str(self.duration),
        }
        if self.external_id:
            params["ExternalId"] = self.external_id
        return await self.sts.call(
            "AssumeRole", params, signer, f"AWS STS AssumeRole of {self.role_arn}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebIdentity:
    """STS ``AssumeRoleWithWebIdentity`` of ``role_arn`` with the token in
    ``token_file`` (read again at each refresh: its owner rotates it)."""

    token_file: Path
    role_arn: str
    sts: Sts
    session_name: str = ""
    duration: int = 0

    def describe(self) -> str:
        return f"web identity {self.token_file} for role {self.role_arn}"

    async def retrieve(self) -> AwsCredentials:
        what = f"AWS STS AssumeRoleWithWebIdentity of {self.role_arn}"
        token = await _read_token(self.token_file, what)
        if not token:
            raise AuthError(f"{what}: the token file {self.token_file} is empty")
        params = {
            "RoleArn": self.role_arn,
            "RoleSessionName": _session_name(self.session_name),
            "WebIdentityToken": token,
        }
        if self.duration:
            params["DurationSeconds"] = str(self.duration)
        return await self.sts.call("AssumeRoleWithWebIdentity", params, None, what)


async def _read_token(path: Path, what: str) -> str:
    """The token in the file ``path`` (read at each call: it is rotated), stripped."""
    try:
        return (await asyncio.to_thread(path.read_text, "utf-8")).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise AuthError(f"{what}: cannot read the token file {path}: {reason}") from None


# -- container, instance metadata ----------------------------------------------------------


def _loopback_or_container(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or str(address) in _CONTAINER_HOSTS


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerCredentials:
    """The container credentials endpoint (ECS, EKS Pod Identity): a GET of ``url`` with
    the authorization token (``token_file`` read at each call, else ``token``)."""

    url: str
    token: str = field(default="", repr=False)
    token_file: Path | None = None
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)
    timeout: float = 5.0

    def describe(self) -> str:
        return f"container credentials at {self.url}"

    async def retrieve(self) -> AwsCredentials:
        import httpx

        what = f"AWS container credentials ({self.url})"
        token = self.token
        if self.token_file is not None:
            token = await _read_token(self.token_file, what)
        if any(c in token for c in "\r\n\x00"):
            raise AuthError(f"{what}: the authorization token holds a line break")
        if not _header_value(token):
            raise AuthError(
                f"{what}: the authorization token holds a character an HTTP header cannot carry"
            )
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = token
        async with _http_client(self.transport, self.timeout) as http:
            for attempt in (1, 2, 3):
                try:
                    async with http.stream("GET", self.url, headers=headers) as answer:
                        data = await _body(answer)
                        status = answer.status_code
                except httpx.TransportError as exc:
                    if attempt == 3:
                        raise AuthError(f"{what}: cannot reach it: {_reason(exc)}") from None
                    await asyncio.sleep(0.2 * attempt)
                    continue
                if status >= 500 and attempt < 3:
                    await asyncio.sleep(0.2 * attempt)
                    continue
                break
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            document = None
        if status != 200:
            detail = f"HTTP {status}"
            if isinstance(document, dict) and isinstance(document.get("message"), str):
                detail += (
                    f": {_quote(str(document.get('code', '')), 100)} {_quote(document['message'])}"
                )
            raise AuthError(f"{what}: refused ({detail.strip()})")
        if not isinstance(document, dict):
            raise AuthError(f"{what}: the answer is not a JSON object")
        return _from_json(document, what, token_key="Token")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceMetadata:
    """The EC2 instance's role credentials from its metadata service (IMDSv2: a session
    token by ``PUT /latest/api/token``, sent with each GET; a service that refuses
    tokens with 403/404/405 is asked without one unless ``v1_disabled``)."""

    endpoint: str = _IMDS_V4
    v1_disabled: bool = False
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)
    timeout: float = 1.0
    attempts: int = 3

    def describe(self) -> str:
        return f"EC2 instance metadata at {self.endpoint}"

    async def retrieve(self) -> AwsCredentials:
        import httpx

        what = f"AWS EC2 instance metadata ({self.endpoint})"
        base = self.endpoint.rstrip("/")

        async def request(
            http: httpx.AsyncClient, method: str, path: str, headers: Mapping[str, str]
        ) -> tuple[int, bytes]:
            for attempt in range(1, self.attempts + 1):
                try:
                    async with http.stream(method, base + path, headers=dict(headers)) as answer:
                        return answer.status_code, await _body(answer)
                except httpx.TransportError as exc:
                    if attempt >= self.attempts:
                        raise AuthError(f"{what}: cannot reach it: {_reason(exc)}") from None
                    await asyncio.sleep(0.1 * attempt)
            raise AssertionError("unreachable")

        async with _http_client(self.transport, self.timeout) as http:
            status, data = await request(
                http,
                "PUT",
                "/latest/api/token",
                {"x-aws-ec2-metadata-token-ttl-seconds": _IMDS_TTL},
            )
            headers: dict[str, str] = {}
            if status == 200:
                token = data.decode("ascii", "replace").strip()
                if not token or not _header_value(token):
                    raise AuthError(f"{what}: an invalid session token")
                headers["x-aws-ec2-metadata-token"] = token
            elif status in (403, 404, 405) and not self.v1_disabled:
                pass  # an IMDSv1-only service: asked without a token
            else:
                raise AuthError(f"{what}: no session token (HTTP {status})")
            prefix = "/latest/meta-data/iam/security-credentials/"
            status, data = await request(http, "GET", prefix, headers)
            if status == 404:
                raise AuthError(f"{what}: the instance has no IAM role")
            if status != 200:
                raise AuthError(f"{what}: the role name: HTTP {status}")
            names = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
            role = next((n for n in names if n), "")
            if not role:
                raise AuthError(f"{what}: the instance has no IAM role")
            status, data = await request(
                http, "GET", prefix + urllib.parse.quote(role, safe=""), headers
            )
        if status != 200:
            raise AuthError(f"{what}: the credentials of role {_quote(role, 100)}: HTTP {status}")
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise AuthError(f"{what}: the answer is not a JSON object")
        code = document.get("Code", "Success")
        if code != "Success":
            raise AuthError(f"{what}: {_quote(str(code), 100)}")
        return _from_json(document, what, token_key="Token")


# -- the cache ----------------------------------------------------------------------------


class CachedCredentials:
    """The credentials of ``provider``, fetched once and again before they expire: when
    less than :data:`REFRESH_WINDOW` (or half their lifetime) is left. A failed refresh
    keeps credentials that have not expired yet. One fetch at a time."""

    def __init__(
        self,
        provider: CredentialsProvider,
        *,
        clock: Callable[[], float] = time.time,
        window: float = REFRESH_WINDOW,
    ) -> None:
        self.provider = provider
        self._clock = clock
        self._window = window
        self._current: AwsCredentials | None = None
        self._refresh_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.fetches = 0

    def __repr__(self) -> str:
        return f"CachedCredentials({self.provider.describe()!r})"

    async def get(self) -> AwsCredentials:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            current = self._current
            if current is not None and (current.expires_at is None or now < self._refresh_at):
                return current
            try:
                fresh = await self.provider.retrieve()
            except DockyardError:
                if (
                    current is not None
                    and current.expires_at is not None
                    and now < current.expires_at
                ):
                    return current
                raise
            self.fetches += 1
            self._current = fresh
            if fresh.expires_at is not None:
                left = max(0.0, fresh.expires_at - now)
                self._refresh_at = fresh.expires_at - min(self._window, left / 2)
            return fresh


# -- the chain ----------------------------------------------------------------------------


def _true(text: str) -> bool:
    return text.strip().lower() == "true"


def _env_keys(env: Mapping[str, str]) -> AwsCredentials | None:
    key = env.get("AWS_ACCESS_KEY_ID", "") or env.get("AWS_ACCESS_KEY", "")
    secret = env.get("AWS_SECRET_ACCESS_KEY", "") or env.get("AWS_SECRET_KEY", "")
    if key and secret:
        return AwsCredentials(
            access_key_id=key,
            secret_access_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN", ""),
        )
    return None


def _has_credentials(values: Mapping[str, str]) -> bool:
    """Whether a profile gives credentials of its own kind (a source profile must)."""
    return any(
        values.get(key)
        for key in (
            "source_profile",
            "credential_source",
            "credential_process",
            "web_identity_token_file",
            "sso_start_url",
            "sso_session",
        )
    ) or bool(values.get("aws_access_key_id") and values.get("aws_secret_access_key"))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Chain:
    env: Mapping[str, str] = field(repr=False)
    shared: SharedConfig
    sts: Sts
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    def container(self) -> CredentialsProvider | None:
        env = self.env
        relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
        full = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
        if relative:
            if not relative.startswith("/"):
                relative = "/" + relative
            url = f"http://{_ECS_HOST}{relative}"
        elif full:
            url = full
            parsed = urllib.parse.urlsplit(full)
            if "@" in parsed.netloc:  # checked first: the message would quote a password
                raise ConfigError("AWS_CONTAINER_CREDENTIALS_FULL_URI holds a user or password")
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigError(f"AWS_CONTAINER_CREDENTIALS_FULL_URI={full!r} is not a URL")
            if parsed.scheme == "http" and not _loopback_or_container(parsed.hostname):
                raise ConfigError(
                    f"AWS_CONTAINER_CREDENTIALS_FULL_URI: plain http only to a loopback or the "
                    f"container credentials address, not {parsed.hostname!r} (use https)"
                )
        else:
            return None
        token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "")
        return ContainerCredentials(
            url=url,
            token=env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN", ""),
            token_file=Path(token_file) if token_file else None,
            transport=self.transport,
        )

    def imds(self, profile: Mapping[str, str]) -> CredentialsProvider | None:
        env = self.env
        if _true(env.get("AWS_EC2_METADATA_DISABLED", "")):
            return None
        endpoint = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "") or profile.get(
            "ec2_metadata_service_endpoint", ""
        )
        mode = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "") or profile.get(
            "ec2_metadata_service_endpoint_mode", ""
        )
        if not endpoint:
            endpoint = _IMDS_V6 if mode.strip().lower() == "ipv6" else _IMDS_V4
        parsed = urllib.parse.urlsplit(endpoint)
        if "@" in parsed.netloc:  # checked first: the message would quote a password
            raise ConfigError("AWS_EC2_METADATA_SERVICE_ENDPOINT holds a user or password")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"AWS_EC2_METADATA_SERVICE_ENDPOINT={endpoint!r} is not a URL")
        v1_off = env.get("AWS_EC2_METADATA_V1_DISABLED", "") or profile.get(
            "ec2_metadata_v1_disabled", ""
        )
        return InstanceMetadata(
            endpoint=endpoint, v1_disabled=_true(v1_off), transport=self.transport
        )

    def profile(self, name: str, seen: tuple[str, ...]) -> CredentialsProvider | None:
        """The provider of profile ``name`` (``seen``: the profiles whose role this one's
        credentials will assume, outermost first)."""
        if len(seen) > _MAX_SOURCE_PROFILES:  # each one is followed by recursion
            raise ConfigError(
                f"AWS profile {seen[0]!r}: a chain of more than {_MAX_SOURCE_PROFILES} "
                "source_profile roles"
            )
        values = self.shared.profile(name)
        if values is None:
            if seen:
                raise ConfigError(
                    f"AWS profile {seen[-1]!r}: its source_profile {name!r} does not exist"
                )
            return None
        role_arn = values.get("role_arn", "")
        source_name = values.get("source_profile", "")
        again = name in seen  # a profile named again in the chain: its keys only
        static = None
        if values.get("aws_access_key_id") and values.get("aws_secret_access_key"):
            static = AwsCredentials(
                access_key_id=values["aws_access_key_id"],
                secret_access_key=values["aws_secret_access_key"],
                session_token=values.get("aws_session_token", ""),
            )
        if again:
            if static is None:
                raise ConfigError(
                    f"AWS profile {name!r}: a source_profile loop ({' -> '.join((*seen, name))})"
                )
            return StaticCredentials(credentials=static, source=f"AWS profile {name!r}")
        if seen and not _has_credentials(values):
            raise ConfigError(
                f"AWS profile {seen[-1]!r}: its source_profile {name!r} has no credentials"
            )
        kinds = [
            k
            for k in (
                "source_profile",
                "credential_source",
                "credential_process",
                "web_identity_token_file",
            )
            if values.get(k)
        ]
        if len(kinds) > 1 and not (seen and static is not None):
            raise ConfigError(
                f"AWS profile {name!r}: only one kind of credentials per profile "
                f"({', '.join(kinds)} are all set)"
            )
        base: CredentialsProvider | None
        if seen and static is not None:
            # a source profile with keys: they are its credentials (its own source_profile
            # is not followed; its role_arn, if any, is still assumed, as the Go SDK does)
            base = StaticCredentials(credentials=static, source=f"AWS profile {name!r}")
        elif source_name:
            if not role_arn:
                raise ConfigError(f"AWS profile {name!r}: source_profile without role_arn")
            base = self.profile(source_name, (*seen, name))
        elif static is not None:
            base = StaticCredentials(credentials=static, source=f"AWS profile {name!r}")
        elif values.get("credential_source"):
            base = self.credential_source(name, values)
        elif values.get("web_identity_token_file"):
            if not role_arn:
                raise ConfigError(f"AWS profile {name!r}: web_identity_token_file without role_arn")
            return WebIdentity(
                token_file=Path(values["web_identity_token_file"]).expanduser(),
                role_arn=role_arn,
                sts=self.sts,
                session_name=values.get("role_session_name", ""),
                duration=self.duration(name, values, 0),
            )
        elif (
            values.get("sso_start_url") or values.get("sso_session") or values.get("sso_account_id")
        ):
            raise ConfigError(
                f"AWS profile {name!r} uses IAM Identity Center (SSO), which Dockyard does not "
                "read: export the role's credentials (aws configure export-credentials) or use "
                "another profile"
            )
        elif values.get("credential_process"):
            base = ProcessCredentials(command=values["credential_process"], profile=name)
        else:
            base = self.container() or self.imds(values)
        if base is None or not role_arn:
            return base
        if values.get("mfa_serial"):
            raise ConfigError(
                f"AWS profile {name!r}: role {role_arn} needs an MFA code (mfa_serial), which "
                "a build cannot ask for"
            )
        return AssumeRole(
            source=base,
            role_arn=role_arn,
            sts=self.sts,
            session_name=values.get("role_session_name", ""),
            external_id=values.get("external_id", ""),
            duration=self.duration(name, values, _ASSUME_ROLE_SECONDS),
        )

    def credential_source(self, name: str, values: Mapping[str, str]) -> CredentialsProvider:
        kind = values["credential_source"].strip()
        if not values.get("role_arn"):
            raise ConfigError(f"AWS profile {name!r}: credential_source without role_arn")
        found: CredentialsProvider | None
        if kind == "Environment":
            keys = _env_keys(self.env)
            found = StaticCredentials(credentials=keys, source="environment") if keys else None
        elif kind == "Ec2InstanceMetadata":
            found = self.imds(values)
        elif kind == "EcsContainer":
            found = self.container()
        else:
            raise ConfigError(
                f"AWS profile {name!r}: credential_source={kind!r} (expected Environment, "
                "Ec2InstanceMetadata or EcsContainer)"
            )
        if found is None:
            raise ConfigError(f"AWS profile {name!r}: credential_source={kind} has no credentials")
        return found

    @staticmethod
    def duration(name: str, values: Mapping[str, str], default: int) -> int:
        text = values.get("duration_seconds", "").strip()
        if not text:
            return default
        if not text.isascii() or not text.isdigit() or not 900 <= int(text) <= 43200:
            raise ConfigError(
                f"AWS profile {name!r}: duration_seconds={text!r} (900 to 43200 seconds)"
            )
        return int(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Nothing:
    """No source applies: retrieving is the error that says where Dockyard looked."""

    message: str

    def describe(self) -> str:
        return "no credentials"

    async def retrieve(self) -> AwsCredentials:
        raise AuthError(self.message)


def default_credentials(
    env: Mapping[str, str] | None = None,
    *,
    home: Path | None = None,
    region: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
) -> CredentialsProvider:
    """The provider the SDK's default chain picks in ``env`` (the process environment),
    in the order of the module docstring. ``region``: the region STS is reached in
    (``""``: the configured one). Reads the config files now (a bad profile is a
    :class:`~dockyard.core.ConfigError` here); talks to nothing until ``retrieve``."""
    env = os.environ if env is None else env
    keys = _env_keys(env)
    if keys is not None:
        return StaticCredentials(credentials=keys, source="environment")
    shared = load_shared_config(env, home)
    name, named = profile_name(env)
    values = shared.profile(name)
    if values is None and named:
        raise ConfigError(
            f"AWS_PROFILE={name!r}: no such profile in {shared.config_path} or "
            f"{shared.credentials_path}"
        )
    sts_region = region or region_of(env, values)
    sts = Sts(
        region=sts_region,
        endpoint=service_endpoint(env, "STS", values),
        transport=transport,
    )
    chain = _Chain(env=env, shared=shared, sts=sts, transport=transport)
    token_file = env.get("AWS_WEB_IDENTITY_TOKEN_FILE", "")
    if token_file:
        role_arn = env.get("AWS_ROLE_ARN", "")
        if not role_arn:
            raise ConfigError("AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN")
        return WebIdentity(
            token_file=Path(token_file),
            role_arn=role_arn,
            sts=sts,
            session_name=env.get("AWS_ROLE_SESSION_NAME", ""),
        )
    found = chain.profile(name, ()) if values is not None else chain.container() or chain.imds({})
    if found is not None:
        return found
    return _Nothing(
        message=(
            "no AWS credentials (give access_key_id and secret_access_key, set "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in "
            f"{shared.credentials_path} or {shared.config_path}; instance metadata is off: "
            "AWS_EC2_METADATA_DISABLED)"
        )
    )


def _wants_credentials(attrs: Mapping[str, str]) -> bool:
    keys = {k.lower() for k in attrs}
    return not ("access_key_id" in keys and "secret_access_key" in keys)


async def client_credentials(
    cache_region: str = "",
    env: Mapping[str, str] | None = None,
    *,
    home: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AwsCredentials | None:
    """What the default chain finds on a client, as buildx asks it (``None`` when it
    finds nothing or fails: buildx then sends nothing and the daemon uses its own
    chain). STS is reached in the configured region (``$AWS_REGION``,
    ``$AWS_DEFAULT_REGION``, the profile's), else ``cache_region``."""
    env = os.environ if env is None else env
    try:
        shared = load_shared_config(env, home)
        region = region_of(env, shared.profile(profile_name(env)[0])) or cache_region
        provider = default_credentials(env, home=home, region=region, transport=transport)
        return await provider.retrieve()
    except DockyardError:
        return None


def add_credentials(attrs: Mapping[str, str], found: AwsCredentials | None) -> dict[str, str]:
    """``attrs`` with what ``found`` holds in the attributes it lacks, as buildx adds
    them: nothing when both ``access_key_id`` and ``secret_access_key`` are given;
    otherwise each missing one and ``session_token``."""
    out = dict(attrs)
    if found is None or not _wants_credentials(out):
        return out
    keys = {k.lower() for k in out}
    if "access_key_id" not in keys and found.access_key_id:
        out["access_key_id"] = found.access_key_id
    if "secret_access_key" not in keys and found.secret_access_key:
        out["secret_access_key"] = found.secret_access_key
    if "session_token" not in keys and found.session_token:
        out["session_token"] = found.session_token
    return out


async def with_client_credentials(
    attrs: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    *,
    home: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, str]:
    """The attributes of a ``type=s3`` cache a client sends to a daemon, with this
    process's credentials added as buildx adds them (:func:`client_credentials`,
    resolved here on the client: the daemon's host may have none, :func:`add_credentials`)."""
    if not _wants_credentials(attrs):
        return dict(attrs)
    env = os.environ if env is None else env
    region = attrs.get("region", "") or env.get("AWS_REGION", "")
    found = await client_credentials(region, env, home=home, transport=transport)
    return add_credentials(attrs, found)
