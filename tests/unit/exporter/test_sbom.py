"""The built-in SBOM scanner (golden SPDX document of a fake root filesystem; malformed
databases; paths kept inside the root), reading a generator's statements, and the
``--sbom`` / ``--attest type=sbom`` / ``attest:sbom`` parsers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import ContentError, UsageError
from dockyard.exporter import (
    SPDX_DOCUMENT,
    Attestation,
    SbomOptions,
    attest_type,
    parse_attest_flag,
    parse_sbom_attest,
    parse_sbom_flag,
    read_sbom_statements,
    sbom_attestation,
    scan_rootfs,
)
from dockyard.exporter._attest import statement

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "sbom" / "rootfs-document.json"
CREATED = "2024-05-01T12:00:00Z"

DPKG_STATUS = """\
Package: libc6
Status: install ok installed
Priority: optional
Version: 2.36-9+deb12u4
Architecture: amd64
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Source: glibc
Homepage: https://www.gnu.org/software/libc/libc.html
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: oldpkg
Status: deinstall ok config-files
Version: 0.1

 a continuation line without a field
Package: no-version
Architecture: all

Package: busybox
Status: install ok installed
Version: 1:1.35.0-4+b3
Architecture: amd64
"""
DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Files: *
License: LGPL-2.1+

Files: debian/*
License: GPL-2+
"""
APK_INSTALLED = """\
C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
T:the musl c library
U:https://musl.libc.org/

P:broken-no-version
A:x86_64

P:ssl_client
V:3.1.4-r0
A:x86_64
L:OpenSSL AND MIT
o:openssl
"""
METADATA = """\
Metadata-Version: 2.1
Name: Requests_Toolbelt
Version: 1.0.0
Summary: A utility belt for advanced users of python-requests
Home-page: https://toolbelt.readthedocs.io/
Author: Ian Cordasco
License: Apache 2.0

long description
"""


def _fake_rootfs(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian"\n')
    dpkg = root / "var" / "lib" / "dpkg"
    dpkg.mkdir(parents=True)
    (dpkg / "status").write_text(DPKG_STATUS)
    status_d = dpkg / "status.d"
    status_d.mkdir()
    (status_d / "tzdata").write_text(
        "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n"
    )
    (status_d / "tzdata.md5sums").write_text("d41d8cd98f00b204e9800998ecf8427e  usr/x\n")
    doc = root / "usr" / "share" / "doc" / "libc6"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(DEP5)
    apk = root / "lib" / "apk" / "db"
    apk.mkdir(parents=True)
    (apk / "installed").write_text(APK_INSTALLED)
    site = root / "usr" / "lib" / "python3.11" / "site-packages"
    info = site / "requests_toolbelt-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(METADATA)
    egg = site / "legacy.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Name: legacy\nVersion: 0.9\nLicense: BSD\n")
    (site / "flat-2.0.egg-info").write_text("Name: flat\nVersion: 2.0\nLicense: UNKNOWN\n")
    (site / "broken.dist-info").mkdir()
    (site / "broken.dist-info" / "METADATA").write_bytes(b"\xff\xfe garbage")
    modules = root / "srv" / "app" / "node_modules"
    (modules / "@scope" / "pkg").mkdir(parents=True)
    (modules / "@scope" / "pkg" / "package.json").write_text(
        json.dumps({"name": "@scope/pkg", "version": "1.2.3", "license": "(MIT OR Apache-2.0)"})
    )
    (modules / "lodash").mkdir()
    (modules / "lodash" / "package.json").write_text(
        json.dumps({"name": "lodash", "version": "4.17.21", "licenses": [{"type": "MIT"}]})
    )
    (modules / "lodash" / "node_modules" / "nested").mkdir(parents=True)
    (modules / "lodash" / "node_modules" / "nested" / "package.json").write_text(
        json.dumps({"name": "nested", "version": "0.0.1", "license": {"type": "ISC"}})
    )
    (modules / "not-json").mkdir()
    (modules / "not-json" / "package.json").write_text("{")
    (modules / "array").mkdir()
    (modules / "array" / "package.json").write_text("[1, 2]")
    (modules / "numbers").mkdir()
    (modules / "numbers" / "package.json").write_text('{"name": 5, "version": "1"}')
    return root


def _purls(document: dict[str, Any]) -> list[str]:
    return [
        ref["referenceLocator"]
        for package in document["packages"]
        for ref in package.get("externalRefs", [])
    ]


def test_golden_document(tmp_path: Path) -> None:
    root = _fake_rootfs(tmp_path / "rootfs")
    document = scan_rootfs(root, name="sbom", created=CREATED)
    assert document == json.loads(GOLDEN.read_text())
    # the same tree scans to the same document (its namespace too)
    assert scan_rootfs(root, name="sbom", created=CREATED) == document


