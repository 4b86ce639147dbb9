"""The names of CDI devices (the Container Device Interface's grammar), shared by the LLB
builder (:class:`dockyard.llb.CDIDevice`), the Dockerfile frontend (``RUN --device``)
and the worker's CDI registry (:mod:`dockyard.executor.cdi`); imported on its own like
``dockyard.core.ulimits``.

A device's fully qualified name is ``vendor/class=name``; ``vendor/class`` is its
*kind*. A vendor is a DNS-like name (letters, digits, ``_ - .``; a letter first, a letter
or digit last), a class the same, a device name letters, digits and ``_ - . :`` (a letter
or digit first and last).

What a build may ask for (BuildKit's ``RUN --device`` names):

- ``vendor/class=name``: that device (or, when the kind has no device of that name, the
  devices of the kind whose ``org.mobyproject.buildkit.device.class`` annotation is
  ``name``);
- ``vendor/class``: the first device of the kind (by name);
- ``vendor/class=*``: every device of the kind;
- ``name`` (no ``/``): every device whose class annotation is ``name``.

These names come from build descriptions (untrusted): they are only ever compared with
the names of the host's specs, never turned into a path.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import UsageError

__all__ = [
    "DeviceSelector",
    "check_class",
    "check_device_name",
    "check_kind",
    "check_vendor",
    "parse_selector",
]

_MAX_NAME = 253  # a DNS name's length; longer is no name anyone registered


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _check_segment(name: str, what: str) -> None:
    """A vendor or a class: a letter first, a letter or digit last, ``_ - .`` between."""
    if not name:
        raise UsageError(f"empty {what} name")
    if len(name) > _MAX_NAME:
        raise UsageError(f"{what} name {name[:40]!r}... is too long")
    if not (name[0].isascii() and name[0].isalpha()):
        raise UsageError(f"{what} name {name!r} must start with a letter")
    for c in name[1:-1]:
        if not (_alnum(c) or c in "_-."):
            raise UsageError(f"invalid character {c!r} in {what} name {name!r}")
    if not _alnum(name[-1]):
        raise UsageError(f"{what} name {name!r} must end with a letter or digit")


def check_vendor(name: str) -> None:
    """Raise :class:`~dockyard.core.UsageError` unless ``name`` is a valid vendor."""
    _check_segment(name, "vendor")


def check_class(name: str) -> None:
    """Raise :class:`~dockyard.core.UsageError` unless ``name`` is a valid class."""
    _check_segment(name, "class")


def check_kind(kind: str) -> tuple[str, str]:
    """``vendor/class`` split in two; :class:`~dockyard.core.UsageError` unless valid."""
    vendor, slash, cls = kind.partition("/")
    if not slash or not vendor or not cls:
        raise UsageError(f"invalid device kind {kind!r} (expected vendor/class)")
    check_vendor(vendor)
    check_class(cls)
    return vendor, cls


def check_device_name(name: str) -> None:
    """Raise :class:`~dockyard.core.UsageError` unless ``name`` is a valid device name."""
    if not name:
        raise UsageError("empty device name")
    if len(name) > _MAX_NAME:
        raise UsageError(f"device name {name[:40]!r}... is too long")
    if not _alnum(name[0]):
        raise UsageError(f"device name {name!r} must start with a letter or digit")
    for c in name[1:-1]:
        if not (_alnum(c) or c in "_-.:"):
            raise UsageError(f"invalid character {c!r} in device name {name!r}")
    if not _alnum(name[-1]):
        raise UsageError(f"device name {name!r} must end with a letter or digit")


@dataclass(frozen=True, slots=True)
class DeviceSelector:
    """What one requested name selects (see the module docstring).

    ``kind`` is ``vendor/class``, or ``""`` for a selection by class annotation only;
    ``name`` is the device name, ``"*"`` (every device of the kind), ``""`` (the first
    device of the kind) or, without a kind, the class annotation's value.
    """

    kind: str
    name: str

    @property
    def by_class(self) -> bool:
        return not self.kind

    def __str__(self) -> str:
        if not self.kind:
            return self.name
        return f"{self.kind}={self.name}" if self.name else self.kind


def parse_selector(name: str) -> DeviceSelector:
    """The selection a requested device name makes; :class:`~dockyard.core.UsageError`
    (naming it) for a name outside the grammar."""
    try:
        kind, eq, device = name.partition("=")
        if "/" not in kind:
            if eq:
                raise UsageError("a device name needs a kind (vendor/class=name)")
            check_device_name(name)
            return DeviceSelector(kind="", name=name)
        check_kind(kind)
        if eq and not device:
            raise UsageError("empty device name after '='")
        if device and device != "*":
            check_device_name(device)
        return DeviceSelector(kind=kind, name=device)
    except UsageError as exc:
        raise UsageError(f"invalid device {name!r}: {exc.message}") from None
