"""The built-in SBOM scanner and a generator's statements against hostile input: special
files never opened on the host, bounded parsing, limits on what a scan may hold, SPDX
identifiers and license expressions that stay valid whatever the package databases say."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from dockyard.core import ContentError
from dockyard.exporter import _sbom, read_sbom_statements, scan_rootfs

CREATED = "2024-05-01T12:00:00Z"
_O_PATH = getattr(os, "O_PATH", 0)
_SPDX_REF = re.compile(r"(SPDXRef|LicenseRef)-[A-Za-z0-9.\-]+")


@pytest.fixture
def special_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every FIFO or device opened for reading or writing (not an ``O_PATH`` handle):
    opening one on the host runs its driver (a watchdog, a tape) or blocks."""
    real = os.open
    found: list[str] = []

    def recording(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        fd = real(path, flags, mode, dir_fd=dir_fd)
        if not flags & _O_PATH:
            kind = stat.S_IFMT(os.fstat(fd).st_mode)
            if kind in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
                found.append(os.fspath(path))
        return fd

    monkeypatch.setattr(os, "open", recording)
    return found


def _dpkg(root: Path, text: str) -> None:
    (root / "var" / "lib" / "dpkg").mkdir(parents=True, exist_ok=True)
    (root / "var" / "lib" / "dpkg" / "status").write_text(text)


def test_scanner_never_opens_a_fifo_or_device(tmp_path: Path, special_opens: list[str]) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc" / "os-release")
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    os.mkfifo(root / "var" / "lib" / "dpkg" / "status")
    (root / "lib" / "apk" / "db").mkdir(parents=True)
    os.mkfifo(root / "lib" / "apk" / "db" / "installed")
    info = root / "usr" / "lib" / "python3" / "site-packages" / "x-1.dist-info"
    info.mkdir(parents=True)
    os.mkfifo(info / "METADATA")
    (root / "node_modules" / "x").mkdir(parents=True)
    os.mkfifo(root / "node_modules" / "x" / "package.json")
    (root / "usr" / "share" / "doc" / "pkg").mkdir(parents=True)
    os.mkfifo(root / "usr" / "share" / "doc" / "pkg" / "copyright")
    (root / "var" / "lib" / "dpkg" / "status.d").mkdir()
    (root / "var" / "lib" / "dpkg" / "status.d" / "pkg").write_text("Package: pkg\nVersion: 1\n")
    if os.geteuid() == 0:  # a character device (the numbers of /dev/null: harmless here)
        os.mknod(
            root / "var" / "lib" / "dpkg" / "status.d" / "dev",
            stat.S_IFCHR | 0o600,
            os.makedev(1, 3),
        )
    document = scan_rootfs(root, name="sbom", created=CREATED)
    assert [p["name"] for p in document["packages"][1:]] == ["pkg"]
    assert special_opens == []


def test_generator_output_fifo_is_not_opened(tmp_path: Path, special_opens: list[str]) -> None:
    os.mkfifo(tmp_path / "sbom.spdx.json")
    with pytest.raises(ContentError, match="not a regular file"):
        read_sbom_statements(tmp_path, generator="g")
    assert special_opens == []


def test_continuation_lines_are_bounded() -> None:
    text = "Package: a\nVersion: 1\nDescription: first\n" + " more\n" * 100_000 + "\n"
    [fields] = list(_sbom._control_paragraphs(text))
    assert fields["Description"].startswith("first\nmore")
    assert len(fields["Description"]) <= _sbom._MAX_FIELD


def test_too_many_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sbom, "_MAX_PACKAGES", 3)
    _dpkg(tmp_path, "".join(f"Package: p{i}\nVersion: 1\n\n" for i in range(5)))
    with pytest.raises(ContentError, match="more than 3 packages"):
        scan_rootfs(tmp_path, name="sbom", created=CREATED)


def test_apk_database_is_bounded_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sbom, "_MAX_PACKAGES", 3)
    (tmp_path / "lib" / "apk" / "db").mkdir(parents=True)
    (tmp_path / "lib" / "apk" / "db" / "installed").write_text(
        "".join(f"P:p{i}\nV:1\n\n" for i in range(5))
    )
    with pytest.raises(ContentError, match="more than 3 packages"):
        scan_rootfs(tmp_path, name="sbom", created=CREATED)


def test_bytes_read_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sbom, "_MAX_READ", 100)
    status_d = tmp_path / "var" / "lib" / "dpkg" / "status.d"
    status_d.mkdir(parents=True)
    for i in range(5):
        (status_d / f"p{i}").write_text(f"Package: p{i}\nVersion: 1\n" + "X: y\n" * 5)
    with pytest.raises(ContentError, match="more than 100 bytes"):
        scan_rootfs(tmp_path, name="sbom", created=CREATED)


def test_too_many_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sbom, "_MAX_ENTRIES", 10)
    for i in range(20):
        (tmp_path / f"f{i}").touch()
    with pytest.raises(ContentError, match="more than 10 entries"):
        scan_rootfs(tmp_path, name="sbom", created=CREATED)


