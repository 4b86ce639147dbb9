"""Retry policy and statistics of the registry client (no HTTP imports here)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from dockyard.core import RegistryError

__all__ = ["RegistryStatistics", "RetryPolicy", "TransientRegistryError"]

#: Statuses worth another try: rate limits and a server or gateway that is not well now.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff for transient failures (5xx, 429, resets, truncated bodies).

    ``attempts`` counts the first try. Attempt ``n`` (0-based) waits
    ``min(initial_delay * multiplier**n, max_delay)``, spread by ±``jitter`` so that
    clients do not retry in lock step; a ``Retry-After`` header is honoured up to
    ``max_delay``.
    """

    attempts: int = 5
    initial_delay: float = 0.25
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        base = min(self.initial_delay * (self.multiplier**attempt), self.max_delay)
        if self.jitter and base:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return base


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryStatistics:
    """Counters of one client since it was made (see ``RegistryClient.statistics()``)."""

    requests: int = 0
    retries: int = 0
    resumed_downloads: int = 0
    restarted_downloads: int = 0
    restarted_uploads: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    tokens_fetched: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0


class TransientRegistryError(RegistryError):
    """A registry request failed in a way that may pass (unreachable, reset, 5xx) even after
    the request's own retries; operations made of several requests (a blob upload) may
    start over once more."""
