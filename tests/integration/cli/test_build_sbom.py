"""``dockyard build --sbom`` / ``--attest type=sbom`` end to end: real sandboxed builds
whose results hold a fake dpkg database, a Python distribution and an npm package;
the built-in scanner's SPDX statements in an OCI archive's attestation manifest (beside
provenance) and as ``sbom.spdx.json`` in a local output; the build context and stages
scanned as ``BUILDKIT_SBOM_SCAN_*`` say; a generator image made here (busybox and a
shell script, BuildKit's protocol); and multi-platform through a real ``dockyardd``."""

from __future__ import annotations

import asyncio
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.cli.main import main
from tests.integration.daemon.conftest import (
    DaemonProcess,
    daemon,
    daemon_config,
    running,
    socket_dir,
)
from tests.integration.platforms import MULTI

from .conftest import all_bytes_under

__all__ = ["daemon", "daemon_config", "running", "socket_dir"]

SPDX = "https://spdx.dev/Document"
SLSA = "https://slsa.dev/provenance/v0.2"
SECRET_VALUE = "sbom-secret-4e1f0b9c"
HOST_MARKER = "host-file-the-scanner-must-not-read-7c21"
STATUS = """\
Package: hello
Status: install ok installed
Version: 2.10-3
Architecture: amd64
Maintainer: Hello Maintainers <hello@example.org>
Homepage: https://example.org/hello

Package: removed
Status: deinstall ok config-files
Version: 1.0

this line is not a field
Package: broken entry
"""
METADATA = """\
Metadata-Version: 2.1
Name: Demo_Pkg
Version: 0.4.2
License: MIT

A demo.
"""
DOCKERFILE = """\
FROM busybox
COPY status /var/lib/dpkg/status
COPY demo_pkg-0.4.2.dist-info /usr/lib/python3/dist-packages/demo_pkg-0.4.2.dist-info
COPY node_modules /app/node_modules
ARG ESCAPE
RUN mkdir -p /var/lib/dpkg/status.d && ln -s "$ESCAPE" /var/lib/dpkg/status.d/escape
RUN --mount=type=secret,id=token test -s /run/secrets/token && echo built > /built.txt
"""


def _context(root: Path, dockerfile: str = DOCKERFILE) -> Path:
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "status").write_text(STATUS)
    info = ctx / "demo_pkg-0.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    npm = ctx / "node_modules" / "@acme" / "widget"
    npm.mkdir(parents=True)
    (npm / "package.json").write_text(
        '{"name": "@acme/widget", "version": "3.1.0", "license": "ISC"}'
    )
    (ctx / "node_modules" / "bad").mkdir()
    (ctx / "node_modules" / "bad" / "package.json").write_text("{not json")
    # a symlink in the image to a file of this host: the scanner resolves it inside the
    # image (where it does not exist), never on the host
    host_file = root / "host-secret.txt"
    host_file.write_text(f"Package: {HOST_MARKER}\nVersion: 1\n")
    (root / "secret.txt").write_text(SECRET_VALUE)
    return ctx


def _build(state: Path, ctx: Path, *extra: str) -> list[str]:
    return [
        "build", "--state-dir", str(state), "--progress", "plain",
        "--secret", f"id=token,src={ctx.parent / 'secret.txt'}",
        "--build-arg", f"ESCAPE={ctx.parent / 'host-secret.txt'}", *extra, str(ctx),
    ]  # fmt: skip


def _member(tf: tarfile.TarFile, name: str) -> Any:
    data = tf.extractfile(name)
    assert data is not None
    return json.loads(data.read())


def _blob(tf: tarfile.TarFile, digest: str) -> Any:
    return _member(tf, "blobs/sha256/" + digest.removeprefix("sha256:"))