def test_what_is_found_and_skipped(tmp_path: Path) -> None:
    document = scan_rootfs(_fake_rootfs(tmp_path / "rootfs"), name="sbom", created=CREATED)
    purls = _purls(document)
    assert "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&distro=debian-12&upstream=glibc" in (
        purls
    )
    assert "pkg:deb/debian/busybox@1:1.35.0-4+b3?arch=amd64&distro=debian-12" in purls
    assert "pkg:deb/debian/tzdata@2024a-0+deb12u1?arch=all&distro=debian-12" in purls
    assert "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64&distro=debian-12" in purls
    assert "pkg:pypi/requests-toolbelt@1.0.0" in purls
    assert "pkg:pypi/legacy@0.9" in purls
    assert "pkg:pypi/flat@2.0" in purls
    assert "pkg:npm/%40scope/pkg@1.2.3" in purls
    assert "pkg:npm/nested@0.0.1" in purls  # node_modules inside a package
    names = {p["name"] for p in document["packages"]}
    for skipped in ("oldpkg", "no-version", "broken-no-version", "not-json", "array"):
        assert skipped not in names
    licenses = {p["name"]: p["licenseDeclared"] for p in document["packages"]}
    assert licenses["libc6"] == "LGPL-2.1+ AND GPL-2+"  # the DEP-5 copyright file
    assert licenses["ssl_client"] == "OpenSSL AND MIT"
    assert licenses["@scope/pkg"] == "(MIT OR Apache-2.0)"
    assert licenses["lodash"] == "MIT"
    assert licenses["nested"] == "ISC"
    assert licenses["flat"] == "NOASSERTION"
    assert licenses["Requests_Toolbelt"] == "LicenseRef-Apache-2.0"
    assert {"licenseId": "LicenseRef-Apache-2.0", "extractedText": "Apache 2.0"} in document[
        "hasExtractedLicensingInfos"
    ]
    root_id = document["packages"][0]["SPDXID"]
    relationships = document["relationships"]
    assert relationships[0] == {
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relatedSpdxElement": root_id,
        "relationshipType": "DESCRIBES",
    }
    contained = {r["relatedSpdxElement"] for r in relationships[1:]}
    assert contained == {p["SPDXID"] for p in document["packages"][1:]}
    assert all(p["filesAnalyzed"] is False for p in document["packages"])


def test_paths_stay_inside_the_root(tmp_path: Path) -> None:
    """Absolute and ``..`` symlinks resolve inside the scanned root; a symlinked
    directory is not walked; a FIFO is not read (nor blocks the scan)."""
    outside = tmp_path / "outside"
    (outside / "site-packages" / "leak-1.0.dist-info").mkdir(parents=True)
    (outside / "site-packages" / "leak-1.0.dist-info" / "METADATA").write_text(
        "Name: leak\nVersion: 1.0\n"
    )
    (outside / "status").write_text("Package: leaked\nVersion: 1\n")
    root = tmp_path / "rootfs"
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").symlink_to(outside / "status")
    (root / "lib" / "apk" / "db").mkdir(parents=True)
    (root / "lib" / "apk" / "db" / "installed").symlink_to("../../../../outside/status")
    (root / "usr" / "lib" / "python3").mkdir(parents=True)
    (root / "usr" / "lib" / "python3" / "site-packages").symlink_to(outside / "site-packages")
    (root / "etc").mkdir()
    os.mkfifo(root / "etc" / "os-release")
    # inside the root, an absolute link resolves against the root: this one is found
    (root / "real").mkdir()
    (root / "real" / "status").write_text("Package: inside\nVersion: 2\n")
    (root / "var" / "lib" / "dpkg" / "status.d").mkdir()
    (root / "var" / "lib" / "dpkg" / "status.d" / "inside").symlink_to("/real/status")
    document = scan_rootfs(root, name="sbom", created=CREATED)
    names = {p["name"] for p in document["packages"][1:]}
    assert names == {"inside"}


def test_empty_and_missing_roots(tmp_path: Path) -> None:
    document = scan_rootfs(None, name="sbom-context", created=CREATED)
    assert document["name"] == "/run/src/extras/sbom-context"
    assert len(document["packages"]) == 1  # the scanned filesystem itself
    empty = scan_rootfs(tmp_path, name="sbom-build", created=CREATED)
    assert empty["packages"][0]["name"] == "/run/src/extras/sbom-build"
    with pytest.raises(Exception, match="cannot scan"):
        scan_rootfs(tmp_path / "missing", name="sbom", created=CREATED)


@pytest.mark.parametrize(
    "status",
    [
        "",
        "\n\n\n",
        "Package\nVersion\n",
        "Package: x\nVersion: 1\nStatus: install ok half-installed\n",
        ": no key\n\tcontinued\n",
        "Package: a b\nVersion: 1\n",
        "\x00\x01binary",
    ],
)
def test_malformed_dpkg_status_is_skipped(tmp_path: Path, status: str) -> None:
    (tmp_path / "var" / "lib" / "dpkg").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "dpkg" / "status").write_text(status)
    document = scan_rootfs(tmp_path, name="sbom", created=CREATED)
    assert len(document["packages"]) == 1


