"""The scenarios: what is prepared (untimed) and what is timed, per builder and run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ._builders import BUILDAH, BUILDKIT, DAEMON, EMBEDDED, Builder
from ._contexts import CHANGED, STAMP, Contexts
from ._proc import BenchError, run, run_all

ALL = (EMBEDDED, DAEMON, BUILDKIT, BUILDAH)
CONCURRENT_CLIENTS = 8


def _unique(builder: Builder, index: int) -> str:
    return f"{builder.name}-{index}-{time.time_ns()}"


@dataclass(slots=True, kw_only=True)
class Scenario:
    """One scenario. The runner calls :meth:`setup` once per builder, then for every run
    :meth:`prepare` (untimed), :meth:`timed` (returns the measured seconds) and
    :meth:`finish` (untimed)."""

    name: str
    title: str
    builders: tuple[str, ...] = ALL
    target: float | None = None  # Dockyard / BuildKit median ratio to reach
    floor: str | None = None  # the floor this scenario's time is read against
    notes: list[str] = field(default_factory=list)

    @property
    def resets(self) -> bool:
        """Whether :meth:`prepare` clears the builder's cache and images (a cold run)."""
        return False

    def setup(self, builder: Builder) -> None:
        pass

    def prepare(self, builder: Builder, index: int) -> None:
        pass

    def timed(self, builder: Builder, index: int) -> float:
        raise NotImplementedError

    def finish(self, builder: Builder, index: int) -> None:
        pass

    def observed(self, builder: Builder) -> list[int]:
        """Sizes in bytes this scenario noted for ``builder``, one per run (empty: none)."""
        return []


@dataclass(slots=True, kw_only=True)
class Build(Scenario):
    """Build ``context`` (tag ``bench-<name>:<builder>``); ``prime`` builds once first;
    ``cold`` clears the builder's cache and images before every run; ``change`` rewrites
    that file of the context (new content) before every run; ``seed`` passes a new
    ``SEED`` build argument every run."""

    context: Path
    prime: bool = False
    cold: bool = False
    change: str | None = None
    seed: bool = False

    @property
    def resets(self) -> bool:
        return self.cold

    def _tag(self, builder: Builder) -> str:
        return f"bench-{self.name}:{builder.name}"

    def setup(self, builder: Builder) -> None:
        if self.prime:
            builder.build(self.context, tag=self._tag(builder))

    def prepare(self, builder: Builder, index: int) -> None:
        if self.cold:
            builder.reset()
        if self.change is not None:
            (self.context / self.change).write_text(f"changed {_unique(builder, index)}\n")

    def timed(self, builder: Builder, index: int) -> float:
        args = {"SEED": _unique(builder, index)} if self.seed else None
        return builder.build(self.context, tag=self._tag(builder), build_args=args)


@dataclass(slots=True, kw_only=True)
class Concurrent(Scenario):
    """Eight builds of one Dockerfile at once, sharing the first RUN (same SEED) and
    differing in the second (CLIENT); the time until the last one ends."""

    context: Path
    clients: int = CONCURRENT_CLIENTS

    def timed(self, builder: Builder, index: int) -> float:
        seed = _unique(builder, index)
        commands = []
        for client in range(self.clients):
            tag = f"bench-{self.name}-{client}:{builder.name}"
            builder.tags.add(tag)
            commands.append(
                builder.build_argv(
                    self.context, tag=tag, build_args={"SEED": seed, "CLIENT": str(client)}
                )
            )
        return run_all(commands, builder.log, env=builder.env)


@dataclass(slots=True, kw_only=True)
class Export(Scenario):
    """A new ~100 MB layer (new SEED) is built untimed; timed is its export to the
    harness's registry with ``compression``: for Dockyard a rebuild (every step cached)
    with ``--output type=registry,compression=...``, for the peers ``push``."""

    context: Path
    registry: str
    compression: str
    _refs: dict[str, str] = field(default_factory=dict)
    _seeds: dict[str, str] = field(default_factory=dict)
    _pushed: dict[str, list[int]] = field(default_factory=dict)

    def prepare(self, builder: Builder, index: int) -> None:
        seed = _unique(builder, index)
        ref = f"{self.registry}/bench-{self.name}-{builder.name}:{index}"
        self._seeds[builder.name], self._refs[builder.name] = seed, ref
        if builder.is_dockyard:
            builder.build(self.context, tag=None, build_args={"SEED": seed})
        else:
            if builder.push_argv(ref, self.compression) is None:
                raise BenchError(f"{builder.name} cannot push {self.compression} layers")
            builder.build(self.context, tag=ref, build_args={"SEED": seed})

    def timed(self, builder: Builder, index: int) -> float:
        ref, seed = self._refs[builder.name], self._seeds[builder.name]
        if builder.is_dockyard:
            output = f"type=registry,name={ref},compression={self.compression}"
            return builder.build(self.context, tag=None, build_args={"SEED": seed}, output=output)
        argv = builder.push_argv(ref, self.compression)
        assert argv is not None
        return run(argv, builder.log, env=builder.env)

    def finish(self, builder: Builder, index: int) -> None:
        size = _largest_layer(self._refs[builder.name])
        if size is not None:
            self._pushed.setdefault(builder.name, []).append(size)
        if not builder.is_dockyard:
            builder.remove_images([self._refs[builder.name]])
            builder.tags.discard(self._refs[builder.name])

    def observed(self, builder: Builder) -> list[int]:
        """The compressed size of the largest layer each run pushed: the builders do
        not compress alike (same format, different encoders and levels), so a time is
        read with the bytes it produced."""
        return list(self._pushed.get(builder.name, ()))


