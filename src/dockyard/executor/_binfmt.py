"""Which platforms this host can run: its own, and others through binfmt_misc emulators.

A build process of another architecture (a ``RUN`` in a ``linux/arm64`` stage on an amd64
host) runs when the kernel hands its binaries to an emulator: a QEMU user-mode
interpreter registered in ``binfmt_misc``. Such a handler is usable inside a build
container only with the ``F`` (fix-binary) flag: the kernel opens the interpreter when the
handler is registered, so it need not exist in the container's mount namespace (where
``/usr/libexec/qemu-binfmt/…`` never does).

Handlers are matched by what they match, never by name: a platform is emulated when an
enabled ``M`` (magic) handler with the ``F`` flag recognizes the ELF header of both a
static (``ET_EXEC``) and a position-independent (``ET_DYN``) executable of that
architecture (:data:`ELF_ARCHITECTURES`). A missing ``binfmt_misc`` mount, a disabled
``status``, handlers without ``F`` — all mean no emulation, and :meth:`HostPlatforms.why_not`
says which.

Natively the host runs its own architecture, and on amd64 also 386 when a tiny i386
program runs (the kernel's IA-32 emulation can be compiled out or disabled at boot).

Detection reads a few small files (and runs the i386 probe once) and is only done when a
build asks for a platform other than the host's (:func:`host_platforms` is cached per
process and per ``binfmt_misc`` directory; a platform not found makes it look again, so
handlers registered while a daemon runs are picked up). The directory is
``/proc/sys/fs/binfmt_misc`` unless ``DOCKYARD_BINFMT_MISC`` names another (tests point it
at a fake one).

:func:`install_handlers` registers Debian's ``qemu-user-static`` interpreters (the
``/usr/lib/binfmt.d/qemu-*.conf`` definitions) with the ``F`` flag: host configuration,
done by ``dockyard debug binfmt --install`` as root, never by a build.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dockyard.core import DockyardError, NotFoundError, Platform, UsageError, host_platform

__all__ = [
    "BINFMT_D",
    "BINFMT_MISC",
    "ELF_ARCHITECTURES",
    "BinfmtHandler",
    "ElfArchitecture",
    "HostPlatforms",
    "InstallResult",
    "PlatformSupport",
    "binfmt_misc_dir",
    "detect_host_platforms",
    "host_platforms",
    "install_handlers",
    "parse_handler",
    "parse_register_line",
]

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
"""Where the kernel's binfmt_misc file system is mounted."""

BINFMT_D = Path("/usr/lib/binfmt.d")
"""Where Debian's ``qemu-user-static`` puts its handler definitions (systemd's binfmt.d format)."""

_ENV = "DOCKYARD_BINFMT_MISC"

_ET_EXEC, _ET_DYN = 2, 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ElfArchitecture:
    """How ELF executables of one architecture start: class (1: 32-bit, 2: 64-bit), byte
    order (1: little, 2: big endian) and ``e_machine``; ``platforms`` are the OCI platforms
    its binaries serve; ``qemu`` is the name of QEMU's user-mode emulator for it."""

    name: str
    platforms: tuple[Platform, ...]
    elf_class: int
    elf_data: int
    machine: int
    qemu: str

    def headers(self) -> tuple[bytes, bytes]:
        """The first 64 bytes of a static (``ET_EXEC``) and a PIE (``ET_DYN``) executable."""
        return (self._header(_ET_EXEC), self._header(_ET_DYN))

    def _header(self, e_type: int) -> bytes:
        ident = b"\x7fELF" + bytes((self.elf_class, self.elf_data, 1)) + bytes(9)
        order = "<" if self.elf_data == 1 else ">"
        return (ident + struct.pack(order + "HHI", e_type, self.machine, 1)).ljust(64, b"\0")


def _linux(*specs: str) -> tuple[Platform, ...]:
    return tuple(Platform.parse(s) for s in specs)


