"""The image configuration blob: platform, container defaults, rootfs diff_ids, history.

Field names and their order follow the OCI image-spec's Go structs with BuildKit's Docker
extensions (``Healthcheck``, ``OnBuild``, ``Shell``), so that a config Dockyard writes is
byte-identical to what BuildKit writes for the same values. Fields only Docker's classic
builder writes (``container_config``, ``docker_version``, ...) are ignored when reading.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.core import Digest, Platform

from ._json import canonical_json, load_json_object
from ._values import Reader, empty_map, frozen_map

__all__ = [
    "ContainerConfig",
    "Healthcheck",
    "History",
    "ImageConfig",
    "format_timestamp",
]


def format_timestamp(epoch_ns: int) -> str:
    """Epoch nanoseconds as Go's RFC 3339 (``2024-01-02T03:04:05.5Z``, zeros trimmed)."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    when = _dt.datetime.fromtimestamp(seconds, _dt.UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck:
    """``HEALTHCHECK``: ``test`` is ``("NONE",)``, ``("CMD", ...)`` or ``("CMD-SHELL", cmd)``.

    Durations are nanoseconds, as in the JSON.
    """

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.test:
            out["Test"] = list(self.test)
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Healthcheck:
        r = Reader(obj, "image config Healthcheck")
        return cls(
            test=r.texts("Test"),
            interval=r.integer("Interval"),
            timeout=r.integer("Timeout"),
            start_period=r.integer("StartPeriod"),
            start_interval=r.integer("StartInterval"),
            retries=r.integer("Retries"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """The defaults a container of the image runs with (the ``config`` object).

    ``exposed_ports`` (``"80/tcp"``) and ``volumes`` are sets in the JSON, kept sorted.
    ``env`` entries are ``KEY=value``. An empty tuple means "not set".
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=empty_map, hash=False)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exposed_ports", tuple(sorted(set(self.exposed_ports))))
        object.__setattr__(self, "volumes", tuple(sorted(set(self.volumes))))
        object.__setattr__(self, "labels", frozen_map(self.labels))

    def env_value(self, name: str) -> str | None:
        """The value of ``name`` in ``env`` (the last definition wins), or ``None``."""
        found = None
        for entry in self.env:
            key, sep, value = entry.partition("=")
            if key == name:
                found = value if sep else ""
        return found

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {volume: {} for volume in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell:
            out["Shell"] = list(self.shell)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> ContainerConfig:
        r = Reader(obj, "image config")
        return cls(
            user=r.text("User"),
            exposed_ports=r.key_set("ExposedPorts"),
            env=r.texts("Env"),
            entrypoint=r.texts("Entrypoint"),
            cmd=r.texts("Cmd"),
            volumes=r.key_set("Volumes"),
            working_dir=r.text("WorkingDir"),
            labels=r.text_map("Labels"),
            stop_signal=r.text("StopSignal"),
            args_escaped=r.flag("ArgsEscaped"),
            healthcheck=Healthcheck.from_json(r.child("Healthcheck"))
            if r.has("Healthcheck")
            else None,
            on_build=r.texts("OnBuild"),
            shell=r.texts("Shell"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """One history entry; ``empty_layer`` entries do not correspond to a layer."""

    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, obj: Any, what: str = "image config history entry") -> History:
        r = Reader(obj, what)
        return cls(
            created=r.text("created") or None,
            created_by=r.text("created_by"),
            author=r.text("author"),
            comment=r.text("comment"),
            empty_layer=r.flag("empty_layer"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """The image configuration document (``application/vnd.oci.image.config.v1+json``).

    ``created`` is kept as the RFC 3339 text it was read as (Go writes nanoseconds, which
    ``datetime`` cannot hold); build it with :func:`format_timestamp`.
    """

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    created: str | None = None
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    rootfs_type: str = "layers"
    history: tuple[History, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "diff_ids", tuple(Digest.parse(d) for d in self.diff_ids))
        object.__setattr__(self, "history", tuple(self.history))

    @property
    def platform(self) -> Platform:
        """The normalized platform this image is for."""
        base = Platform.of(self.os, self.architecture, self.variant)
        if self.os_version or self.os_features:
            return Platform(
                os=base.os,
                architecture=base.architecture,
                variant=base.variant,
                os_version=self.os_version,
                os_features=self.os_features,
            )
        return base

    def layer_history(self) -> list[History | None]:
        """For each diff_id in order, the history entry that made it (``None`` if the
        history is shorter than the layer list)."""
        entries = [h for h in self.history if not h.empty_layer]
        return [entries[i] if i < len(entries) else None for i in range(len(self.diff_ids))]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        out["architecture"] = self.architecture
        out["os"] = self.os
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": self.rootfs_type, "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    def to_bytes(self, *, indent: int = 0) -> bytes:
        """The canonical encoding (see :func:`dockyard.oci.canonical_json`); BuildKit
        writes configs compact (``indent=0``)."""
        return canonical_json(self.to_json(), indent=indent)

    @classmethod
    def from_json(cls, obj: Any) -> ImageConfig:
        r = Reader(obj, "image config")
        rootfs = Reader(r.child("rootfs") or {}, "image config rootfs")
        diff_ids = []
        for i, item in enumerate(rootfs.items("diff_ids")):
            try:
                diff_ids.append(Digest.parse(item if isinstance(item, str) else ""))
            except ValueError as exc:
                raise rootfs.fail(f"diff_ids[{i}]: {exc}") from exc
        return cls(
            architecture=r.text("architecture"),
            os=r.text("os"),
            variant=r.text("variant"),
            os_version=r.text("os.version"),
            os_features=r.texts("os.features"),
            created=r.text("created") or None,
            author=r.text("author"),
            config=ContainerConfig.from_json(r.child("config") or {}),
            diff_ids=tuple(diff_ids),
            rootfs_type=rootfs.text("type", "layers"),
            history=tuple(
                History.from_json(item, f"image config history[{i}]")
                for i, item in enumerate(r.items("history"))
            ),
        )

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        """Parse config blob bytes; :class:`~dockyard.core.ContentError` if malformed."""
        return cls.from_json(load_json_object(data, "image config"))
