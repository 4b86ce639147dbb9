"""Azurite's blob service (Microsoft's Azure Storage emulator, installed by
``scripts/setup`` into ``.tools/azurite``) on a free loopback port, with an account of
its own whose key it checks (Shared Key), stopped by its PID."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dockyard.remotecache import AzureBlobClient, AzureSharedKey
from tests.integration.conftest import requirement_missing

ROOT = Path(__file__).resolve().parents[3]
AZURITE = Path(
    os.environ.get("DOCKYARD_AZURITE", ROOT / ".tools/azurite/node_modules/.bin/azurite-blob")
)
ACCOUNT = "dockyardcache"
_LISTENING = re.compile(rb"listens on (http://127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: ``account_url`` (path style: ``http://127.0.0.1:PORT/ACCOUNT``)
    and the account's ``key``."""

    endpoint: str
    key: str
    pid: int
    log: Path

    @property
    def account_url(self) -> str:
        return f"{self.endpoint}/{ACCOUNT}"

    def client(self, container: str, key: str | None = None) -> AzureBlobClient:
        return AzureBlobClient(
            account_url=self.account_url,
            container=container,
            credential=AzureSharedKey(account=ACCOUNT, key=key or self.key),
            backoff=0.0,
        )

    def attrs(self, container: str, extra: str = "") -> str:
        return (
            f"type=azblob,account_url={self.account_url},container={container},"
            f"secret_access_key={self.key}{extra}"
        )


@contextlib.contextmanager
def start_azurite(workdir: Path) -> Iterator[Azurite]:
    if not AZURITE.is_file():
        requirement_missing(f"{AZURITE} not found (scripts/setup installs Azurite from npm)")
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    log = workdir / "azurite.log"
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(AZURITE),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--location",
                str(workdir / "data"),
                "--disableTelemetry",
                "--silent",  # no access log
                "--disableProductStyleUrl",  # the account is the path's first segment
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 60  # only guards against a hang
        endpoint = ""
        while not endpoint:
            found = _LISTENING.search(log.read_bytes())
            if found:
                endpoint = found.group(1).decode()
                break
            if process.poll() is not None:
                raise RuntimeError(f"azurite ended ({process.returncode}): {log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"azurite did not start: {log.read_text()}")
            time.sleep(0.05)
        yield Azurite(endpoint=endpoint, key=key, pid=process.pid, log=log)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
