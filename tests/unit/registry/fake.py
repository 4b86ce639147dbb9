"""An in-memory registry behind ``httpx.MockTransport``, with failure injection."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from dockyard.core import Digest
from dockyard.oci import MediaType

MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
UPLOADS = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/$")
UPLOAD = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[0-9]+)$")
REALM = "https://auth.test/token"


class BrokenStream(httpx.AsyncByteStream):
    """Yields ``data`` then fails like a connection cut short."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.data:
            yield self.data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


@dataclass
class FakeRegistry:
    """Serves ``manifests[(repo, tag-or-digest)]`` and ``blobs[digest]`` for any host.

    ``auth``: ``None``, ``"basic"`` or ``"bearer"`` (tokens from ``REALM``; anonymous
    tokens may pull when ``anonymous_pull``). Failure knobs: ``cut_blob_gets`` (the next
    N blob GETs break after ``cut_at`` bytes), ``fail_next`` (statuses for the next
    requests), ``honor_range``, ``down_schemes`` (schemes that refuse connections), ``tls_only`` (plain
    HTTP requests get the 400 a TLS server answers them with).
    """

    auth: str | None = None
    users: dict[str, str] = field(default_factory=lambda: {"user": "pass"})
    anonymous_pull: bool = True
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    repo_blobs: dict[str, set[str]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)
    cut_blob_gets: int = 0
    cut_at: int = 10
    fail_next: list[int] = field(default_factory=list)
    fail_uploads: list[int] = field(default_factory=list)
    honor_range: bool = True
    down_schemes: set[str] = field(default_factory=set)
    tls_only: bool = False
    down_hosts: set[str] = field(default_factory=set)
    missing_hosts: set[str] = field(default_factory=set)
    lie_about_digest: bool = False
    uploads: dict[str, bytearray] = field(default_factory=dict)
    next_upload: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- content ----------------------------------------------------------------------

    def add_blob(self, repo: str, data: bytes) -> Digest:
        digest = Digest.from_bytes(data)
        self.blobs[digest] = data
        self.repo_blobs.setdefault(repo, set()).add(digest)
        return digest

    def add_manifest(self, repo: str, data: bytes, media_type: str, tag: str = "") -> Digest:
        digest = Digest.from_bytes(data)
        self.manifests[(repo, digest)] = (media_type, data)
        if tag:
            self.manifests[(repo, tag)] = (media_type, data)
        return digest

    # -- auth -------------------------------------------------------------------------

    def _token_for(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        if request.method == "POST":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            if form.get("refresh_token") != "good-refresh":
                return httpx.Response(401, json={"error": "invalid_grant"})
            scopes = form.get("scope", "").replace("%3A", ":").replace("%2C", ",").split("+")
            return httpx.Response(200, json={"access_token": "tok " + " ".join(scopes)})
        user = ""
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != password:
                return httpx.Response(401, json={"details": "bad credentials"})
        scopes = request.url.params.get_list("scope")
        granted = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            acts = actions.split(",") if user else (["pull"] if self.anonymous_pull else [])
            acts = [a for a in actions.split(",") if a in acts]
            if acts:
                granted.append(f"{kind}:{name}:{','.join(acts)}")
        return httpx.Response(200, json={"token": "tok " + " ".join(granted), "expires_in": 300})

    def _authorized(self, request: httpx.Request, repo: str, action: str) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        if self.auth == "basic":
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if self.users.get(user) == password:
                    return None
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if self.auth == "bearer":
            if header.startswith("Bearer tok "):
                for scope in header[len("Bearer tok ") :].split():
                    _, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    if name == repo and action in actions.split(","):
                        return None
            scope = f"repository:{repo}:{action}"
            challenge = f'Bearer realm="{REALM}",service="fake",scope="{scope}"'
            if header:
                challenge += ',error="insufficient_scope"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return None

    # -- the API ----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(REALM):
            return self._token_for(request)
        self.requests.append(request)
        if request.url.scheme in self.down_schemes or request.url.host in self.down_hosts:
            raise httpx.ConnectError("connection refused", request=request)
        if self.tls_only and request.url.scheme == "http":
            return httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.\n")
        if self.fail_next:
            return httpx.Response(self.fail_next.pop(0))
        path = request.url.path
        if path == "/v2/":
            if self.auth == "basic":
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
            if self.auth == "bearer":
                return httpx.Response(
                    401, headers={"WWW-Authenticate": f'Bearer realm="{REALM}",service="fake"'}
                )
            return httpx.Response(200, json={})
        if request.url.host in self.missing_hosts:
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
        for pattern, method in (
            (MANIFEST, self._manifest),
            (BLOB, self._blob),
            (UPLOADS, self._start_upload),
            (UPLOAD, self._upload),
        ):
            match = pattern.match(path)
            if match:
                return method(request, **match.groupdict())
        return httpx.Response(404)

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        denied = self._authorized(request, repo, "push" if request.method == "PUT" else "pull")
        if denied is not None:
            return denied
        if request.method == "PUT":
            data = request.content
            digest = Digest.from_bytes(data)
            media_type = request.headers["content-type"]
            self.manifests[(repo, digest)] = (media_type, data)
            self.manifests[(repo, ref)] = (media_type, data)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((repo, ref))
        if found is None:
            return httpx.Response(
                404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}
            )
        media_type, data = found
        digest = Digest.from_bytes(data)
        if self.lie_about_digest:
            digest = Digest.from_bytes(b"something else")
        headers = {
            "Content-Type": media_type,
            "Docker-Content-Digest": digest,
            "Content-Length": str(len(data)),
        }
        if request.method == "HEAD":
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=data)

    def _blob(self, request: httpx.Request, repo: str, digest: str) -> httpx.Response:
        denied = self._authorized(request, repo, "pull")
        if denied is not None:
            return denied
        data = self.blobs.get(digest)
        if data is None or digest not in self.repo_blobs.get(repo, set()):
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        status, start = 200, 0
        range_header = request.headers.get("range", "")
        if range_header and self.honor_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            status = 206
        body = data[start:]
        headers = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if self.cut_blob_gets:
            self.cut_blob_gets -= 1
            return httpx.Response(status, headers=headers, stream=BrokenStream(body[: self.cut_at]))
        return httpx.Response(status, headers=headers, content=body)

    def _start_upload(self, request: httpx.Request, repo: str) -> httpx.Response:
        denied = self._authorized(request, repo, "push")
        if denied is not None:
            return denied
        mount = request.url.params.get("mount")
        source = request.url.params.get("from")
        if (
            mount
            and source
            and self._authorized(request, source, "pull") is None
            and mount in self.repo_blobs.get(source, set())
        ):
            self.repo_blobs.setdefault(repo, set()).add(mount)
            return httpx.Response(201, headers={"Docker-Content-Digest": mount})
        self.next_upload += 1
        upload = str(self.next_upload)
        self.uploads[upload] = bytearray()
        return httpx.Response(
            202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=s{upload}"}
        )

    def _upload(self, request: httpx.Request, repo: str, id: str) -> httpx.Response:
        denied = self._authorized(request, repo, "push")
        if denied is not None:
            return denied
        if self.fail_uploads:
            return httpx.Response(self.fail_uploads.pop(0))
        buffer = self.uploads.get(id)
        if buffer is None:
            return httpx.Response(404, json={"errors": [{"code": "BLOB_UPLOAD_UNKNOWN"}]})
        if request.method == "PATCH":
            content_range = request.headers.get("content-range", "")
            if content_range and int(content_range.split("-")[0]) != len(buffer):
                return httpx.Response(416)
            buffer += request.content
            return httpx.Response(
                202,
                headers={
                    "Location": f"/v2/{repo}/blobs/uploads/{id}?_state=p{len(buffer)}",
                    "Range": f"0-{len(buffer) - 1}",
                },
            )
        if request.method == "PUT":
            buffer += request.content
            digest = request.url.params["digest"]
            if Digest.from_bytes(bytes(buffer)) != digest:
                return httpx.Response(
                    400, json={"errors": [{"code": "DIGEST_INVALID", "message": "no match"}]}
                )
            self.add_blob(repo, bytes(buffer))
            del self.uploads[id]
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(405)


def image_documents(arch: str = "amd64") -> tuple[bytes, bytes, bytes]:
    """(config, layer, manifest) bytes of a tiny image."""
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["A=1"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "d" * 64]},
        }
    ).encode()
    layer = (arch * 50).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": {
                "mediaType": MediaType.OCI_CONFIG,
                "digest": Digest.from_bytes(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": MediaType.OCI_LAYER_GZIP,
                    "digest": Digest.from_bytes(layer),
                    "size": len(layer),
                }
            ],
        },
        indent=2,
    ).encode()
    return config, layer, manifest
