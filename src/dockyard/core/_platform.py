"""Platform values (``os/architecture[/variant]``) normalized like containerd does."""

from __future__ import annotations

import os
import platform as _stdlib_platform
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Platform", "host_platform", "normalize_platforms"]

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "386": ("386", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "arm": ("arm", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64le": ("mips64le", ""),
    "loong64": ("loong64", ""),
}

# The words containerd's platforms.Parse takes alone (GOOS and GOARCH values).
_KNOWN_OS = frozenset(
    [
        "aix",
        "android",
        "darwin",
        "dragonfly",
        "freebsd",
        "hurd",
        "illumos",
        "ios",
        "js",
        "linux",
        "nacl",
        "netbsd",
        "openbsd",
        "plan9",
        "solaris",
        "wasip1",
        "windows",
        "zos",
    ]
)
_KNOWN_ARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "ppc64",
        "ppc64le",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """An OCI platform. Always construct through :meth:`parse` or :meth:`of` to normalize."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def of(cls, os: str, architecture: str, variant: str = "") -> Platform:
        """Normalize ``architecture``/``variant`` (``aarch64`` → ``arm64``, ``arm`` → ``arm/v7``)."""
        os = os.lower()
        arch, default_variant = _ARCH_ALIASES.get(architecture.lower(), (architecture.lower(), ""))
        variant = variant.lower() or default_variant
        if arch == "arm64" and variant in ("8", "v8"):
            variant = ""
        elif arch == "arm":
            if variant in ("", "7"):
                variant = "v7"
            elif variant in ("5", "6", "8"):
                variant = "v" + variant
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return cls(os=os, architecture=arch, variant=variant)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/arm64``, ``linux/arm/v7`` or a bare ``linux``/``arm64``.

        Raises ``ValueError`` for an empty or malformed specifier, or a bare word that is
        no operating system or architecture containerd knows (``foo``).
        """
        spec = text.strip()
        if not spec:
            raise ValueError("empty platform specifier")
        parts = spec.split("/")
        if len(parts) > 3 or any(not p for p in parts):
            raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
        if len(parts) == 1:
            value = parts[0].lower()
            if value in _KNOWN_OS:
                host = host_platform()
                return cls.of(value, host.architecture, host.variant)
            if value in _KNOWN_ARCH or value in _ARCH_ALIASES:
                return cls.of("linux", value)
            # containerd's rule: one word is an OS or an architecture it knows
            raise ValueError(f"invalid platform {text!r}: unknown operating system or architecture")
        return cls.of(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def matches(self, other: Platform) -> bool:
        """True if an image built for ``other`` runs on this platform (same os/arch; variant
        equal, or unset on either side)."""
        if self.os != other.os or self.architecture != other.architecture:
            return False
        return not self.variant or not other.variant or self.variant == other.variant


def host_platform() -> Platform:
    """The platform this process runs on."""
    system = (os.uname().sysname if hasattr(os, "uname") else _stdlib_platform.system()).lower()
    return Platform.of(system, _stdlib_platform.machine() or "amd64")


def normalize_platforms(
    platform: Platform | None, platforms: Iterable[Platform]
) -> tuple[Platform | None, tuple[Platform, ...]]:
    """A build's ``platform`` and ``platforms`` options as they are kept: the list
    without repeats (first place kept); a list of one that ``platform`` does not
    contradict becomes ``platform`` (a single-platform build). Both given otherwise:
    :class:`UsageError`."""
    from ._errors import UsageError

    unique = tuple(dict.fromkeys(platforms))
    if len(unique) == 1 and platform in (None, unique[0]):
        return unique[0], ()
    if unique and platform is not None:
        raise UsageError("give the target platform as platform or platforms, not both")
    return platform, unique
