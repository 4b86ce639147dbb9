"""Real registries for tests: Debian's ``docker-registry`` on a free loopback port.

Three setups, all started and stopped by PID from a test's temporary directory:

- anonymous, plain HTTP: ``start_registry(tmp)``;
- htpasswd basic auth behind TLS with a CA and server certificate made here with
  openssl: ``start_registry(tmp, auth="htpasswd", tls=True)``;
- the bearer-token flow against :class:`TokenServer`, a small token service running in
  the test process that signs RS256 JWTs: ``start_registry(tmp, auth="token")``.

``RegistryProcess.kill()`` / ``start()`` restart a registry on the same port and storage
(for "the registry died mid-push" tests). :func:`build_image` assembles a small image
(layer tars, config, manifest) in memory to push. Tests only; nothing in ``src`` may
import this module.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Literal

from dockyard.core import Digest
from dockyard.oci import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    MediaType,
)
from dockyard.registry import Credentials, HostConfig, RegistryConfig

from .httpserver import QuietHTTPServer

__all__ = [
    "REGISTRY_BINARY",
    "BuiltImage",
    "RegistryProcess",
    "TLSFiles",
    "TokenServer",
    "build_image",
    "build_index",
    "free_port",
    "make_tls",
    "start_registry",
]

REGISTRY_BINARY = "/usr/bin/docker-registry"
_START_TIMEOUT = 30.0
_SERVICE = "dockyard-test-registry"
_ISSUER = "dockyard-test-token-issuer"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFiles:
    """A test CA, a server certificate for 127.0.0.1 / localhost and a client
    certificate (for mutual TLS), both signed by the CA."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path, common_name: str = "127.0.0.1") -> TLSFiles:
    """Make a CA and a server certificate (SANs ``IP:127.0.0.1``, ``DNS:localhost``)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=dockyard test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", f"/CN={common_name}",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.pem", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=dockyard test client",
        cwd=directory,
    )  # fmt: skip
    (directory / "client.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "client.pem", "-extfile", "client.ext",
        cwd=directory,
    )  # fmt: skip
    return TLSFiles(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        cert=directory / "server.pem",
        key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


# -- the token server ------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _RSAKey:
    """An RSA private key made by openssl, signing RS256 in pure Python (no crypto deps)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "token.key", "-out", "token.pem", "-subj", "/CN=dockyard token signer",
            cwd=directory,
        )  # fmt: skip
        text = subprocess.run(
            ["openssl", "rsa", "-in", "token.key", "-noout", "-text"],
            cwd=directory,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.n = self._number(text, "modulus:")
        self.d = self._number(text, "privateExponent:")
        der = subprocess.run(
            ["openssl", "x509", "-in", "token.pem", "-outform", "DER"],
            cwd=directory,
            check=True,
            capture_output=True,
        ).stdout
        self.cert_pem = directory / "token.pem"
        self.cert_der = der

    @staticmethod
    def _number(text: str, label: str) -> int:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == label)
        digits = []
        for line in lines[start + 1 :]:
            if not line.startswith(" "):
                break
            digits.append(line.strip().replace(":", ""))
        return int("".join(digits), 16)

    def sign(self, message: bytes) -> bytes:
        # EMSA-PKCS1-v1_5 with SHA-256, then m^d mod n.
        k = (self.n.bit_length() + 7) // 8
        digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
        t = digest_info + hashlib.sha256(message).digest()
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(k, "big")


@dataclass(slots=True)
class TokenRequest:
    """What one request to the token server asked for (for assertions)."""

    method: str
    account: str
    scopes: tuple[str, ...]
    status: int


