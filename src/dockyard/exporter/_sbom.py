"""SBOM attestations: Dockyard's built-in scanner, and the statements of a generator image.

BuildKit makes SBOMs by running a *generator image* (BuildKit's SBOM generator protocol:
the scanned root filesystems mounted read-only at ``$BUILDKIT_SCAN_SOURCE`` and under
``$BUILDKIT_SCAN_SOURCE_EXTRAS``, in-toto statements written to
``$BUILDKIT_SCAN_DESTINATION/<scan>.spdx.json``). Its default generator,
``docker/buildkit-syft-scanner``, lives in a registry this host cannot reach, so Dockyard's
default is built in:

- :func:`scan_rootfs` reads the package databases of a root filesystem — dpkg
  (``var/lib/dpkg/status`` and ``status.d/``), apk (``lib/apk/db/installed``), Python
  distributions (``*.dist-info/METADATA``, ``*.egg-info`` under ``site-packages`` /
  ``dist-packages``) and npm packages (``node_modules/[@scope/]NAME/package.json``) —
  and returns an SPDX 2.3 document: a root package for the scanned filesystem (the
  document DESCRIBES it, it CONTAINS every package found), each package with its
  version, package URL, declared license when there is one, ``filesAnalyzed: false``.
  Every path is resolved inside the root (:func:`dockyard.core.fspath.open_in_root`;
  the walk never follows a symlink); a file is looked at through an ``O_PATH`` handle
  and opened only when it is a regular file (a device or FIFO an image holds is never
  opened on the host), each up to a size limit; a malformed database entry is skipped,
  never an error. A scan is bounded — bytes read, entries walked, packages found —
  and past a bound it fails with a :class:`~dockyard.core.ContentError` rather than
  write an SBOM that misses packages; text fields are clipped. The scanner sees only
  the final root filesystem (no secret mount is part of it).
- :func:`read_sbom_statements` takes what a generator image wrote (BuildKit's
  ``unbundle``): every file of its output directory one in-toto statement, the core scan
  (``sbom.*``) first; raw subjects a statement names are kept (as BuildKit keeps them).
  Only regular files are opened; their number and total size are bounded.

A scan is named as BuildKit names its targets: ``sbom`` (the result), ``sbom-context``
(the build context), ``sbom-STAGE`` (an intermediate stage); its statement file is
``NAME.spdx.json``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from dockyard.core import ContentError, DockyardError
from dockyard.core.fspath import open_in_root

from ._attest import SPDX_DOCUMENT, Attestation

__all__ = [
    "SCAN_SOURCE_CORE",
    "SCAN_SOURCE_EXTRAS",
    "SbomTarget",
    "read_sbom_statements",
    "sbom_attestation",
    "scan_rootfs",
]

SCAN_SOURCE_CORE = "/run/src/core"
"""Where a generator image finds the result (``$BUILDKIT_SCAN_SOURCE`` is
``/run/src/core/sbom``), as BuildKit mounts it."""
SCAN_SOURCE_EXTRAS = "/run/src/extras"
"""Where a generator image finds the extra targets (``sbom-context``, ``sbom-STAGE``)."""

_MAX_DATABASE = 64 << 20  # a dpkg status or apk installed file
_MAX_METADATA = 4 << 20  # one METADATA, PKG-INFO, package.json, copyright file
_MAX_READ = 1 << 30  # bytes one scan reads, every file together
_MAX_FIELD = 64 << 10  # one database field, continuation lines included
_MAX_TEXT = 4096  # a description, supplier, homepage or license in the document
_MAX_NAME = 256  # a longer package name or version is no package
_MAX_PACKAGES = 100_000
_MAX_STATEMENT = 80 << 20  # one generator statement (BuildKit's limit)
_MAX_STATEMENTS = 1000  # files a generator may write
_MAX_STATEMENTS_TOTAL = 256 << 20
_MAX_NESTING = 100  # arrays and objects in a statement (it is encoded again, recursively)
_MAX_DEPTH = 64
_MAX_ENTRIES = 4_000_000
_PACKAGE_DIRS = frozenset({"site-packages", "dist-packages", "node_modules"})
_NOASSERTION = "NOASSERTION"
_TOOL = "dockyard-builtin-scanner"
_O_PATH = getattr(os, "O_PATH", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True, kw_only=True)
class SbomTarget:
    """A root filesystem to scan: its scan ``name`` (``sbom``, ``sbom-context``,
    ``sbom-STAGE``) and where it is mounted (``None``: an empty filesystem)."""

    name: str
    root: str | None


@dataclass(slots=True, kw_only=True)
class _Package:
    kind: str  # deb, apk, python, npm
    name: str
    version: str
    purl: str
    source: str  # the database it was read from, relative to the root
    license: str = ""
    supplier: str = ""
    homepage: str = ""
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# -- reading inside the root ------------------------------------------------------------------
def _open_regular(handle: int) -> int | None:
    """A readable fd of the file ``handle`` (an ``O_PATH`` fd) names, when it is a
    regular file; ``None`` otherwise. A device or FIFO is never opened: opening one
    runs its driver on this host (or blocks), whatever image put it there."""
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        return None
    return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)


def _read(root_fd: int, rel: str, limit: int) -> bytes | None:
    """The content of regular file ``rel`` (resolved inside the root), ``None`` when
    it is missing, not a regular file, unreadable or larger than ``limit``."""
    try:
        handle = open_in_root(root_fd, rel, _O_PATH | os.O_CLOEXEC)
    except (DockyardError, OSError):
        return None
    try:
        fd = _open_regular(handle)
    except OSError:
        return None
    finally:
        os.close(handle)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time (no list of millions of strings for a
    database of tiny lines); ``\r\n`` ends a line too."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            end = size
        yield text[start:end].removesuffix("\r")
        start = end + 1


def _list_dir(root_fd: int, rel: str) -> list[str]:
    """The names in directory ``rel`` (resolved inside the root), sorted; none when it
    is missing or no directory."""
    try:
        fd = open_in_root(root_fd, rel, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (DockyardError, OSError):
        return []
    try:
        names: list[str] = []
        with os.scandir(fd) as it:
            for entry in it:
                names.append(entry.name)
                if len(names) > _MAX_ENTRIES:
                    raise ContentError(f"{rel!r} holds more than {_MAX_ENTRIES} entries")
        return sorted(names)
    except OSError:
        return []
    finally:
        os.close(fd)


class _Scan:
    """What one scan found so far, within its bounds: packages (each kind, name,
    version and database once) and the bytes read."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.packages: list[_Package] = []
        self._seen: set[tuple[str, str, str, str]] = set()
        self._bytes = 0

    def read(self, rel: str, limit: int) -> bytes | None:
        data = _read(self.root_fd, rel, limit)
        if data is not None:
            self._bytes += len(data)
            if self._bytes > _MAX_READ:
                raise ContentError(
                    f"its package databases are more than {_MAX_READ} bytes (at {rel!r})"
                )
        return data

    def text(self, rel: str, limit: int) -> str | None:
        return _text(self.read(rel, limit))

    def add(self, package: _Package) -> None:
        if len(package.name) > _MAX_NAME or len(package.version) > _MAX_NAME:
            return
        key = (package.kind, package.name, package.version, package.source)
        if key in self._seen:
            return
        if len(self.packages) >= _MAX_PACKAGES:
            raise ContentError(f"it holds more than {_MAX_PACKAGES} packages")
        self._seen.add(key)
        self.packages.append(package)