def _oci_statements(path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each image manifest's index entry of an OCI archive and its statements."""
    out = []
    with tarfile.open(path) as tf:
        (entry,) = _member(tf, "index.json")["manifests"]
        manifests = _blob(tf, entry["digest"])["manifests"]
        images = [m for m in manifests if m["platform"]["os"] != "unknown"]
        attestations = [m for m in manifests if m["platform"]["os"] == "unknown"]
        assert len(images) == len(attestations)
        for image, attestation in zip(images, attestations, strict=True):
            assert attestation["annotations"]["vnd.docker.reference.digest"] == image["digest"]
            manifest = _blob(tf, attestation["digest"])
            statements = []
            for layer in manifest["layers"]:
                assert layer["mediaType"] == "application/vnd.in-toto+json"
                statement = _blob(tf, layer["digest"])
                predicate_type = layer["annotations"]["in-toto.io/predicate-type"]
                assert predicate_type == statement["predicateType"]
                statements.append(statement)
            out.append((image, statements))
    return out


def _purls(document: dict[str, Any]) -> set[str]:
    return {
        ref["referenceLocator"]
        for package in document["packages"]
        for ref in package.get("externalRefs", [])
    }


def _check_core(document: dict[str, Any]) -> None:
    assert document["spdxVersion"] == "SPDX-2.3"
    assert document["name"] == "/run/src/core/sbom"
    purls = _purls(document)
    assert "pkg:pypi/demo-pkg@0.4.2" in purls
    assert "pkg:npm/%40acme/widget@3.1.0" in purls
    (hello,) = [p for p in purls if p.startswith("pkg:deb/")]
    assert hello.startswith("pkg:deb/debian/hello@2.10-3?arch=amd64")
    names = {p["name"] for p in document["packages"]}
    assert "removed" not in names
    assert "broken" not in names
    assert HOST_MARKER not in json.dumps(document)
    by_name = {p["name"]: p for p in document["packages"]}
    assert by_name["Demo_Pkg"]["licenseDeclared"] == "MIT"
    assert by_name["@acme/widget"]["licenseDeclared"] == "ISC"
    assert by_name["hello"]["filesAnalyzed"] is False
    (describes,) = [r for r in document["relationships"] if r["relationshipType"] == "DESCRIBES"]
    assert describes["spdxElementId"] == "SPDXRef-DOCUMENT"


def test_builtin_sbom_beside_provenance(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path)
    oci, out, tar = tmp_path / "oci.tar", tmp_path / "out", tmp_path / "files.tar"
    code = main(
        _build(state, ctx, "--sbom=true", "--provenance=true", "-t", "sbomtest:v1",
               "-o", f"type=oci,dest={oci}", "-o", f"type=local,dest={out}",
               "-o", f"type=tar,dest={tar}")
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "generating sbom using builtin scanner" in captured.err
    ((image, statements),) = _oci_statements(oci)
    assert [s["predicateType"] for s in statements] == [SPDX, SLSA]  # BuildKit's order
    sbom = statements[0]
    assert sbom["subject"] == [
        {
            "name": f"pkg:docker/sbomtest@v1?platform={image['platform']['os']}%2F"
            f"{image['platform']['architecture']}",
            "digest": {"sha256": image["digest"].removeprefix("sha256:")},
        }
    ]
    _check_core(sbom["predicate"])
    # the local output: the statement as BuildKit writes it, its subjects the files
    local = json.loads((out / "sbom.spdx.json").read_text())
    assert local["predicateType"] == SPDX
    assert {"built.txt", "var/lib/dpkg/status"} <= {s["name"] for s in local["subject"]}
    _check_core(local["predicate"])
    assert (out / "provenance.json").exists()
    with tarfile.open(tar) as tf:
        _check_core(_member(tf, "sbom.spdx.json")["predicate"])
    for _, data in all_bytes_under(out):
        assert SECRET_VALUE.encode() not in data
    assert SECRET_VALUE not in captured.err


def test_no_sbom_unless_asked(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = _context(tmp_path)
    for i, flags in enumerate([(), ("--sbom=false",), ("--attest", "type=sbom,disabled=true")]):
        out = tmp_path / f"out{i}"
        assert main(_build(state, ctx, *flags, "-o", f"type=local,dest={out}")) == 0, (
            capsys.readouterr().err
        )
        assert (out / "built.txt").exists()
        assert not (out / "sbom.spdx.json").exists()


SCAN_DOCKERFILE = """\
ARG BUILDKIT_SBOM_SCAN_CONTEXT
FROM busybox AS tools
ARG BUILDKIT_SBOM_SCAN_STAGE=true
COPY status /var/lib/dpkg/status
COPY node_modules /opt/node_modules
RUN echo "scan-arg=${BUILDKIT_SBOM_SCAN_STAGE}" > /env.txt

FROM busybox AS unused
ARG BUILDKIT_SBOM_SCAN_STAGE=true

FROM scratch
COPY --from=tools /env.txt /env.txt
"""


def test_scan_context_and_stages(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ARG BUILDKIT_SBOM_SCAN_STAGE=true`` in a stage the target needs scans it (an
    unneeded one is not built, nor scanned); the global ``ARG
    BUILDKIT_SBOM_SCAN_CONTEXT`` set by ``--build-arg`` scans the build context (as the
    build reads it). Neither value reaches a RUN's environment."""
    ctx = _context(tmp_path, SCAN_DOCKERFILE)
    out = tmp_path / "out"
    code = main(
        _build(state, ctx, "--attest", "type=sbom", "--build-arg",
               "BUILDKIT_SBOM_SCAN_CONTEXT=true", "-o", f"type=local,dest={out}")
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.glob("*.spdx.json")) == [
        "sbom-context.spdx.json", "sbom-tools.spdx.json", "sbom.spdx.json",
    ]  # fmt: skip
    assert (out / "env.txt").read_text() == "scan-arg=\n"
    core = json.loads((out / "sbom.spdx.json").read_text())["predicate"]
    assert [p["name"] for p in core["packages"]] == ["/run/src/core/sbom"]  # nothing installed
    tools = json.loads((out / "sbom-tools.spdx.json").read_text())["predicate"]
    assert tools["name"] == "/run/src/extras/sbom-tools"
    assert any(p.startswith("pkg:deb/debian/hello@") for p in _purls(tools))
    context = json.loads((out / "sbom-context.spdx.json").read_text())["predicate"]
    # the context as the build reads it (BuildKit's: the paths COPY names)
    assert _purls(context) == {"pkg:npm/%40acme/widget@3.1.0"}
    # a --build-arg alone (no ARG in the Dockerfile) scans nothing more, as BuildKit's
    out2 = tmp_path / "out2"
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    code = main(
        _build(state, ctx, "--sbom=generator=builtin", "--build-arg",
               "BUILDKIT_SBOM_SCAN_CONTEXT=true", "-o", f"type=local,dest={out2}")
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert [p.name for p in out2.glob("*.spdx.json")] == ["sbom.spdx.json"]


SCANNER_SCRIPT = r"""set -e
cd "$BUILDKIT_SCAN_DESTINATION"
ro=no
touch "$BUILDKIT_SCAN_SOURCE/probe" 2>/dev/null || ro=yes
net=$(grep -c : /proc/net/dev)
files=$(cd "$BUILDKIT_SCAN_SOURCE" && ls | tr '\n' ' ')
cat > sbom.spdx.json <<EOF
{"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document",
 "predicate": {"name": "core", "source": "$BUILDKIT_SCAN_SOURCE", "files": "$files",
 "readonly": "$ro", "interfaces": "$net", "param": "${BUILDKIT_SCAN_FLAVOR:-}"}}
EOF
if [ -n "${BUILDKIT_SCAN_SOURCE_EXTRAS:-}" ]; then
  for src in "$BUILDKIT_SCAN_SOURCE_EXTRAS"/*; do
    name=$(basename "$src")
    cat > "$name.spdx.json" <<EOF
{"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document",
 "predicate": {"name": "extra", "source": "$src"}}
EOF
  done
fi
"""
SCANNER_DOCKERFILE = """\
FROM busybox
COPY scan.sh /scan.sh
CMD ["sh", "/scan.sh"]
"""
TARGET_DOCKERFILE = """\
FROM busybox AS build
ARG BUILDKIT_SBOM_SCAN_STAGE
RUN echo made > /made.txt
FROM busybox
COPY --from=build /made.txt /made.txt
"""


def test_generator_image(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A generator image made here runs BuildKit's protocol: the result read-only at
    ``$BUILDKIT_SCAN_SOURCE``, the stage under ``$BUILDKIT_SCAN_SOURCE_EXTRAS``, no
    network but loopback, parameters as ``BUILDKIT_SCAN_*``; its files are the
    statements, core first."""
    scanner = tmp_path / "scanner"
    scanner.mkdir()
    (scanner / "Dockerfile").write_text(SCANNER_DOCKERFILE)
    (scanner / "scan.sh").write_text(SCANNER_SCRIPT)
    code = main(["build", "--state-dir", str(state), "--progress", "plain", "-t",
                 "sbom-scanner:test", str(scanner)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    target = tmp_path / "target"
    target.mkdir()
    (target / "Dockerfile").write_text(TARGET_DOCKERFILE)
    oci, out = tmp_path / "oci.tar", tmp_path / "out"
    code = main(
        ["build", "--state-dir", str(state), "--progress", "plain",
         "--attest", "type=sbom,generator=sbom-scanner:test,FLAVOR=spicy",
         "--build-arg", "BUILDKIT_SBOM_SCAN_STAGE=build",
         "-o", f"type=oci,dest={oci}", "-o", f"type=local,dest={out}", str(target)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "generating sbom using sbom-scanner:test" in captured.err
    ((image, statements),) = _oci_statements(oci)
    assert [s["predicate"]["name"] for s in statements] == ["core", "extra"]
    core, extra = statements
    assert core["subject"][0]["digest"]["sha256"] == image["digest"].removeprefix("sha256:")
    assert core["predicate"]["source"] == "/run/src/core/sbom"
    assert "made.txt" in core["predicate"]["files"].split()
    assert core["predicate"]["readonly"] == "yes"
    assert core["predicate"]["interfaces"] == "1"  # loopback only: network off
    assert core["predicate"]["param"] == "spicy"
    assert extra["predicate"]["source"] == "/run/src/extras/sbom-build"
    assert sorted(p.name for p in out.glob("*.spdx.json")) == [
        "sbom-build.spdx.json", "sbom.spdx.json"
    ]  # fmt: skip
    assert not (out / "probe").exists()


def test_generator_without_command_is_refused(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /x\n")
    code = main(["build", "--state-dir", str(state), "--progress", "plain", "-t",
                 "nocmd:test", str(ctx)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    code = main(["build", "--state-dir", str(state), "--progress", "plain",
                 "--sbom=generator=nocmd:test", "-o", f"type=local,dest={tmp_path / 'o'}",
                 str(ctx)])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert "SBOM generator nocmd:test does not have a cmd" in err
    assert "Traceback" not in err


MULTI_DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETARCH
RUN mkdir -p /out/var/lib/dpkg && printf 'Package: hello\\nVersion: 1.0\\nArchitecture: %s\\n' \
    "$TARGETARCH" > /out/var/lib/dpkg/status
FROM scratch
COPY --from=build /out/ /
"""


async def test_daemon_sbom_every_platform(
    running: DaemonProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through ``dockyardd`` (``attest:sbom``): a multi-platform OCI archive with an SBOM
    per platform, and each platform's ``sbom.spdx.json`` in a local output."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(MULTI_DOCKERFILE)
    oci, out = tmp_path / "oci.tar", tmp_path / "out"
    argv = ["--addr", f"unix://{running.socket}", "build", "--progress", "plain",
            "--platform", MULTI, "--sbom=true", "-o", f"type=oci,dest={oci}",
            "-o", f"type=local,dest={out}",
            "-o", f"type=local,dest={tmp_path / 'merged'},platform-split=false",
            str(ctx)]  # fmt: skip
    code = await asyncio.to_thread(main, argv)
    err = capsys.readouterr().err
    assert code == 0, err
    found = _oci_statements(oci)
    assert [image["platform"]["architecture"] for image, _ in found] == ["amd64", "arm64"]
    for image, statements in found:
        (statement,) = statements
        arch = image["platform"]["architecture"]
        assert statement["subject"][0]["digest"]["sha256"] == image["digest"][7:]
        assert f"pkg:deb/debian/hello@1.0?arch={arch}" in _purls(statement["predicate"])
    for arch in ("amd64", "arm64"):
        statement = json.loads((out / f"linux_{arch}" / "sbom.spdx.json").read_text())
        assert f"pkg:deb/debian/hello@1.0?arch={arch}" in _purls(statement["predicate"])
        # platforms in one directory: BuildKit's sbom.PLATFORM.spdx.json
        merged = tmp_path / "merged" / f"sbom.linux_{arch}.spdx.json"
        assert f"arch={arch}" in merged.read_text()