def test_attestation_file_name() -> None:
    attestation = sbom_attestation({"spdxVersion": "SPDX-2.3"}, "sbom-context")
    assert attestation.path == "sbom-context.spdx.json"
    assert attestation.predicate_type == SPDX_DOCUMENT
    assert attestation.subjects is None


def _write(root: Path, name: str, value: object) -> None:
    (root / name).write_text(value if isinstance(value, str) else json.dumps(value))


def test_generator_statements(tmp_path: Path) -> None:
    _write(tmp_path, "z-extra.spdx.json", {"predicateType": SPDX_DOCUMENT, "predicate": {"n": 2}})
    _write(
        tmp_path,
        "sbom.spdx.json",
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SPDX_DOCUMENT,
            "subject": [],
            "predicate": {"n": 1},
        },
    )
    _write(
        tmp_path,
        "a-raw.json",
        {
            "predicateType": "https://cyclonedx.org/bom",
            "subject": [{"name": "thing", "digest": {"sha256": "ab"}}],
            "predicate": {"n": 3},
        },
    )
    found = read_sbom_statements(tmp_path, generator="g")
    assert [a.path for a in found] == ["sbom.spdx.json", "a-raw.json", "z-extra.spdx.json"]
    assert found[0] == Attestation(
        predicate_type=SPDX_DOCUMENT, predicate={"n": 1}, path="sbom.spdx.json"
    )
    assert found[1].subjects == ({"name": "thing", "digest": {"sha256": "ab"}},)
    made = statement(found[1], [{"name": "image", "digest": {"sha256": "cd"}}])
    assert made["subject"] == [{"name": "thing", "digest": {"sha256": "ab"}}]  # raw kept
    made = statement(found[0], [{"name": "image", "digest": {"sha256": "cd"}}])
    assert made["subject"] == [{"name": "image", "digest": {"sha256": "cd"}}]
    assert read_sbom_statements(None, generator="g") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot decode in-toto statement"),
        ('{"predicateType": "x", "predicate": {}} {}', "cannot decode"),
        ("[1]", "JSON object"),
        ('{"predicate": {}}', "no predicateType"),
        ('{"predicateType": "https://slsa.dev/provenance/v1", "predicate": {}}', "provenance"),
        ('{"predicateType": "x", "predicate": "text"}', "predicate is not a JSON object"),
        ('{"predicateType": "x", "predicate": {}, "subject": [1]}', "subjects are malformed"),
    ],
)
def test_bad_generator_statements(tmp_path: Path, content: str, message: str) -> None:
    _write(tmp_path, "sbom.spdx.json", content)
    with pytest.raises(ContentError, match=message) as info:
        read_sbom_statements(tmp_path, generator="my/scanner")
    assert "SBOM generator my/scanner: sbom.spdx.json" in info.value.message


def test_generator_output_must_be_regular_files(tmp_path: Path) -> None:
    (tmp_path / "sbom.spdx.json").mkdir()
    with pytest.raises(ContentError, match="not a regular file"):
        read_sbom_statements(tmp_path, generator="g")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("true", SbomOptions()),
        ("1", SbomOptions()),
        ("false", None),
        ("generator=builtin", SbomOptions()),
        ("generator=example.com/scanner:1", SbomOptions(generator="example.com/scanner:1")),
        ("generator=img,disabled=true", None),
        ("generator=img,mode=deep", SbomOptions(generator="img", params={"mode": "deep"})),
    ],
)
def test_sbom_flag(flag: str, expected: SbomOptions | None) -> None:
    assert parse_sbom_flag(flag) == expected


def test_attest_flags() -> None:
    assert attest_type("type=sbom,generator=x") == "sbom"
    assert attest_type("type=provenance") == "provenance"
    assert parse_sbom_attest("type=sbom") == SbomOptions()
    assert parse_sbom_attest("type=sbom,generator=x") == SbomOptions(generator="x")
    assert parse_sbom_attest("type=sbom,disabled=true") is None
    for bad in ("generator=x", "type=vex", ""):
        with pytest.raises(UsageError):
            attest_type(bad)
    for bad in ("type=provenance", "type=sbom,generator=", "type=sbom,disabled=maybe"):
        with pytest.raises(UsageError):
            parse_sbom_attest(bad)
    with pytest.raises(UsageError):
        parse_attest_flag("type=sbom")  # the provenance parser's


def test_attr_round_trip() -> None:
    for options in (
        SbomOptions(),
        SbomOptions(generator="example.com/scan,ner:1"),
        SbomOptions(generator="g", params={"a": "1", "b": "x,y"}),
    ):
        assert SbomOptions.from_attr(options.to_attr()) == options
    assert SbomOptions.from_attr("") == SbomOptions()
    assert SbomOptions.from_attr("false") is None
    assert SbomOptions().builtin
    assert not SbomOptions(generator="g").builtin