class _Walk:
    """Every directory below the root, without following a symlink, depth first in
    name order: ``(relative path, names of sub-directories, names of other entries)``."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._entries = 0

    def __iter__(self) -> Iterator[tuple[str, list[str], list[str]]]:
        fd = os.dup(self._root_fd)
        yield from self._dir(fd, "", 0)

    def _dir(self, fd: int, rel: str, depth: int) -> Iterator[tuple[str, list[str], list[str]]]:
        dirs: list[str] = []
        others: list[str] = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    self._entries += 1
                    if self._entries > _MAX_ENTRIES:
                        raise ContentError(f"it holds more than {_MAX_ENTRIES} entries")
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    (dirs if is_dir else others).append(entry.name)
        except OSError:
            os.close(fd)
            return
        except BaseException:
            os.close(fd)
            raise
        dirs.sort()
        others.sort()
        try:
            yield rel, dirs, others
            if depth >= _MAX_DEPTH:
                return
            for name in dirs:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                yield from self._dir(child, f"{rel}/{name}" if rel else name, depth + 1)
        finally:
            os.close(fd)


# -- distribution ------------------------------------------------------------------------------
def _os_release(scan: _Scan) -> dict[str, str]:
    text = scan.text("etc/os-release", _MAX_METADATA)
    if text is None:
        text = scan.text("usr/lib/os-release", _MAX_METADATA) or ""
    out: dict[str, str] = {}
    for line in _lines(text):
        key, sep, value = line.strip().partition("=")
        if not sep or not key or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value[:_MAX_NAME]
    return out


# what Go's url.PathEscape (packageurl-go's version escaping) leaves as it is
_VERSION_SAFE = "-._~!$&'()*+=:@"


def _purl(kind: str, namespace: str, name: str, version: str, qualifiers: Mapping[str, str]) -> str:
    """A package URL (purl spec: namespace segments and name percent-encoded, sorted
    qualifiers, empty ones left out)."""
    out = f"pkg:{kind}/"
    if namespace:
        out += "/".join(quote(p, safe="") for p in namespace.split("/") if p) + "/"
    out += quote(name, safe="")
    if version:
        out += "@" + quote(version, safe=_VERSION_SAFE)
    pairs = sorted((k, v) for k, v in qualifiers.items() if v)
    if pairs:
        out += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs)
    return out


def _distro_qualifier(release: Mapping[str, str]) -> str:
    ident = release.get("ID", "")
    version = release.get("VERSION_ID", "")
    return f"{ident}-{version}" if ident and version else ident


# -- dpkg --------------------------------------------------------------------------------------
def _control_paragraphs(text: str) -> Iterator[dict[str, str]]:
    """Debian control paragraphs (``Key: value``, continuation lines indented); a line
    that is neither is skipped. A field keeps at most ``_MAX_FIELD`` characters."""
    current: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    last = ""
    for line in _lines(text):
        if not line.strip():
            if current:
                yield _paragraph(current)
            current, sizes, last = {}, {}, ""
            continue
        if line[0] in " \t":
            if last and sizes[last] < _MAX_FIELD:
                piece = line.strip()
                current[last].append(piece)
                sizes[last] += len(piece) + 1
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            last = ""
            continue
        last = key
        current[key] = [value.strip()]
        sizes[key] = len(current[key][0])
    if current:
        yield _paragraph(current)


def _paragraph(fields: Mapping[str, list[str]]) -> dict[str, str]:
    return {key: "\n".join(lines)[:_MAX_FIELD] for key, lines in fields.items()}


def _dpkg_license(scan: _Scan, package: str) -> str:
    """The licenses a machine-readable ``usr/share/doc/PKG/copyright`` names (DEP-5's
    ``License:`` fields), joined with ``AND``; empty when there is none."""
    if not package or "/" in package or package in (".", ".."):
        return ""
    text = scan.text(f"usr/share/doc/{package}/copyright", _MAX_METADATA)
    if not text:
        return ""
    found: list[str] = []
    for line in _lines(text):
        if line[:8].lower() == "license:":
            value = line.split(":", 1)[1].strip()
            if value and value not in found:
                found.append(value)
                if len(found) >= 20:
                    return ""
    return " AND ".join(found)


def _dpkg(scan: _Scan, release: Mapping[str, str]) -> None:
    sources = ["var/lib/dpkg/status"]
    for name in _list_dir(scan.root_fd, "var/lib/dpkg/status.d"):
        if name.startswith(".") or name.endswith(".md5sums"):
            continue
        sources.append(f"var/lib/dpkg/status.d/{name}")
    namespace = release.get("ID", "") or "debian"
    distro = _distro_qualifier(release)
    for source in sources:
        text = scan.text(source, _MAX_DATABASE)
        if not text:
            continue
        for fields in _control_paragraphs(text):
            name = fields.get("Package", "").strip()
            version = fields.get("Version", "").strip()
            if not name or not version or any(c.isspace() for c in name + version):
                continue
            status = fields.get("Status", "").split()
            if status and status[-1] != "installed":
                continue
            arch = fields.get("Architecture", "").strip()
            upstream = fields.get("Source", "").split(" ")[0].strip()
            qualifiers = {"arch": arch, "distro": distro}
            if upstream and upstream != name:
                qualifiers["upstream"] = upstream
            scan.add(
                _Package(
                    kind="deb",
                    name=name,
                    version=version,
                    purl=_purl("deb", namespace, name, version, qualifiers),
                    source=source,
                    license=_dpkg_license(scan, name),
                    supplier=fields.get("Maintainer", "").strip(),
                    homepage=fields.get("Homepage", "").strip(),
                    description=fields.get("Description", "").split("\n")[0].strip(),
                )
            )


# -- apk ---------------------------------------------------------------------------------------
def _apk_entries(text: str) -> Iterator[dict[str, str]]:
    """The entries of an apk database (``K:value`` lines, a blank line between
    entries); the first value of a key counts."""
    current: dict[str, str] = {}
    for line in _lines(text):
        if not line.strip():
            if current:
                yield current
            current = {}
            continue
        key, sep, value = line.partition(":")
        if sep and len(key) == 1 and key not in current:
            current[key] = value.strip()[:_MAX_FIELD]
    if current:
        yield current


def _apk(scan: _Scan, release: Mapping[str, str]) -> None:
    source = "lib/apk/db/installed"
    text = scan.text(source, _MAX_DATABASE)
    if not text:
        return
    namespace = release.get("ID", "") or "alpine"
    distro = _distro_qualifier(release)
    for fields in _apk_entries(text):
        name, version = fields.get("P", ""), fields.get("V", "")
        if not name or not version or any(c.isspace() for c in name + version):
            continue
        qualifiers = {"arch": fields.get("A", ""), "distro": distro}
        origin = fields.get("o", "")
        if origin and origin != name:
            qualifiers["upstream"] = origin
        scan.add(
            _Package(
                kind="apk",
                name=name,
                version=version,
                purl=_purl("apk", namespace, name, version, qualifiers),
                source=source,
                license=fields.get("L", ""),
                supplier=fields.get("m", ""),
                homepage=fields.get("U", ""),
                description=fields.get("T", ""),
            )
        )


# -- Python ------------------------------------------------------------------------------------
_PEP503 = re.compile(r"[-_.]+")


def _metadata_headers(text: str) -> dict[str, str]:
    """The headers of a core-metadata file (RFC 822 style, up to the first blank line);
    the first value of a header counts, continuation lines are dropped."""
    out: dict[str, str] = {}
    for line in _lines(text):
        if not line.strip():
            break
        if line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in out:
            out[key] = value.strip()
    return out


def _python_license(headers: Mapping[str, str]) -> str:
    expression = headers.get("license-expression", "")
    if expression:
        return expression
    value = headers.get("license", "")
    if value and "\n" not in value and len(value) <= 200 and value.upper() != "UNKNOWN":
        return value
    return ""


def _python(scan: _Scan, walk: list[tuple[str, list[str], list[str]]]) -> None:
    for rel, dirs, others in walk:
        if rel.rsplit("/", 1)[-1] not in ("site-packages", "dist-packages"):
            continue
        candidates = [f"{rel}/{d}/METADATA" for d in dirs if d.endswith(".dist-info")]
        candidates += [f"{rel}/{d}/PKG-INFO" for d in dirs if d.endswith(".egg-info")]
        candidates += [f"{rel}/{f}" for f in others if f.endswith(".egg-info")]
        for source in candidates:
            text = scan.text(source, _MAX_METADATA)
            if not text:
                continue
            headers = _metadata_headers(text)
            name, version = headers.get("name", ""), headers.get("version", "")
            if not name or not version or any(c.isspace() for c in name + version):
                continue
            normalized = _PEP503.sub("-", name).lower()
            scan.add(
                _Package(
                    kind="python",
                    name=name,
                    version=version,
                    purl=_purl("pypi", "", normalized, version, {}),
                    source=source,
                    license=_python_license(headers),
                    supplier=headers.get("author", ""),
                    homepage=headers.get("home-page", ""),
                    description=headers.get("summary", ""),
                )
            )


# -- npm ---------------------------------------------------------------------------------------
def _npm_license(manifest: Mapping[str, Any]) -> str:
    value = manifest.get("license")
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, str):
        return value
    legacy = manifest.get("licenses")
    if isinstance(legacy, list):
        names: list[str] = []
        for item in legacy:
            kind = item.get("type") if isinstance(item, dict) else item
            if isinstance(kind, str) and kind:
                names.append(kind)
        if names:
            return " OR ".join(names)
    return ""


def _npm(scan: _Scan, walk: list[tuple[str, list[str], list[str]]]) -> None:
    for rel, dirs, _ in walk:
        if rel.rsplit("/", 1)[-1] != "node_modules":
            continue
        packages: list[str] = []
        for entry in dirs:
            if entry.startswith("."):
                continue
            if entry.startswith("@"):
                packages += [
                    f"{entry}/{sub}"
                    for sub in _list_dir(scan.root_fd, f"{rel}/{entry}")
                    if not sub.startswith(".")
                ]
            else:
                packages.append(entry)
        for package in packages:
            source = f"{rel}/{package}/package.json"
            data = scan.read(source, _MAX_METADATA)
            if data is None:
                continue
            try:
                manifest = json.loads(data)
            except (ValueError, UnicodeDecodeError, RecursionError):
                continue
            if not isinstance(manifest, dict):
                continue
            name, version = manifest.get("name"), manifest.get("version")
            if not isinstance(name, str) or not isinstance(version, str) or not name:
                continue
            if not version or any(c.isspace() for c in name + version):
                continue
            scope, _, short = name.rpartition("/")
            homepage = manifest.get("homepage")
            description = manifest.get("description")
            author = manifest.get("author")
            if isinstance(author, dict):
                author = author.get("name")
            scan.add(
                _Package(
                    kind="npm",
                    name=name,
                    version=version,
                    purl=_purl("npm", scope, short, version, {}),
                    source=source,
                    license=_npm_license(manifest),
                    supplier=author if isinstance(author, str) else "",
                    homepage=homepage if isinstance(homepage, str) else "",
                    description=description if isinstance(description, str) else "",
                )
            )


# -- SPDX --------------------------------------------------------------------------------------
_LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+\-]*", re.ASCII)
_OPERATORS = frozenset({"AND", "OR", "WITH"})


def _operator(token: str) -> bool:
    return token.isascii() and token.upper() in _OPERATORS


def _valid_expression(text: str) -> bool:
    """Whether ``text`` is a well-formed SPDX license expression (identifiers joined by
    ``AND``/``OR``/``WITH`` in any ASCII case, parentheses balanced); identifiers are
    ASCII, not checked against the license list, and name no ``LicenseRef-`` or
    ``DocumentRef-`` (the document would not define them)."""
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    depth = 0
    operand = True  # an operand is expected next
    for token in tokens:
        if token == "(":
            if not operand:
                return False
            depth += 1
        elif token == ")":
            if operand or depth == 0:
                return False
            depth -= 1
        elif _operator(token):
            if operand:
                return False
            operand = True
        else:
            if not operand or not _LICENSE_ID.fullmatch(token):
                return False
            if token.lower().startswith(("licenseref-", "documentref-")):
                return False
            operand = False
    return bool(tokens) and depth == 0 and not operand


def _spdx_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", text, flags=re.ASCII).strip("-") or "x"


def _upper_operators(text: str) -> str:
    """A valid expression with its operators in upper case (a word of an identifier —
    ``GPL-2.0-or-later`` — stays as it is)."""
    words = []
    for word in text.split(" "):
        core = word.strip("()")
        if _operator(core):
            start = word.index(core)
            word = word[:start] + core.upper() + word[start + len(core) :]
        words.append(word)
    return " ".join(words)


def _license_fields(text: str, extracted: dict[str, str]) -> str:
    """The ``licenseDeclared`` of a declared license: the expression itself when it is
    one, else a ``LicenseRef-...`` whose text goes to ``extracted`` (two texts that
    make the same identifier get different ones)."""
    text = " ".join(text.split())
    if not text or text.upper() in ("UNKNOWN", "NONE", _NOASSERTION):
        return _NOASSERTION
    if _valid_expression(text):
        return _upper_operators(text)
    ref = "LicenseRef-" + _spdx_id(text)[:120]
    if extracted.get(ref, text) != text:
        ref += "-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    extracted.setdefault(ref, text)
    return ref


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "\u2026"


def _package_json(package: _Package, extracted: dict[str, str]) -> dict[str, Any]:
    key = f"{package.kind}\0{package.name}\0{package.version}\0{package.source}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    out: dict[str, Any] = {
        "name": package.name,
        "SPDXID": f"SPDXRef-Package-{package.kind}-{_spdx_id(package.name)}-{digest}",
        "versionInfo": package.version,
    }
    supplier = _clip(" ".join(package.supplier.split()))
    if supplier:
        kind = "Organization" if package.kind == "apk" and "<" not in supplier else "Person"
        out["supplier"] = f"{kind}: {supplier}"
    else:
        out["supplier"] = _NOASSERTION
    out["downloadLocation"] = _NOASSERTION
    out["filesAnalyzed"] = False
    if package.homepage and "\n" not in package.homepage and len(package.homepage) <= _MAX_TEXT:
        out["homepage"] = package.homepage
    out["sourceInfo"] = (
        f"acquired package info from {_SOURCE_NAMES[package.kind]}: /{package.source}"
    )
    out["licenseConcluded"] = _NOASSERTION
    out["licenseDeclared"] = _license_fields(_clip(package.license), extracted)
    out["copyrightText"] = _NOASSERTION
    if package.description:
        out["description"] = _clip(package.description)
    out["externalRefs"] = [
        {
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": package.purl,
        }
    ]
    out["primaryPackagePurpose"] = "LIBRARY"
    return out


_SOURCE_NAMES = {
    "deb": "DPKG DB",
    "apk": "APK DB",
    "python": "installed python package manifest file",
    "npm": "installed node module manifest file",
}


def _packages(root_fd: int) -> list[_Package]:
    scan = _Scan(root_fd)
    release = _os_release(scan)
    _dpkg(scan, release)
    _apk(scan, release)
    # only the directories packages are found in are kept (a walk of millions of
    # entries is not held in memory)
    walk = [w for w in _Walk(root_fd) if w[0].rsplit("/", 1)[-1] in _PACKAGE_DIRS]
    _python(scan, walk)
    _npm(scan, walk)
    found = scan.packages
    found.sort(key=lambda p: (p.name, p.version, p.kind, p.source))
    return found


def scan_rootfs(root: str | os.PathLike[str] | None, *, name: str, created: str) -> dict[str, Any]:
    """The SPDX 2.3 document of the packages installed in the root filesystem ``root``
    (``None``: an empty one), as a generator would write it for the scan ``name``
    (``sbom``, ``sbom-context`` ...); ``created`` is its ``creationInfo.created``
    (``YYYY-MM-DDThh:mm:ssZ``). Blocking: run it in a thread. Raises
    :class:`~dockyard.core.DockyardError` when ``root`` itself cannot be opened, a
    :class:`~dockyard.core.ContentError` when it is past one of the scanner's bounds
    (bytes read, entries walked, packages found)."""
    from dockyard import __version__

    packages: list[_Package] = []
    if root is not None:
        try:
            root_fd = os.open(os.fspath(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise DockyardError(
                f"cannot scan {os.fspath(root)!r} for an SBOM: {exc.strerror}"
            ) from exc
        try:
            packages = _packages(root_fd)
        except ContentError as exc:
            raise ContentError(
                f"SBOM scan {name} (built-in scanner): {exc.message}; a generator image "
                "(--sbom generator=IMAGE) has no such bound"
            ) from None
        finally:
            os.close(root_fd)
    location = f"{SCAN_SOURCE_CORE}/{name}" if name == "sbom" else f"{SCAN_SOURCE_EXTRAS}/{name}"
    extracted: dict[str, str] = {}
    root_id = f"SPDXRef-DocumentRoot-Directory-{_spdx_id(name)}"
    described: list[dict[str, Any]] = [
        {
            "name": location,
            "SPDXID": root_id,
            "supplier": _NOASSERTION,
            "downloadLocation": _NOASSERTION,
            "filesAnalyzed": False,
            "licenseConcluded": _NOASSERTION,
            "licenseDeclared": _NOASSERTION,
            "copyrightText": _NOASSERTION,
            "primaryPackagePurpose": "FILE",
        }
    ]
    entries = [_package_json(p, extracted) for p in packages]
    relationships: list[dict[str, str]] = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relatedSpdxElement": root_id,
            "relationshipType": "DESCRIBES",
        }
    ]
    relationships += [
        {
            "spdxElementId": root_id,
            "relatedSpdxElement": entry["SPDXID"],
            "relationshipType": "CONTAINS",
        }
        for entry in entries
    ]
    identity = json.dumps([name, [e["externalRefs"][0]["referenceLocator"] for e in entries]])
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"https://dockyard.invalid/sbom/{identity}")
    document: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": location,
        "documentNamespace": f"https://dockyard.invalid/spdx/{_spdx_id(name)}-{namespace}",
        "creationInfo": {
            "created": created,
            "creators": ["Organization: Dockyard", f"Tool: {_TOOL}-{__version__}"],
        },
        "packages": described + entries,
        "relationships": relationships,
    }
    if extracted:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "extractedText": text} for ref, text in sorted(extracted.items())
        ]
    return document


def sbom_attestation(document: Mapping[str, Any], name: str) -> Attestation:
    """The attestation of the SPDX ``document`` of scan ``name`` (file
    ``NAME.spdx.json`` in a ``local``/``tar`` export)."""
    return Attestation(predicate_type=SPDX_DOCUMENT, predicate=document, path=f"{name}.spdx.json")


# -- a generator's output ----------------------------------------------------------------------
def read_sbom_statements(
    root: str | os.PathLike[str] | None, *, generator: str
) -> list[Attestation]:
    """The attestations an SBOM ``generator`` image wrote into its output directory
    ``root`` (``None``: it wrote nothing): each file one in-toto statement (a single
    JSON object with a ``predicateType`` and an object ``predicate``), named by its
    file; the core scan (``sbom.*``) first, the others in name order, as BuildKit
    orders them. A statement's own subjects are kept. Blocking: run it in a thread.
    Raises :class:`~dockyard.core.ContentError` naming the file and the generator for
    one that is not such a statement, or that is a provenance attestation."""
    if root is None:
        return []
    names = _list_dir_path(root)
    if len(names) > _MAX_STATEMENTS:
        raise ContentError(f"SBOM generator {generator} wrote more than {_MAX_STATEMENTS} files")
    names.sort(key=lambda n: (n.split(".", 1)[0] != "sbom", n))
    out: list[Attestation] = []
    total = 0
    for name in names:
        what = f"SBOM generator {generator}: {name if name.isprintable() else repr(name)}"
        try:
            handle = open_in_root(root, name, _O_PATH | os.O_CLOEXEC)
        except (DockyardError, OSError) as exc:
            raise ContentError(f"{what}: cannot open it: {exc}") from exc
        try:
            fd = _open_regular(handle)
        except OSError as exc:
            raise ContentError(f"{what}: cannot open it: {exc.strerror}") from exc
        finally:
            os.close(handle)
        if fd is None:
            raise ContentError(f"{what}: not a regular file")
        try:
            if os.fstat(fd).st_size > _MAX_STATEMENT:
                raise ContentError(f"{what}: larger than {_MAX_STATEMENT} bytes")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(_MAX_STATEMENT + 1)
        finally:
            os.close(fd)
        total += len(data)
        if total > _MAX_STATEMENTS_TOTAL:
            raise ContentError(
                f"SBOM generator {generator}: its statements are more than "
                f"{_MAX_STATEMENTS_TOTAL} bytes together"
            )
        out.append(_statement_attestation(data, name, what))
    return out


def _list_dir_path(root: str | os.PathLike[str]) -> list[str]:
    try:
        return os.listdir(root)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise ContentError(f"cannot read the SBOM generator's output: {exc.strerror}") from exc


def _statement_attestation(data: bytes, name: str, what: str) -> Attestation:
    if len(data) > _MAX_STATEMENT:
        raise ContentError(f"{what}: larger than {_MAX_STATEMENT} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ContentError(f"{what}: cannot decode in-toto statement: {exc}") from None
    if not isinstance(value, dict):
        raise ContentError(f"{what}: an in-toto statement is a JSON object")
    if _nesting(value) > _MAX_NESTING:
        raise ContentError(f"{what}: the statement is nested more than {_MAX_NESTING} deep")
    predicate_type = value.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise ContentError(f"{what}: the statement has no predicateType")
    if predicate_type.startswith("https://slsa.dev/provenance/"):
        raise ContentError(f"{what}: an SBOM generator may not write provenance attestations")
    predicate = value.get("predicate")
    if not isinstance(predicate, dict):
        raise ContentError(f"{what}: the statement's predicate is not a JSON object")
    subjects = value.get("subject")
    own: tuple[Mapping[str, Any], ...] | None = None
    if subjects:
        if not isinstance(subjects, list) or not all(_subject(s) for s in subjects):
            raise ContentError(f"{what}: the statement's subjects are malformed")
        own = tuple(
            {"name": s.get("name") or "_", "digest": dict(s.get("digest") or {})} for s in subjects
        )
    return Attestation(predicate_type=predicate_type, predicate=predicate, path=name, subjects=own)


def _subject(value: object) -> bool:
    """Whether ``value`` is an in-toto subject: a name and a digest set (algorithm to
    hex digest, both strings)."""
    if not isinstance(value, dict) or not isinstance(value.get("name", ""), str):
        return False
    digest = value.get("digest", {})
    return isinstance(digest, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in digest.items()
    )


def _nesting(value: object) -> int:
    """How deep arrays and objects nest in the JSON ``value`` (without recursion)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= _MAX_NESTING:
            stack.extend((child, depth + 1) for child in children)
    return deepest
