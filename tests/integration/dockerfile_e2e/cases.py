"""The end-to-end cases under ``tests/data/dockerfile/e2e/<case>/`` and what a build of
them needs (a context copy, an HTTP server, a git server, generated archives).

A case directory holds ``case.toml``, a ``context/`` directory (the Dockerfile(s) and
files) and the expected results of each build it lists:

* ``peer/<build>.tree`` and ``peer/<build>.json`` — what docker's BuildKit (v0.8, in
  dockerd 20.10) produced for that build, recorded by ``peer/regenerate.py``; the test
  compares Dockyard's result with these after the build's documented ``override`` entries
  (where current BuildKit behaves differently from v0.8) are applied;
* ``expected/<build>.tree`` and ``expected/<build>.json`` — for builds whose features the
  peer lacks (``source = "docs"``): written from BuildKit's documentation, each such build
  says which in its ``note``;
* ``peer/<build>.error`` — the peer's error output, for builds that must fail.

``case.toml``::

    description = "what the case covers"
    prepare = ["archives", "http", "git", "ssh", "layout", "registry"]   # optional
    [[build]]
    name = "default"
    dockerfile = "Dockerfile"         # in context/
    target = "stage"                  # optional
    build_args = { A = "1" }          # values may use {http} and {git}
    labels = { k = "v" }
    secrets = { token = "secret.txt" }  # id = file in the case directory
    ssh = true                        # forward the harness's ssh agent as "default"
    build_contexts = { name = "dir:other" }  # dir:PATH (case dir) | image:REF | oci-layout:PATH
    tag = "dye2e-parent"              # also store the image under this name
    times = true                      # compare "created" of the image and its history
    source = "peer"                   # or "docs"
    note = "why the expected data look the way they do"
    error = { line = 3, contains = ["message a user can act on"], runs_nothing = true }
    [[build.override]]                # only with source = "peer"
    path = "/t"                       # a tree path, or "config:KEY.INDEX..." in the config
                                      # (a list of paths: the same expect for each)
    expect = ""                       # the line (tree) or JSON value (config); "" = absent
    reason = "current BuildKit removes empty mount stubs (executor/stubs.go)"

Output text is made independent of the servers' ports and of temporary paths by
replacing them with ``{http}``, ``{git}`` and ``{tmp}``.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .images import SavedImage, describe, line_path

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "dockerfile" / "e2e"
PEER_BASE = "127.0.0.1:5000/busybox:latest"
"""The peer's busybox (``make-base-images.sh``); Dockerfiles say ``FROM busybox``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorSpec:
    line: int
    contains: tuple[str, ...]
    runs_nothing: bool = False
    """The error is found before any step runs (parse and conversion errors)."""
    exit_code: int = 1
    """2 for an error in the command line (line is then 0: no Dockerfile line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    path: str
    expect: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSpec:
    case: str
    name: str
    dockerfile: str = "Dockerfile"
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    ssh: bool = False
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    tag: str | None = None
    source: str = "peer"
    note: str = ""
    error: ErrorSpec | None = None
    overrides: tuple[Override, ...] = ()
    times: bool = False
    """Compare the image's and history's ``created`` too (builds with a fixed epoch)."""

    @property
    def id(self) -> str:
        return f"{self.case}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    path: Path
    description: str
    prepare: tuple[str, ...]
    builds: tuple[BuildSpec, ...]


_BUILD_KEYS = {
    "name",
    "dockerfile",
    "target",
    "build_args",
    "labels",
    "secrets",
    "ssh",
    "build_contexts",
    "tag",
    "source",
    "note",
    "error",
    "override",
    "times",
}


def _build(case: str, raw: Mapping[str, Any]) -> BuildSpec:
    unknown = set(raw) - _BUILD_KEYS
    if unknown:
        raise ValueError(f"{case}: unknown build keys {sorted(unknown)}")
    error = raw.get("error")
    source = raw.get("source", "peer")
    if source not in ("peer", "docs"):
        raise ValueError(f"{case}: source must be peer or docs")
    if source == "docs" and not raw.get("note"):
        raise ValueError(f"{case}/{raw['name']}: a docs build needs a note")
    return BuildSpec(
        case=case,
        name=raw["name"],
        dockerfile=raw.get("dockerfile", "Dockerfile"),
        target=raw.get("target"),
        build_args=dict(raw.get("build_args", {})),
        labels=dict(raw.get("labels", {})),
        secrets=dict(raw.get("secrets", {})),
        ssh=bool(raw.get("ssh", False)),
        build_contexts=dict(raw.get("build_contexts", {})),
        tag=raw.get("tag"),
        source=source,
        note=raw.get("note", ""),
        error=(
            ErrorSpec(
                line=int(error["line"]),
                contains=tuple(error.get("contains", ())),
                runs_nothing=bool(error.get("runs_nothing", False)),
                exit_code=int(error.get("exit_code", 1)),
            )
            if error is not None
            else None
        ),
        times=bool(raw.get("times", False)),
        overrides=tuple(
            Override(path=path, expect=o["expect"], reason=o["reason"])
            for o in raw.get("override", ())
            for path in ([o["path"]] if isinstance(o["path"], str) else o["path"])
        ),
    )


def load_case(path: Path) -> Case:
    raw = tomllib.loads((path / "case.toml").read_text())
    builds = tuple(_build(path.name, b) for b in raw["build"])
    prepare = tuple(raw.get("prepare", ()))
    unknown = set(prepare) - set(PREPARERS)
    if unknown:
        raise ValueError(f"{path.name}: unknown prepare steps {sorted(unknown)}")
    return Case(
        name=path.name,
        path=path,
        description=raw["description"],
        prepare=prepare,
        builds=builds,
    )


def load_cases() -> list[Case]:
    return [load_case(p) for p in sorted(DATA.iterdir()) if (p / "case.toml").is_file()]


# --- what a case needs while it builds ------------------------------------------------


@dataclass
class Workspace:
    """A case's context copy and the servers it runs; ``values`` fill ``{name}``
    placeholders of build args (and are replaced back in outputs)."""

    case: Case
    root: Path
    values: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def context(self) -> Path:
        return self.root / "context"

    def fill(self, text: str) -> str:
        for name, value in self.values.items():
            text = text.replace("{" + name + "}", value)
        return text

    def unfill(self, text: str) -> str:
        for name, value in sorted(self.values.items(), key=lambda kv: -len(kv[1])):
            text = text.replace(value, "{" + name + "}")
        return text


def _tar_bytes() -> bytes:
    """A small archive: a directory, files with modes and owners, a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.mtime = 1700000000
            info.uid, info.gid = (1234, 5678) if "owned" in name else (0, 0)
            info.linkname = link
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("pkg", tarfile.DIRTYPE, 0o755)
        add("pkg/readme.txt", tarfile.REGTYPE, 0o644, b"from an archive\n")
        add("pkg/run.sh", tarfile.REGTYPE, 0o755, b"#!/bin/sh\necho run\n")
        add("pkg/owned.txt", tarfile.REGTYPE, 0o640, b"owned by 1234:5678\n")
        add("pkg/link", tarfile.SYMTYPE, 0o777, link="readme.txt")
    return buf.getvalue()