_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def _largest_layer(ref: str) -> int | None:
    """The size of the largest layer of ``ref`` (``host:port/name:tag``) in the
    harness's plain-HTTP registry, ``None`` when it cannot be read."""
    import json
    import urllib.request

    host, _, rest = ref.partition("/")
    name, _, tag = rest.rpartition(":")
    request = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/{tag}", headers={"Accept": ", ".join(_MANIFEST_TYPES)}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            manifest = json.load(response)
        sizes = [int(layer["size"]) for layer in manifest.get("layers", ())]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return max(sizes, default=None)


NAMES = (
    "cold",
    "noop",
    "one-file",
    "ctx20k-noop",
    "ctx20k-change",
    "parallel",
    "concurrent",
    "export-gzip",
    "export-zstd",
    "pull",
)


def make_scenarios(names: tuple[str, ...], ctx: Contexts, registry: str | None) -> list[Scenario]:
    """The scenarios named, in the order of :data:`NAMES`."""
    out: list[Scenario] = []
    for name in NAMES:
        if name not in names:
            continue
        if name == "cold":
            out.append(
                Build(
                    name=name,
                    title="multistage, cold: build cache and base image cleared",
                    context=ctx.multistage,
                    cold=True,
                    target=0.7,
                    notes=[
                        "Dockyard embedded: empty state directory; daemon: restarted on an "
                        "empty state directory (untimed); BuildKit: docker builder prune -af + "
                        "rmi of the images and bases; buildah: rm --all + rmi --all"
                    ],
                )
            )
        elif name == "noop":
            out.append(
                Build(
                    name=name,
                    title="multistage, no-op rebuild",
                    context=ctx.multistage,
                    prime=True,
                    target=0.8,
                )
            )
        elif name == "one-file":
            out.append(
                Build(
                    name=name,
                    title=f"multistage, one file's content changed ({STAMP}, copied last)",
                    context=ctx.multistage,
                    prime=True,
                    change=STAMP,
                    target=0.8,
                )
            )
        elif name == "ctx20k-noop":
            out.append(
                Build(
                    name=name,
                    title="20,000-file context, no-op rebuild",
                    context=ctx.files20k,
                    prime=True,
                )
            )
        elif name == "ctx20k-change":
            out.append(
                Build(
                    name=name,
                    title=f"20,000-file context, one file changed ({CHANGED})",
                    context=ctx.files20k,
                    prime=True,
                    change=CHANGED,
                    target=0.7,
                )
            )
        elif name == "parallel":
            out.append(
                Build(
                    name=name,
                    title="two independent stages (RUN sleep 1 each), new SEED every run",
                    context=ctx.parallel,
                    prime=True,
                    seed=True,
                    notes=["1.0 s if the stages run in parallel, 2.0 s if one after the other"],
                )
            )
        elif name == "concurrent":
            out.append(
                Concurrent(
                    name=name,
                    title=f"{CONCURRENT_CLIENTS} concurrent builds sharing a ~1 s CPU step",
                    context=ctx.concurrent,
                    builders=(DAEMON, BUILDKIT, BUILDAH),
                    notes=["embedded Dockyard is not run: a state directory serves one process"],
                )
            )
        elif name in ("export-gzip", "export-zstd") and registry is not None:
            compression = name.split("-")[1]
            out.append(
                Export(
                    name=name,
                    title=f"export of a new ~100 MB layer to a registry, {compression}",
                    context=ctx.export,
                    registry=registry,
                    compression=compression,
                    builders=ALL if compression == "gzip" else (EMBEDDED, DAEMON, BUILDAH),
                    floor="pigz -6" if compression == "gzip" else "zstd -3 -T0",
                    notes=[
                        "Dockyard: rebuild (all cached) + export + push in one command; "
                        "peers: push of the built image"
                        + (
                            "; BuildKit v0.8/moby 20.10 push gzip only"
                            if compression == "zstd"
                            else ""
                        )
                    ],
                )
            )
        elif name == "pull" and registry is not None and ctx.pull is not None:
            out.append(
                Build(
                    name=name,
                    title="pull of a ~100 MB image (3 gzip layers) + COPY of one file, cold",
                    context=ctx.pull,
                    cold=True,
                    floor="pull floor",
                )
            )
    return out