class TokenServer:
    """A Docker-registry token service (the ``realm``) on a free loopback port.

    Users authenticate with basic auth (``users``) or a refresh token
    (``refresh_tokens``: token → user, the OAuth2 ``POST`` form). Authenticated users get
    every action they ask for; anonymous requests get ``pull`` when ``anonymous_pull``,
    nothing otherwise. ``requests`` records each request. ``lifetime`` sets
    ``expires_in``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        users: Mapping[str, str],
        refresh_tokens: Mapping[str, str] | None = None,
        anonymous_pull: bool = False,
        lifetime: int = 300,
    ) -> None:
        self.users = dict(users)
        self.refresh_tokens = dict(refresh_tokens or {})
        self.anonymous_pull = anonymous_pull
        self.lifetime = lifetime
        self.requests: list[TokenRequest] = []
        self._key = _RSAKey(directory)
        self.cert = self._key.cert_pem
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.service = _SERVICE
        self.issuer = _ISSUER
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def issue(self, account: str, scopes: Sequence[str], *, authenticated: bool) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if authenticated else [a for a in wanted if a == "pull"]
            if not authenticated and not self.anonymous_pull:
                granted = []
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self._key.cert_der).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now - 30,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        return signing_input + "." + _b64url(self._key.sign(signing_input.encode()))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def _answer(self, status: int, body: dict[str, object], record: TokenRequest) -> None:
                record.status = status
                server.requests.append(record)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scopes = tuple(query.get("scope", []))
                account = ""
                authenticated = False
                header = self.headers.get("Authorization", "")
                record = TokenRequest(method="GET", account="", scopes=scopes, status=0)
                if header.startswith("Basic "):
                    try:
                        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    except ValueError:
                        user, password = "", ""
                    record.account = user
                    if server.users.get(user) != password or not user:
                        self._answer(401, {"details": "incorrect username or password"}, record)
                        return
                    account, authenticated = user, True
                token = server.issue(account, scopes, authenticated=authenticated)
                self._answer(
                    200,
                    {"token": token, "access_token": token, "expires_in": server.lifetime},
                    record,
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                scopes = tuple(" ".join(form.get("scope", [])).split())
                record = TokenRequest(method="POST", account="", scopes=scopes, status=0)
                refresh = (form.get("refresh_token") or [""])[0]
                user = server.refresh_tokens.get(refresh)
                if (form.get("grant_type") or [""])[0] != "refresh_token" or user is None:
                    self._answer(401, {"error": "invalid_grant"}, record)
                    return
                record.account = user
                token = server.issue(user, scopes, authenticated=True)
                self._answer(200, {"access_token": token, "expires_in": server.lifetime}, record)

        return Handler


# -- the registry process --------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class RegistryProcess:
    """A running (or stopped) ``docker-registry``; see :func:`start_registry`."""

    root: Path
    port: int
    config_file: Path
    log_file: Path
    tls: TLSFiles | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None
    client_certs: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ref(self, name: str) -> str:
        """An image reference on this registry: ``ref("app:1")`` → ``127.0.0.1:PORT/app:1``."""
        return f"{self.host}/{name}"

    def registry_config(self, *, client_cert: bool | None = None) -> RegistryConfig:
        """Client settings: trust the test CA for a TLS registry (and present the client
        certificate if the registry asks for one, or ``client_cert``); plain HTTP
        otherwise."""
        if self.tls is not None:
            present = self.client_certs if client_cert is None else client_cert
            return RegistryConfig(
                hosts={
                    self.host: HostConfig(
                        ca_files=(self.tls.ca_cert,),
                        client_cert=self.tls.client_cert if present else None,
                        client_key=self.tls.client_key if present else None,
                    )
                }
            )
        return RegistryConfig(hosts={self.host: HostConfig(http=True)})

    def credentials(self, user: str | None = None) -> Credentials:
        name = user or next(iter(self.users))
        return Credentials(username=name, password=self.users[name])

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        """Start (again) on the same port and storage; waits until it answers."""
        if self.process is not None and self.process.poll() is None:
            return
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:  # a registry that does not answer is not left running
            self.kill()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if self.client_certs and self.tls is not None:
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context).close()
                return
            except urllib.error.HTTPError:
                return  # 401 from an auth-enabled registry: it is up
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"docker-registry did not answer on {self.url}:\n{self.log()[-3000:]}"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the registry (a crash) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the registry (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop the registry and its token server."""
        self.stop()
        if self.token_server is not None:
            self.token_server.close()

    def __enter__(self) -> RegistryProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_registry(
    directory: Path,
    *,
    auth: Literal["none", "htpasswd", "token"] = "none",
    tls: bool = False,
    users: Mapping[str, str] | None = None,
    refresh_tokens: Mapping[str, str] | None = None,
    anonymous_pull: bool = False,
    client_certs: bool = False,
) -> RegistryProcess:
    """Start a registry with its state under ``directory`` on a free loopback port.

    ``users`` (default ``{"alice": "wonderland"}``) are the htpasswd or token-server
    accounts. ``client_certs`` (with ``tls``) makes the registry require a client
    certificate signed by the test CA (mutual TLS). Retries on another port if the chosen
    one was taken in the meantime.
    """
    if client_certs and not tls:
        raise ValueError("client certificates need tls=True")
    directory.mkdir(parents=True, exist_ok=True)
    users = dict(users or {"alice": "wonderland"})
    tls_files = make_tls(directory / "tls") if tls else None
    token_server = None
    auth_section: dict[str, object] = {}
    if auth == "htpasswd":
        lines = []
        for user, password in users.items():
            out = subprocess.run(
                ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
            ).stdout.strip()
            lines.append(out)
        (directory / "htpasswd").write_text("\n".join(lines) + "\n")
        auth_section = {"htpasswd": {"realm": "dockyard-test", "path": str(directory / "htpasswd")}}
    elif auth == "token":
        token_server = TokenServer(
            directory / "token",
            users=users,
            refresh_tokens=refresh_tokens,
            anonymous_pull=anonymous_pull,
        )
        auth_section = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert),
            }
        }
    last_error: Exception | None = None
    for _ in range(5):
        port = free_port()
        http: dict[str, object] = {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if tls_files is not None:
            tls_section: dict[str, object] = {
                "certificate": str(tls_files.cert),
                "key": str(tls_files.key),
            }
            if client_certs:
                tls_section["clientcas"] = [str(tls_files.ca_cert)]
            http["tls"] = tls_section
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(directory / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if auth_section:
            config["auth"] = auth_section
        config_file = directory / "config.yml"
        # JSON is YAML: no YAML library needed.
        config_file.write_text(json.dumps(config, indent=2))
        registry = RegistryProcess(
            root=directory,
            port=port,
            config_file=config_file,
            log_file=directory / "registry.log",
            tls=tls_files,
            users=users,
            token_server=token_server,
            client_certs=client_certs,
        )
        try:
            registry.start()
            return registry
        except RuntimeError as exc:
            last_error = exc
            if "address already in use" not in str(exc):
                break
    if token_server is not None:
        token_server.close()
    raise RuntimeError(f"could not start docker-registry: {last_error}")


# -- building test images --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltImage:
    """An image assembled in memory: every blob by digest, the manifest bytes and values."""

    manifest: ImageManifest
    manifest_bytes: bytes
    config: ImageConfig
    config_bytes: bytes
    blobs: Mapping[Digest, bytes]
    layer_tars: tuple[bytes, ...]

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.manifest_bytes)

    def descriptor(self, **details: object) -> Descriptor:
        return Descriptor.of(self.media_type, self.manifest_bytes, **details)


def _layer_tar(files: Mapping[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            value = files[name]
            info = tarfile.TarInfo(name.strip("/"))
            info.mtime = 0
            if isinstance(value, str) and value.startswith("->"):
                info.type = tarfile.SYMTYPE
                info.linkname = value[2:]
                tar.addfile(info)
                continue
            data = value.encode() if isinstance(value, str) else value
            info.size = len(data)
            info.mode = 0o755 if name.startswith(("bin/", "usr/bin/")) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_image(
    layers: Sequence[Mapping[str, bytes | str]],
    *,
    oci: bool = True,
    compression: Literal["gzip", "uncompressed"] = "gzip",
    architecture: str = "amd64",
    os_name: str = "linux",
    variant: str = "",
    config: ContainerConfig | None = None,
    created: str = "2024-01-01T00:00:00Z",
) -> BuiltImage:
    """Assemble an image: one layer per mapping of ``path`` → content (``bytes``/``str``;
    a string starting with ``->`` is a symlink target). Deterministic bytes."""
    tars = tuple(_layer_tar(files) for files in layers)
    blobs: dict[Digest, bytes] = {}
    layer_descs = []
    for tar in tars:
        blob = gzip.compress(tar, mtime=0) if compression == "gzip" else tar
        blobs[Digest.from_bytes(blob)] = blob
        layer_descs.append(Descriptor.of(MediaType.layer(compression, oci=oci), blob))
    image_config = ImageConfig(
        architecture=architecture,
        os=os_name,
        variant=variant,
        created=created,
        config=config or ContainerConfig(env=("PATH=/usr/local/bin:/usr/bin:/bin",)),
        diff_ids=tuple(Digest.from_bytes(t) for t in tars),
        history=tuple(
            History(created=created, created_by=f"test layer {i}") for i in range(len(tars))
        ),
    )
    config_bytes = image_config.to_bytes()
    blobs[Digest.from_bytes(config_bytes)] = config_bytes
    manifest = ImageManifest(
        media_type=MediaType.OCI_MANIFEST if oci else MediaType.DOCKER_MANIFEST,
        config=Descriptor.of(
            MediaType.OCI_CONFIG if oci else MediaType.DOCKER_CONFIG, config_bytes
        ),
        layers=tuple(layer_descs),
    )
    return BuiltImage(
        manifest=manifest,
        manifest_bytes=manifest.to_bytes(),
        config=image_config,
        config_bytes=config_bytes,
        blobs=blobs,
        layer_tars=tars,
    )


def build_index(images: Sequence[BuiltImage], *, oci: bool = True) -> tuple[ImageIndex, bytes]:
    """An index (or Docker manifest list) over ``images``, each entry with its platform."""
    index = ImageIndex(
        media_type=MediaType.OCI_INDEX if oci else MediaType.DOCKER_MANIFEST_LIST,
        manifests=tuple(image.descriptor(platform=image.config.platform) for image in images),
    )
    return index, index.to_bytes()
