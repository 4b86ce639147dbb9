"""Credentials from docker's client configuration (``~/.docker/config.json``).

Supports what ``docker login`` writes: ``auths`` entries (base64 ``auth`` or
``username``/``password``, ``identitytoken``, ``registrytoken``), a default credential
store (``credsStore``) and per-host helpers (``credHelpers``), which are the
``docker-credential-<name>`` programs speaking the helper protocol on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.core import AuthError, ConfigError
from dockyard.core.procs import stop_process

from ._config import DOCKER_HUB_CREDENTIALS_KEY, normalize_host
from ._reference import DOCKER_HUB
from .types import Credentials

__all__ = ["DockerConfigCredentials", "StaticCredentials", "docker_config_path"]

_HELPER_TIMEOUT = 60.0
_SHOWN = 1000  # characters of a failed helper's output in its error
_NOT_FOUND = "credentials not found"


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if env is None else env
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


class StaticCredentials:
    """A fixed host → credentials table (for tests and API users)."""

    def __init__(self, table: Mapping[str, Credentials]) -> None:
        self._table = {normalize_host(host): creds for host, creds in table.items()}

    async def get(self, host: str) -> Credentials | None:
        return self._table.get(normalize_host(host))


@dataclass(frozen=True, slots=True)
class _Parsed:
    auths: Mapping[str, Credentials]
    creds_store: str
    cred_helpers: Mapping[str, str]


def _server_url(host: str) -> str:
    """The name docker gives a registry when it talks to helpers and writes ``auths``."""
    return DOCKER_HUB_CREDENTIALS_KEY if host == DOCKER_HUB else host


class DockerConfigCredentials:
    """A :class:`~dockyard.registry.CredentialsProvider` over docker's config file.

    The file is re-read when it changes. A missing file means no credentials. Lookup
    order is docker's: a ``credHelpers`` entry for the host, else ``credsStore``, else
    the ``auths`` entry (also consulted when a helper has nothing for the host).
    """

    def __init__(self, path: Path | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self.path = path if path is not None else docker_config_path(self._env)
        self._cache: tuple[tuple[int, int], _Parsed] | None = None

    def _load(self) -> _Parsed:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return _Parsed(auths={}, creds_store="", cred_helpers={})
        except OSError as exc:
            raise ConfigError(f"cannot read docker config {self.path}: {exc}") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        try:
            raw = json.loads(self.path.read_bytes() or b"{}")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid docker config {self.path}: {exc}") from exc
        parsed = self._parse(raw)
        self._cache = (stamp, parsed)
        return parsed

    def _parse(self, raw: Any) -> _Parsed:
        where = f"docker config {self.path}"
        if not isinstance(raw, dict):
            raise ConfigError(f"invalid {where}: expected a JSON object")
        auths: dict[str, Credentials] = {}
        entries = raw.get("auths")
        entries = {} if entries is None else entries
        if not isinstance(entries, dict):
            raise ConfigError(f"invalid {where}: 'auths' must be an object")
        for key, entry in entries.items():
            if not isinstance(entry, dict):
                raise ConfigError(f"invalid {where}: auths[{key!r}] must be an object")
            creds = _credentials_from_entry(entry, f"{where}: auths[{key!r}]")
            if creds is not None:
                auths.setdefault(normalize_host(key), creds)
        store = raw.get("credsStore")
        store = "" if store is None else store
        helpers = raw.get("credHelpers")
        helpers = {} if helpers is None else helpers
        if not isinstance(store, str):
            raise ConfigError(f"invalid {where}: 'credsStore' must be a string")
        if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
            raise ConfigError(f"invalid {where}: 'credHelpers' must map hosts to helper names")
        return _Parsed(
            auths=auths,
            creds_store=store,
            cred_helpers={normalize_host(k): v for k, v in helpers.items()},
        )

    async def get(self, host: str) -> Credentials | None:
        host = normalize_host(host)
        parsed = await asyncio.to_thread(self._load)
        helper = parsed.cred_helpers.get(host) or parsed.creds_store
        if helper:
            found = await self._run_helper(helper, host)
            if found is not None:
                return found
        return parsed.auths.get(host)

    async def _run_helper(self, helper: str, host: str) -> Credentials | None:
        program = f"docker-credential-{helper}"
        path = shutil.which(program, path=self._env.get("PATH"))
        if path is None:
            raise ConfigError(
                f"credential helper {program} (configured in {self.path}) is not in PATH"
            )
        try:
            proc = await asyncio.create_subprocess_exec(
                path,
                "get",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # a stop reaches what the helper started
            )
        except OSError as exc:
            raise ConfigError(f"cannot run credential helper {program}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(_server_url(host).encode()), _HELPER_TIMEOUT
            )
        except TimeoutError:
            await stop_process(proc, group=True)
            raise AuthError(
                f"credential helper {program} did not answer for {host} "
                f"within {_HELPER_TIMEOUT:.0f}s"
            ) from None
        except BaseException:  # cancelled: the helper is not left running
            await stop_process(proc, group=True)
            raise
        if proc.returncode != 0:
            message = (out + err).decode(errors="replace").strip()
            if _NOT_FOUND in message.lower():
                return None
            shown = _failure_output(out, err)
            raise AuthError(
                f"credential helper {program} failed for {host}: {shown or proc.returncode}"
            )
        try:
            answer = json.loads(out)
        except ValueError as exc:
            raise AuthError(
                f"credential helper {program} returned invalid JSON for {host}"
            ) from exc
        if not isinstance(answer, dict):
            raise AuthError(f"credential helper {program} returned invalid JSON for {host}")
        username = str(answer.get("Username") or "")
        secret = str(answer.get("Secret") or "")
        if not username and not secret:
            return None
        if username == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(username=username, password=secret)


def _failure_output(out: bytes, err: bytes) -> str:
    """What a failed credential helper printed, for its error: never an answer holding
    a ``Secret`` (a helper may print one and still fail), at most ``_SHOWN`` characters."""
    if b"secret" in out.lower():
        out = b"(its answer is not shown: it holds a secret)\n" if out.strip() else b""
    text = (out + err).decode(errors="replace").strip()
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _credentials_from_entry(entry: Mapping[str, Any], where: str) -> Credentials | None:
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    encoded = entry.get("auth") or ""
    identity = entry.get("identitytoken") or ""
    registry_token = entry.get("registrytoken") or ""
    for name, value in (
        ("username", username),
        ("password", password),
        ("auth", encoded),
        ("identitytoken", identity),
        ("registrytoken", registry_token),
    ):
        if not isinstance(value, str):
            raise ConfigError(f"invalid {where}: {name!r} must be a string")
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"invalid {where}: 'auth' is not base64 of user:password") from exc
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise ConfigError(f"invalid {where}: 'auth' is not base64 of user:password")
        username, password = user, secret
    if not (username or password or identity or registry_token):
        return None
    return Credentials(
        username=username,
        password=password,
        identity_token=identity,
        registry_token=registry_token,
    )