def test_long_fields(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    for name, manifest in {
        "long": {"name": "long", "version": "1", "description": "d" * 100_000},
        "huge-name": {"name": "n" * 1000, "version": "1"},
        "huge-version": {"name": "huge-version", "version": "1" * 1000},
    }.items():
        (modules / name).mkdir(parents=True)
        (modules / name / "package.json").write_text(json.dumps(manifest))
    document = scan_rootfs(tmp_path, name="sbom", created=CREATED)
    [package] = document["packages"][1:]
    assert package["name"] == "long"
    assert len(package["description"]) <= _sbom._MAX_TEXT


def test_duplicate_entries_keep_identifiers_unique(tmp_path: Path) -> None:
    paragraph = "Package: same\nVersion: 1\nArchitecture: all\n\n"
    _dpkg(tmp_path, paragraph * 3)
    document = scan_rootfs(tmp_path, name="sbom", created=CREATED)
    ids = [p["SPDXID"] for p in document["packages"]]
    assert len(ids) == len(set(ids)) == 2


@pytest.mark.parametrize(
    ("license_", "declared"),
    [
        ("MIT And Apache-2.0", "MIT AND Apache-2.0"),
        ("mit or bsd", "mit OR bsd"),
        ("GPL-2.0 wıth Classpath-exception-2.0", None),  # a dotless i: not an operator
        ("MİT", None),
        ("MIT\u202eOR", None),
        ("GPL-2.0-or-later", "GPL-2.0-or-later"),  # "or" inside an identifier
        ("(MIT or GPL-3.0-and-later)", "(MIT OR GPL-3.0-and-later)"),
        ("LicenseRef-undefined", None),  # the document would not define it
    ],
)
def test_license_expressions_stay_ascii(
    tmp_path: Path, license_: str, declared: str | None
) -> None:
    (tmp_path / "node_modules" / "p").mkdir(parents=True)
    (tmp_path / "node_modules" / "p" / "package.json").write_text(
        json.dumps({"name": "p", "version": "1", "license": license_})
    )
    document = scan_rootfs(tmp_path, name="sbom", created=CREATED)
    got = document["packages"][1]["licenseDeclared"]
    if declared is not None:
        assert got == declared
    else:
        assert _SPDX_REF.fullmatch(got), got
        [info] = document["hasExtractedLicensingInfos"]
        assert info == {"licenseId": got, "extractedText": license_}


def test_license_refs_do_not_collide(tmp_path: Path) -> None:
    for name, text in {"a": "GPL v2", "b": "GPL/v2", "c": "GPL v2"}.items():
        (tmp_path / "node_modules" / name).mkdir(parents=True)
        (tmp_path / "node_modules" / name / "package.json").write_text(
            json.dumps({"name": name, "version": "1", "license": text})
        )
    document = scan_rootfs(tmp_path, name="sbom", created=CREATED)
    declared = {p["name"]: p["licenseDeclared"] for p in document["packages"][1:]}
    assert declared["a"] == declared["c"] != declared["b"]
    texts = {i["licenseId"]: i["extractedText"] for i in document["hasExtractedLicensingInfos"]}
    assert texts == {declared["a"]: "GPL v2", declared["b"]: "GPL/v2"}


def test_identifiers_of_odd_names(tmp_path: Path) -> None:
    for i, name in enumerate(["p\u202ekcap", "名前", "a b", "../x", "x\x00y"]):
        (tmp_path / "node_modules" / f"p{i}").mkdir(parents=True)
        (tmp_path / "node_modules" / f"p{i}" / "package.json").write_text(
            json.dumps({"name": name, "version": "1"})
        )
    document = scan_rootfs(tmp_path, name="sbom", created=CREATED)
    for package in document["packages"]:
        assert _SPDX_REF.fullmatch(package["SPDXID"]), package["SPDXID"]
        for ref in package.get("externalRefs", []):
            assert ref["referenceLocator"].isascii()


def _statement(predicate: object = None) -> str:
    return json.dumps({"predicateType": "x", "predicate": predicate or {}})


def test_generator_file_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sbom, "_MAX_STATEMENTS", 3)
    for i in range(4):
        (tmp_path / f"s{i}.json").write_text(_statement())
    with pytest.raises(ContentError, match="more than 3 files"):
        read_sbom_statements(tmp_path, generator="g")


def test_generator_total_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sbom, "_MAX_STATEMENTS_TOTAL", 100)
    for i in range(3):
        (tmp_path / f"s{i}.json").write_text(_statement({"pad": "x" * 40}))
    with pytest.raises(ContentError, match="more than 100 bytes"):
        read_sbom_statements(tmp_path, generator="g")


def test_generator_file_names_are_quoted_in_errors(tmp_path: Path) -> None:
    (tmp_path / "a\x1b[2Jb").write_text("not json")
    with pytest.raises(ContentError) as info:
        read_sbom_statements(tmp_path, generator="g")
    assert "\x1b" not in info.value.message


@pytest.mark.parametrize(
    "subject",
    [
        {"name": "x", "digest": {"sha256": 5}},
        {"name": "x", "digest": {"sha256": {"nested": "y"}}},
        {"name": 5, "digest": {}},
    ],
)
def test_generator_subjects_are_digest_sets(tmp_path: Path, subject: object) -> None:
    (tmp_path / "sbom.spdx.json").write_text(
        json.dumps({"predicateType": "x", "predicate": {}, "subject": [subject]})
    )
    with pytest.raises(ContentError, match="subjects are malformed"):
        read_sbom_statements(tmp_path, generator="g")


def test_generator_statement_nesting_is_bounded(tmp_path: Path) -> None:
    """A statement nested ~900 deep parses, but re-encoding it (deeper in the exporter's
    stack) would end in a RecursionError, not an error naming the generator."""
    depth = 900
    (tmp_path / "sbom.spdx.json").write_text(
        '{"predicateType": "x", "predicate": {"a": ' + "[" * depth + "]" * depth + "}}"
    )
    with pytest.raises(ContentError, match="nested more than"):
        read_sbom_statements(tmp_path, generator="g")