ELF_ARCHITECTURES: tuple[ElfArchitecture, ...] = (
    ElfArchitecture(
        name="amd64", platforms=_linux("linux/amd64"), elf_class=2, elf_data=1, machine=62,
        qemu="x86_64",
    ),
    ElfArchitecture(
        name="386", platforms=_linux("linux/386"), elf_class=1, elf_data=1, machine=3,
        qemu="i386",
    ),
    ElfArchitecture(
        name="arm64", platforms=_linux("linux/arm64"), elf_class=2, elf_data=1, machine=183,
        qemu="aarch64",
    ),
    ElfArchitecture(
        name="arm", platforms=_linux("linux/arm/v7", "linux/arm/v6", "linux/arm/v5"),
        elf_class=1, elf_data=1, machine=40, qemu="arm",
    ),
    ElfArchitecture(
        name="riscv64", platforms=_linux("linux/riscv64"), elf_class=2, elf_data=1,
        machine=243, qemu="riscv64",
    ),
    ElfArchitecture(
        name="ppc64le", platforms=_linux("linux/ppc64le"), elf_class=2, elf_data=1,
        machine=21, qemu="ppc64le",
    ),
    ElfArchitecture(
        name="s390x", platforms=_linux("linux/s390x"), elf_class=2, elf_data=2, machine=22,
        qemu="s390x",
    ),
    ElfArchitecture(
        name="mips64le", platforms=_linux("linux/mips64le"), elf_class=2, elf_data=1,
        machine=8, qemu="mips64el",
    ),
    ElfArchitecture(
        name="mips64", platforms=_linux("linux/mips64"), elf_class=2, elf_data=2, machine=8,
        qemu="mips64",
    ),
    ElfArchitecture(
        name="loong64", platforms=_linux("linux/loong64"), elf_class=2, elf_data=1,
        machine=258, qemu="loongarch64",
    ),
)  # fmt: skip
"""The architectures whose binaries detection recognizes (OCI names)."""


def _architecture(platform: Platform) -> ElfArchitecture | None:
    for arch in ELF_ARCHITECTURES:
        if arch.platforms[0].architecture == platform.architecture:
            return arch
    return None


# -- handlers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BinfmtHandler:
    """One binfmt_misc handler: a file of ``/proc/sys/fs/binfmt_misc`` or a registration
    line. ``magic`` and ``mask`` have the same length (a missing mask is all ``0xff``);
    ``extension`` is set instead for an ``E`` (file name extension) handler."""

    name: str
    enabled: bool = True
    interpreter: str
    flags: str = ""
    offset: int = 0
    magic: bytes = b""
    mask: bytes = b""
    extension: str = ""

    @property
    def fix_binary(self) -> bool:
        """The ``F`` flag: the interpreter was opened at registration and works in any
        mount namespace (a container's)."""
        return "F" in self.flags

    def matches(self, header: bytes) -> bool:
        """True if a file starting with ``header`` is handed to this handler."""
        if self.extension or not self.magic:
            return False
        data = header[self.offset : self.offset + len(self.magic)]
        if len(data) < len(self.magic):
            return False
        return all((b & m) == (g & m) for b, m, g in zip(data, self.mask, self.magic, strict=True))

    def handles(self, arch: ElfArchitecture) -> bool:
        """True if both a static and a PIE executable of ``arch`` go to this handler."""
        return all(self.matches(h) for h in arch.headers())