def prepare_archives(ws: Workspace) -> None:
    """``archives/files.tar{,.gz,.bz2,.xz,.zst}`` and ``archives/plain.txt.gz`` (a
    compressed file that is no archive) in the context."""
    import zstandard

    out = ws.context / "archives"
    out.mkdir(exist_ok=True)
    data = _tar_bytes()
    (out / "files.tar").write_bytes(data)
    (out / "files.tar.gz").write_bytes(gzip.compress(data, mtime=0))
    (out / "files.tar.bz2").write_bytes(bz2.compress(data))
    (out / "files.tar.xz").write_bytes(lzma.compress(data))
    (out / "files.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (out / "plain.txt.gz").write_bytes(gzip.compress(b"not an archive\n", mtime=0))


HTTP_FILES: Mapping[str, bytes] = {
    "/tool.sh": b"#!/bin/sh\necho tool\n",
    "/dir/data.txt": b"downloaded data\n",
    "/archive.tar.gz": gzip.compress(_tar_bytes(), mtime=0),
}
"""What the case HTTP server serves (the sha256 of each is fixed: --checksum uses it)."""


def start_http(ws: Workspace, stack: contextlib.ExitStack) -> None:
    from dockyard.testing.httpserver import HttpTestServer, http_date

    server = stack.enter_context(HttpTestServer())
    for path, body in HTTP_FILES.items():
        server.add(path, body, last_modified=http_date(1700000000))
    ws.values["http"] = server.url("").rstrip("/")


def start_git(ws: Workspace, stack: contextlib.ExitStack) -> None:
    from dockyard.testing.gitserver import GitHttpServer, TestRepo

    root = ws.root / "git"
    repo = TestRepo(root / "work")
    repo.commit({"README.md": "first\n", "src/main.sh": "echo v1\n"}, "first")
    repo.tag("v1")
    ws.values["git_v1"] = repo.rev_parse("v1")
    repo.commit({"src/main.sh": "echo v2\n", "src/extra.txt": "extra\n"}, "second")
    repo.git("clone", "--quiet", "--bare", str(repo.path), str(root / "served" / "repo.git"))
    server = stack.enter_context(GitHttpServer(root / "served"))
    ws.values["git"] = server.url("repo.git")


def start_ssh_agent(ws: Workspace, stack: contextlib.ExitStack) -> None:
    keydir = ws.root / "ssh"
    keydir.mkdir()
    key = keydir / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dye2e", "-f", str(key)],
        check=True,
    )
    sock = keydir / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)

    def stop() -> None:
        proc.send_signal(signal.SIGTERM)
        proc.wait()

    stack.callback(stop)
    for _ in range(500):
        if sock.exists():
            break
        time.sleep(0.01)
    subprocess.run(
        ["ssh-add", "-q", str(key)],
        check=True,
        env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
        capture_output=True,
    )
    ws.env["SSH_AUTH_SOCK"] = str(sock)


