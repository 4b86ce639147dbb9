"""The image config side of conversion: what each instruction records in the config
(``ENV``, ``LABEL``, ``EXPOSE``, ``VOLUME``, ``USER``, ``WORKDIR``, ``CMD``,
``ENTRYPOINT``, ``SHELL``, ``STOPSIGNAL``, ``HEALTHCHECK``, ``ONBUILD``, ``MAINTAINER``)
and the history entry it adds, worded like BuildKit's (``ENV A=1``, ``CMD ["sh"]``,
``RUN |1 V=2 /bin/sh -c make # buildkit``) with ``empty_layer`` where no layer changes.

Configs are immutable :class:`dockyard.oci.ImageConfig` values; every function returns a
new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from itertools import repeat
from operator import itemgetter

from dockyard import oci
from dockyard.core import Platform
from dockyard.core.applog import AppendLog

from ._instructions import HealthcheckInstruction
from ._text import go_quote_list

__all__ = [
    "DEFAULT_PATH",
    "HISTORY_COMMENT",
    "ImageDraft",
    "add_history",
    "add_labels",
    "empty_image",
    "env_dict",
    "format_healthcheck",
    "go_duration",
    "healthcheck_config",
    "list_text",
    "normalize_platform",
    "quoted_list",
    "set_platform",
    "update_config",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HISTORY_COMMENT = "buildkit.dockerfile.v0"


def empty_image(platform: Platform) -> oci.ImageConfig:
    """The config of ``FROM scratch``: the platform, ``PATH`` and ``WorkingDir`` ``/``."""
    return oci.ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        os_version=platform.os_version,
        os_features=platform.os_features,
        config=oci.ContainerConfig(working_dir="/", env=(f"PATH={DEFAULT_PATH}",)),
    )


def update_config(image: oci.ImageConfig, **changes: object) -> oci.ImageConfig:
    """``image`` with fields of its ``config`` replaced."""
    return dataclasses.replace(image, config=dataclasses.replace(image.config, **changes))  # type: ignore[arg-type]


def env_dict(entries: Iterable[str]) -> dict[str, str]:
    """``KEY=value`` entries as a dict, in order (a later entry wins)."""
    out: dict[str, str] = {}
    for entry in entries:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def add_labels(image: oci.ImageConfig, labels: Mapping[str, str]) -> oci.ImageConfig:
    merged = dict(image.config.labels)
    merged.update(labels)
    return update_config(image, labels=merged)


def add_history(
    image: oci.ImageConfig,
    created_by: str,
    *,
    layer: bool,
    epoch: int | None,
    marker: bool | None = None,
) -> oci.ImageConfig:
    """Append a history entry. ``# buildkit`` marks the entries of steps that ran on a
    state (RUN, COPY, ADD: ``marker`` defaults to ``layer``); WORKDIR makes a layer
    without the mark, as BuildKit commits it (``marker=False``)."""
    entry = _history(created_by, layer=layer, epoch=epoch, marker=marker)
    return dataclasses.replace(image, history=(*image.history, entry))


def _history(
    created_by: str, *, layer: bool, epoch: int | None, marker: bool | None
) -> oci.History:
    marked = layer if marker is None else marker
    return oci.History(
        created=oci.format_timestamp(epoch * 1_000_000_000) if epoch is not None else None,
        created_by=created_by + (" # buildkit" if marked else ""),
        comment=HISTORY_COMMENT,
        empty_layer=not layer,
    )


class ImageDraft:
    """A stage's image config while its instructions run: the lists that grow (``Env``,
    ``Labels``, ``ExposedPorts``, ``Volumes``, ``OnBuild``, the history) are kept as
    mutable lists and dicts and made into an :class:`~dockyard.oci.ImageConfig` once,
    when :meth:`image` is asked for; the other fields live in :attr:`scalars`, a config
    whose growing fields are empty. Each ``ENV``, ``LABEL``, ``EXPOSE`` line or history
    entry so costs its own size, not a copy of the config (every replace of a config
    copied, sorted and froze all of them: 6000 ``ENV`` lines were quadratic). A stage
    based on another starts from that stage's draft (:meth:`child`), sharing its history
    (:class:`AppendLog`)."""

    __slots__ = (
        "_env",
        "_env_at",
        "_history",
        "_image",
        "_labels",
        "_on_build",
        "_ports",
        "_volumes",
        "scalars",
    )

    def __init__(self, image: oci.ImageConfig) -> None:
        config = image.config
        self._env = list(config.env)
        # the first entry of each name (a base's config may repeat one: the first one is
        # replaced, as BuildKit's addEnv does)
        names = list(map(itemgetter(0), map(str.partition, self._env, repeat("="))))
        self._env_at = dict(zip(reversed(names), range(len(names) - 1, -1, -1), strict=True))
        self._labels = dict(config.labels)
        self._ports = dict.fromkeys(config.exposed_ports)
        self._volumes = dict.fromkeys(config.volumes)
        self._on_build = list(config.on_build)
        self._history = AppendLog(image.history)
        self.scalars = dataclasses.replace(
            image,
            history=(),
            config=dataclasses.replace(
                config, env=(), labels={}, exposed_ports=(), volumes=(), on_build=()
            ),
        )
        self._image: oci.ImageConfig | None = image

    def child(self) -> ImageDraft:
        """The draft of a stage based on this one's: the same config without ``OnBuild``
        (the triggers ran in the child already), the history shared."""
        other = ImageDraft.__new__(ImageDraft)
        other._env = list(self._env)
        other._env_at = dict(self._env_at)
        other._labels = dict(self._labels)
        other._ports = dict(self._ports)
        other._volumes = dict(self._volumes)
        other._on_build = []
        other._history = self._history.branch()
        other.scalars = self.scalars
        other._image = None
        return other

    def copied_entries(self) -> int:
        """How many entries :meth:`child` copies (``Env`` and its positions, labels,
        ports, volumes)."""
        return 2 * len(self._env) + len(self._labels) + len(self._ports) + len(self._volumes)

    @property
    def env(self) -> list[str]:
        """The ``KEY=value`` entries of ``Env`` (not to be changed)."""
        return self._env

    def appends_env(self, names: Iterable[str]) -> bool:
        """Whether setting ``names`` in turn (:meth:`set_envs`) appends each or replaces
        the last entry, as setting them in a state's environment moves each to its end
        (the config's ``Env`` then stays the end of that environment, in order)."""
        env, positions = self._env, self._env_at
        last = len(env) - 1
        added: dict[str, int] = {}
        for name in names:
            index = positions.get(name, added.get(name))
            if index is None:
                last += 1
                added[name] = last
            elif index != last:
                return False
        return True

    def image(self) -> oci.ImageConfig:
        """The config as it stands (kept until the next change)."""
        image = self._image
        if image is None:
            image = dataclasses.replace(
                self.scalars,
                history=self._history.as_tuple(),
                config=dataclasses.replace(
                    self.scalars.config,
                    env=tuple(self._env),
                    labels=self._labels,
                    exposed_ports=tuple(self._ports),
                    volumes=tuple(self._volumes),
                    on_build=tuple(self._on_build),
                ),
            )
            self._image = image
        return image

    def update(self, **changes: object) -> None:
        """Replace fields of the config that do not grow (``user``, ``cmd``, …)."""
        self.scalars = update_config(self.scalars, **changes)
        self._image = None

    def set_author(self, author: str) -> None:
        self.scalars = dataclasses.replace(self.scalars, author=author)
        self._image = None

    def set_envs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Set each name in turn: replaced where it is, else appended (one pass, however
        many pairs: copying the whole ``Env`` per pair was quadratic)."""
        env, positions = self._env, self._env_at
        for key, value in pairs:
            entry = f"{key}={value}"
            index = positions.get(key)
            if index is None:
                positions[key] = len(env)
                env.append(entry)
            else:
                env[index] = entry
        self._image = None

    def add_labels(self, labels: Mapping[str, str]) -> None:
        self._labels.update(labels)
        self._image = None

    def add_ports(self, ports: Iterable[str]) -> None:
        self._ports.update(dict.fromkeys(ports))
        self._image = None

    def add_volumes(self, volumes: Iterable[str]) -> None:
        self._volumes.update(dict.fromkeys(volumes))
        self._image = None

    def add_on_build(self, expression: str) -> None:
        self._on_build.append(expression)
        self._image = None

    def add_history(
        self, created_by: str, *, layer: bool, epoch: int | None, marker: bool | None = None
    ) -> None:
        """:func:`add_history`."""
        self._history.append(_history(created_by, layer=layer, epoch=epoch, marker=marker))
        self._image = None


def list_text(items: Iterable[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b]``."""
    return "[" + " ".join(items) + "]"


def quoted_list(items: Iterable[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return go_quote_list(list(items))


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String`` (``1m30s``, ``500ms``, ``0s``)."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return sign + _fraction(value, 1_000) + "µs"
    if value < 1_000_000_000:
        return sign + _fraction(value, 1_000_000) + "ms"
    seconds, rest = divmod(value, 1_000_000_000)
    text = _fraction(seconds % 60 * 1_000_000_000 + rest, 1_000_000_000) + "s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m" + text
        if minutes >= 60:
            text = f"{minutes // 60}h" + text
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def healthcheck_config(instruction: HealthcheckInstruction) -> oci.Healthcheck:
    return oci.Healthcheck(
        test=instruction.test,
        interval=instruction.interval,
        timeout=instruction.timeout,
        start_period=instruction.start_period,
        start_interval=instruction.start_interval,
        retries=instruction.retries,
    )


def format_healthcheck(check: oci.Healthcheck) -> str:
    """Go's ``%+v`` of the healthcheck struct, as BuildKit writes it into history."""
    return (
        f"{{Test:{list_text(check.test)} Interval:{go_duration(check.interval)} "
        f"Timeout:{go_duration(check.timeout)} StartPeriod:{go_duration(check.start_period)} "
        f"StartInterval:{go_duration(check.start_interval)} Retries:{check.retries}}}"
    )


def set_platform(image: oci.ImageConfig, target: Platform) -> oci.ImageConfig:
    """Stamp an explicitly requested target platform on the final image (BuildKit keeps
    the base image's variant/OS version when os and architecture already match)."""
    same = image.os == target.os and image.architecture == target.architecture
    variant = target.variant if (target.variant or not same) else image.variant
    os_version = target.os_version if (target.os_version or not same) else image.os_version
    features = target.os_features if target.os_features else image.os_features
    return dataclasses.replace(
        image,
        os=target.os,
        architecture=target.architecture,
        variant=variant,
        os_version=os_version,
        os_features=features,
    )


def normalize_platform(image: oci.ImageConfig) -> oci.ImageConfig:
    """The platform fields normalized like containerd (``aarch64`` → ``arm64``)."""
    if not image.os or not image.architecture:
        return image
    normal = Platform.of(image.os, image.architecture, image.variant)
    return dataclasses.replace(
        image, os=normal.os, architecture=normal.architecture, variant=normal.variant
    )
