"""The resource limits a build step may be given (docker's ``--ulimit`` names), shared by
the LLB builder (:class:`dockyard.llb.Ulimit`) and the executor
(:class:`dockyard.executor.Rlimit`), imported on its own like
``dockyard.core.singleflight``."""

from __future__ import annotations

__all__ = ["ULIMIT_NAMES"]

ULIMIT_NAMES = frozenset(
    (
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    )
)
"""docker's ``--ulimit`` names; ``RLIMIT_`` + the upper-cased name is ``setrlimit``'s."""