def parse_handler(name: str, text: str) -> BinfmtHandler:
    """Parse a binfmt_misc handler file as the kernel prints it::

        enabled
        interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
        flags: POCF
        offset 0
        magic 7f454c46…
        mask ffffffff…

    Raises ``ValueError`` for text that is not such a file.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] not in ("enabled", "disabled"):
        raise ValueError(f"binfmt_misc handler {name!r}: expected 'enabled' or 'disabled' first")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    if "interpreter" not in fields:
        raise ValueError(f"binfmt_misc handler {name!r} names no interpreter")
    try:
        magic = bytes.fromhex(fields.get("magic", ""))
        mask = bytes.fromhex(fields["mask"]) if "mask" in fields else b"\xff" * len(magic)
        offset = int(fields.get("offset", "0"))
    except ValueError as exc:
        raise ValueError(f"binfmt_misc handler {name!r}: {exc}") from exc
    if not magic and "extension" not in fields:
        raise ValueError(f"binfmt_misc handler {name!r} has neither magic nor extension")
    if len(mask) != len(magic):
        raise ValueError(f"binfmt_misc handler {name!r}: mask and magic differ in length")
    return BinfmtHandler(
        name=name,
        enabled=lines[0] == "enabled",
        interpreter=fields["interpreter"],
        flags=fields.get("flags", ""),
        offset=offset,
        magic=magic,
        mask=mask,
        extension=fields.get("extension", ""),
    )


def _unescape(field: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(field):
        if field.startswith("\\x", i) and i + 4 <= len(field):
            out.append(int(field[i + 2 : i + 4], 16))
            i += 4
        elif field.startswith("\\\\", i):
            out.append(0x5C)
            i += 2
        else:
            out.extend(field[i].encode())
            i += 1
    return bytes(out)


def parse_register_line(line: str) -> BinfmtHandler:
    """Parse a registration line (``:name:type:offset:magic:mask:interpreter:flags``, the
    format of ``/proc/sys/fs/binfmt_misc/register`` and systemd's ``binfmt.d``; the first
    character is the separator). Raises ``ValueError`` when it is not one."""
    line = line.strip()
    if len(line) < 2:
        raise ValueError("empty binfmt registration line")
    parts = line[1:].split(line[0])
    if len(parts) not in (6, 7):
        raise ValueError(f"binfmt registration line has {len(parts)} fields, expected 7")
    name, kind, offset, magic, mask, interpreter = parts[:6]
    flags = parts[6] if len(parts) == 7 else ""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid binfmt handler name {name!r}")
    if not interpreter:
        raise ValueError(f"binfmt handler {name!r} names no interpreter")
    if kind == "E":
        return BinfmtHandler(name=name, interpreter=interpreter, flags=flags, extension=magic)
    if kind != "M":
        raise ValueError(f"binfmt handler {name!r}: unknown type {kind!r} (expected M or E)")
    try:
        magic_bytes = _unescape(magic)
        mask_bytes = _unescape(mask) if mask else b"\xff" * len(magic_bytes)
        offset_value = int(offset or "0")
    except ValueError as exc:
        raise ValueError(f"binfmt handler {name!r}: {exc}") from exc
    if not magic_bytes or len(mask_bytes) != len(magic_bytes):
        raise ValueError(f"binfmt handler {name!r}: empty magic, or mask and magic differ")
    return BinfmtHandler(
        name=name,
        interpreter=interpreter,
        flags=flags,
        offset=offset_value,
        magic=magic_bytes,
        mask=mask_bytes,
    )


# -- detection --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformSupport:
    """A platform this host runs: natively (``handler`` is ``None``) or emulated by
    ``handler``."""

    platform: Platform
    handler: BinfmtHandler | None = None

    @property
    def native(self) -> bool:
        return self.handler is None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPlatforms:
    """What :func:`detect_host_platforms` found: the platforms this host runs, the
    handlers it read, and why binfmt_misc gives nothing when it does not."""

    native: Platform
    supported: tuple[PlatformSupport, ...]
    handlers: tuple[BinfmtHandler, ...] = ()
    root: Path = BINFMT_MISC
    problem: str = ""
    """Why no handler counts at all (not mounted, disabled); empty otherwise."""

    def find(self, platform: Platform) -> PlatformSupport | None:
        """How ``platform`` runs here, or ``None``. Architectures compare; so do variants
        of arm (an arm/v8-only host does not list v5), but not of amd64 or arm64."""
        for support in self.supported:
            have = support.platform
            if (have.os, have.architecture) != (platform.os, platform.architecture):
                continue
            if have.architecture != "arm" or not platform.variant:
                return support
            if have.variant == platform.variant:
                return support
        return None

    def why_not(self, platform: Platform) -> str:
        """Why ``platform`` does not run here (for an error message)."""
        if self.problem:
            return self.problem
        arch = _architecture(platform)
        if arch is None or platform.os != "linux":
            return f"no emulator is known for {platform}"
        for handler in self.handlers:
            if not handler.handles(arch):
                continue
            if not handler.enabled:
                return f"binfmt_misc handler {handler.name!r} for {platform} is disabled"
            if not handler.fix_binary:
                return (
                    f"binfmt_misc handler {handler.name!r} for {platform} lacks the F"
                    f" (fix-binary) flag, so its interpreter {handler.interpreter} is not"
                    " found inside a build container"
                )
        return f"no binfmt_misc handler in {self.root} runs {arch.name} binaries"

    def how_to_emulate(self, platform: Platform) -> str:
        """The commands that make ``platform`` run here (for an error message)."""
        arch = _architecture(platform)
        if arch is None or platform.os != "linux":
            # said once by why_not(); here, what can run (a typo in --platform is likely)
            known = ", ".join(str(a.platforms[0]) for a in ELF_ARCHITECTURES)
            return f"The platforms Dockyard knows are {known}"
        return (
            "Emulate it with QEMU (as root, once per boot): apt-get install qemu-user-static"
            f" && dockyard debug binfmt --install {arch.name} (registers"
            f" {BINFMT_D}/qemu-{arch.qemu}.conf with the F flag)"
        )


def binfmt_misc_dir() -> Path:
    """``$DOCKYARD_BINFMT_MISC`` or :data:`BINFMT_MISC`."""
    return Path(os.environ.get(_ENV) or BINFMT_MISC)


def _read_handlers(root: Path) -> tuple[tuple[BinfmtHandler, ...], str]:
    try:
        status = (root / "status").read_text().strip()
    except OSError:
        return (), f"binfmt_misc is not mounted at {root}"
    if status != "enabled":
        return (), f"binfmt_misc is disabled ({root}/status says {status!r})"
    handlers: list[BinfmtHandler] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        return (), f"cannot list {root}: {exc.strerror}"
    for entry in entries:
        if entry.name in ("status", "register") or not entry.is_file():
            continue
        try:
            handlers.append(parse_handler(entry.name, Path(entry.path).read_text()))
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # gone meanwhile, or not a handler: it runs nothing we know of
    return tuple(handlers), ""


# An i386 program that exits with status 42 (ELF32 header, one PT_LOAD segment, then
# "mov ebx, 42; mov eax, 1; int 0x80"): whether the kernel runs 386 binaries natively.
_I386_BASE = 0x08048000
_I386_CODE = bytes.fromhex("bb2a000000b801000000cd80")


def _i386_probe() -> bytes:
    size = 52 + 32 + len(_I386_CODE)
    header = b"\x7fELF\x01\x01\x01" + bytes(9)
    header += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, _I386_BASE + 84, 52, 0, 0, 52, 32, 1, 0, 0, 0)
    program = struct.pack("<IIIIIIII", 1, 0, _I386_BASE, _I386_BASE, size, size, 5, 0x1000)
    return header + program + _I386_CODE


def _runs_i386() -> bool:
    try:
        with tempfile.TemporaryDirectory(prefix="dockyard-i386-") as tmp:
            path = Path(tmp, "probe")
            path.write_bytes(_i386_probe())
            path.chmod(0o700)
            done = subprocess.run([str(path)], capture_output=True, timeout=10, check=False)
            return done.returncode == 42
    except (OSError, subprocess.SubprocessError):
        return False


def detect_host_platforms(
    root: Path | None = None, *, native: Platform | None = None
) -> HostPlatforms:
    """Look at this host now (uncached; see :func:`host_platforms`). ``root`` is the
    binfmt_misc directory (default :func:`binfmt_misc_dir`), ``native`` the host's
    platform (default :func:`dockyard.core.host_platform`)."""
    root = root if root is not None else binfmt_misc_dir()
    native = native if native is not None else host_platform()
    handlers, problem = _read_handlers(root)
    supported: list[PlatformSupport] = [PlatformSupport(platform=native)]
    seen = {native.architecture}
    usable = [h for h in handlers if h.enabled and h.fix_binary]
    for arch in ELF_ARCHITECTURES:
        if arch.name in seen:
            continue
        handler = next((h for h in usable if h.handles(arch)), None)
        if handler is None:
            if arch.name == "386" and native.architecture == "amd64" and _runs_i386():
                supported.append(PlatformSupport(platform=arch.platforms[0]))
                seen.add(arch.name)
            continue
        supported.extend(PlatformSupport(platform=p, handler=handler) for p in arch.platforms)
        seen.add(arch.name)
    return HostPlatforms(
        native=native, supported=tuple(supported), handlers=handlers, root=root, problem=problem
    )


_cache: dict[Path, HostPlatforms] = {}
_cache_lock = threading.Lock()


def host_platforms(root: Path | None = None, *, wanted: Platform | None = None) -> HostPlatforms:
    """:func:`detect_host_platforms`, cached per process and ``root``; when ``wanted``
    is given and not in the cached answer, looks again (a handler may have been
    registered since)."""
    root = root if root is not None else binfmt_misc_dir()
    with _cache_lock:
        found = _cache.get(root)
        if found is None or (wanted is not None and found.find(wanted) is None):
            found = _cache[root] = detect_host_platforms(root)
        return found


# -- installing --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallResult:
    """What :func:`install_handlers` did for one architecture: ``action`` is
    ``registered``, ``replaced`` (an entry without ``F`` or disabled was removed first)
    or ``present`` (already registered as wanted)."""

    arch: str
    handler: str
    action: str


def _definitions(
    arch_names: Sequence[str], conf_dir: Path, native: Platform
) -> list[tuple[ElfArchitecture, BinfmtHandler]]:
    by_name = {a.name: a for a in ELF_ARCHITECTURES}
    aliases = {a.qemu: a.name for a in ELF_ARCHITECTURES}
    wanted: list[ElfArchitecture] = []
    if not arch_names or "all" in arch_names:
        wanted = [a for a in ELF_ARCHITECTURES if (conf_dir / f"qemu-{a.qemu}.conf").is_file()]
    else:
        for raw in arch_names:
            name = raw.strip().lower()
            name = aliases.get(name, name)
            if name not in by_name:
                try:
                    name = Platform.parse(raw).architecture
                except ValueError:
                    pass
            if name not in by_name:
                known = ", ".join(a.name for a in ELF_ARCHITECTURES)
                raise UsageError(f"unknown architecture {raw!r} (known: {known}, all)")
            if by_name[name] not in wanted:
                wanted.append(by_name[name])
    out: list[tuple[ElfArchitecture, BinfmtHandler]] = []
    for arch in wanted:
        if arch.name == native.architecture:
            continue  # the host's own binaries never go to an emulator
        conf = conf_dir / f"qemu-{arch.qemu}.conf"
        try:
            text = conf.read_text()
        except FileNotFoundError:
            raise NotFoundError(
                f"{conf} not found: install Debian's qemu-user-static"
                " (apt-get install qemu-user-static)"
            ) from None
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("#", ";"))]
        if not lines:
            raise NotFoundError(f"{conf} holds no binfmt registration line")
        handler = parse_register_line(lines[0])
        if not handler.handles(arch):
            raise NotFoundError(f"{conf} does not match {arch.name} ELF binaries")
        if not Path(handler.interpreter).exists():
            raise NotFoundError(
                f"interpreter {handler.interpreter} of {conf} not found: reinstall qemu-user-static"
            )
        out.append((arch, handler))
    return out


def _register_line(handler: BinfmtHandler) -> str:
    def esc(data: bytes) -> str:
        return "".join(f"\\x{b:02x}" for b in data)

    flags = handler.flags if "F" in handler.flags else handler.flags + "F"
    return (
        f":{handler.name}:M:{handler.offset or ''}:{esc(handler.magic)}:{esc(handler.mask)}:"
        f"{handler.interpreter}:{flags}"
    )


def _mount_binfmt_misc(root: Path) -> None:
    if (root / "register").exists():
        return
    try:
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(root)],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise DockyardError(
            f"cannot mount binfmt_misc at {root}: {exc.stderr.strip() or exc.returncode}"
        ) from exc
    except OSError as exc:
        raise DockyardError(f"cannot mount binfmt_misc at {root}: {exc}") from exc


def install_handlers(
    arch_names: Iterable[str] = (),
    *,
    root: Path | None = None,
    conf_dir: Path = BINFMT_D,
    native: Platform | None = None,
    mount: bool = True,
) -> list[InstallResult]:
    """Register Debian's qemu-user-static handlers for ``arch_names`` (OCI or QEMU names,
    ``all`` or none for every one Debian ships) in ``root`` with the ``F`` flag; the
    host's own architecture is skipped. Idempotent: an enabled handler of the same name,
    interpreter, magic and mask that has ``F`` stays; one that lacks ``F`` or is disabled
    is removed and registered again. Mounts binfmt_misc at ``root`` when ``mount`` and it
    is not there. Needs root (``CAP_SYS_ADMIN``); raises :class:`UsageError` otherwise,
    :class:`NotFoundError` when qemu-user-static is missing."""
    root = root if root is not None else binfmt_misc_dir()
    native = native if native is not None else host_platform()
    if os.geteuid() != 0:
        raise UsageError(
            "registering binfmt_misc handlers changes the host's kernel configuration: run as"
            " root (sudo dockyard debug binfmt --install)"
        )
    definitions = _definitions(list(arch_names), conf_dir, native)
    if mount:
        _mount_binfmt_misc(root)
    results: list[InstallResult] = []
    for arch, handler in definitions:
        entry = root / handler.name
        action = "registered"
        if entry.exists():
            try:
                current = parse_handler(handler.name, entry.read_text())
            except (OSError, ValueError):
                current = None
            if (
                current is not None
                and current.enabled
                and current.fix_binary
                and current.interpreter == handler.interpreter
                and (current.offset, current.magic, current.mask)
                == (handler.offset, handler.magic, handler.mask)
            ):
                results.append(
                    InstallResult(arch=arch.name, handler=handler.name, action="present")
                )
                continue
            _write(entry, "-1")
            action = "replaced"
        _write(root / "register", _register_line(handler))
        results.append(InstallResult(arch=arch.name, handler=handler.name, action=action))
    with _cache_lock:
        _cache.pop(root, None)
    return results


def _write(path: Path, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise DockyardError(f"cannot write {text!r} to {path}: {exc.strerror or exc}") from exc