def prepare_layout(ws: Workspace) -> None:
    """An OCI layout directory (``{layout}``) holding one image tagged ``v1``: a layer
    with ``/etc/layout-release``."""
    root = ws.root / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("etc", None), ("etc/layout-release", b"from an OCI layout\n")):
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "WorkingDir": "/etc"},
            "rootfs": {"type": "layers", "diff_ids": [blob(layer)]},
            "history": [{"created_by": "dockerfile e2e layout"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blob(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    ws.values["layout"] = str(root)


def start_registry(ws: Workspace, stack: contextlib.ExitStack) -> None:
    """An empty registry on a loopback port (``{registry}``: HOST:PORT), which answers
    "manifest unknown" at once."""
    from dockyard.testing.registry import start_registry as start

    registry = start(ws.root / "registry")
    stack.callback(registry.close)
    ws.values["registry"] = registry.host


Preparer = Callable[[Workspace, contextlib.ExitStack], None]

PREPARERS: dict[str, Preparer] = {
    "archives": lambda ws, _stack: prepare_archives(ws),
    "http": start_http,
    "git": start_git,
    "ssh": start_ssh_agent,
    "layout": lambda ws, _stack: prepare_layout(ws),
    "registry": start_registry,
}


def _normalize_modes(root: Path) -> None:
    """0755 directories, 0644 files (0755 when executable): what a git checkout under
    umask 022 gives, whatever the umask of this one."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


@contextlib.contextmanager
def workspace(case: Case, root: Path) -> Iterator[Workspace]:
    """``case``'s context copied under ``root``, with what its ``prepare`` asks for."""
    ws = Workspace(case=case, root=root)
    shutil.copytree(case.path / "context", ws.context, symlinks=True)
    _normalize_modes(ws.context)
    ws.values["tmp"] = str(root)
    with contextlib.ExitStack() as stack:
        for step in case.prepare:
            PREPARERS[step](ws, stack)
        yield ws


# --- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """A build's tree lines and config subset, with placeholders for run-specific
    values."""

    tree: list[str]
    config: dict[str, Any]

    def tree_text(self) -> str:
        return "".join(line + "\n" for line in self.tree)

    def config_text(self) -> str:
        return json.dumps(self.config, indent=2, sort_keys=True) + "\n"


def result_of(image: SavedImage, base: SavedImage, ws: Workspace, *, times: bool = False) -> Result:
    tree, config = describe(image, base, times=times)
    config = json.loads(ws.unfill(json.dumps(config)))
    return Result(tree=[ws.unfill(line) for line in tree], config=config)


def read_result(directory: Path, build: str) -> Result:
    tree = (directory / f"{build}.tree").read_text().splitlines()
    config = json.loads((directory / f"{build}.json").read_text())
    return Result(tree=tree, config=config)


def write_result(directory: Path, build: str, result: Result) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{build}.tree").write_text(result.tree_text())
    (directory / f"{build}.json").write_text(result.config_text())


def _set_config(config: dict[str, Any], path: str, expect: str) -> None:
    """Set (``expect`` as JSON) or delete (``expect == ""``) the value at ``path`` of
    ``config``: keys and list indices joined by dots (``history.3.created_by``)."""
    *parents, last = path.split(".")
    node: Any = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if expect == "":
        del node[key]
    else:
        node[key] = json.loads(expect)


def apply_overrides(result: Result, overrides: tuple[Override, ...]) -> Result:
    """``result`` (the peer's) with the documented differences of current BuildKit."""
    tree = {line_path(line): line for line in result.tree}
    config = json.loads(json.dumps(result.config))
    for o in overrides:
        if o.path.startswith("config:"):
            _set_config(config, o.path.removeprefix("config:"), o.expect)
        elif o.expect == "":
            tree.pop(o.path, None)
        else:
            if line_path(o.expect) != o.path:
                raise ValueError(f"override of {o.path} names another path: {o.expect}")
            tree[o.path] = o.expect
    return Result(tree=[tree[p] for p in sorted(tree)], config=config)


def expected_result(spec: BuildSpec) -> Result:
    case_dir = DATA / spec.case
    if spec.source == "docs":
        return read_result(case_dir / "expected", spec.name)
    return apply_overrides(read_result(case_dir / "peer", spec.name), spec.overrides)


FROM_BUSYBOX = re.compile(
    r"^(\s*FROM\s+(?:--platform=\S+\s+)?|\s*ARG\s+\w+=)busybox(?=\s|$)", re.I | re.M
)
FROM_FLAG_BUSYBOX = re.compile(r"(--(?:mount=\S*\b)?from=)busybox(?=[\s,]|$)")


def peer_dockerfile(text: str) -> str:
    """The Dockerfile as the peer builds it: ``FROM busybox`` (or an ``ARG`` defaulting
    to ``busybox`` for a FROM, ``--from=busybox``, ``--mount=...,from=busybox``) names
    its registry's."""
    text = FROM_BUSYBOX.sub(lambda m: m.group(1) + PEER_BASE, text)
    return FROM_FLAG_BUSYBOX.sub(lambda m: m.group(1) + PEER_BASE, text)
