"""Target platform lists: ``--platform linux/amd64,linux/arm64`` (buildx) and the
``platform`` frontend attribute BuildKit sends (the same comma-separated list)."""

from __future__ import annotations

from collections.abc import Iterable

from dockyard.core import Platform

__all__ = ["format_platforms", "parse_platforms"]


def parse_platforms(values: str | Iterable[str]) -> tuple[Platform, ...]:
    """The platforms of one or more comma-separated lists, normalized
    (``linux/arm64/v8`` → ``linux/arm64``, ``linux/x86_64`` → ``linux/amd64``) and
    deduplicated in the order first given. Empty items are skipped; a malformed one is a
    ``ValueError`` naming it."""
    texts = [values] if isinstance(values, str) else list(values)
    out: list[Platform] = []
    for text in texts:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                platform = Platform.parse(item)
            except ValueError as exc:
                named = repr(item) in str(exc)  # Platform.parse's own message names it
                raise ValueError(
                    str(exc) if named else f"invalid platform {item!r}: {exc}"
                ) from None
            if platform not in out:
                out.append(platform)
    return tuple(out)


def format_platforms(platforms: Iterable[Platform]) -> str:
    """``platforms`` as the comma-separated list :func:`parse_platforms` reads."""
    return ",".join(str(p) for p in platforms)
