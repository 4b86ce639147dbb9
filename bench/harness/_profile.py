"""Summaries of py-spy's raw (collapsed) stacks: the share of samples per function,
inclusive (on the stack) and self (at the top)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# leaves where a thread waits (py-spy's idle detection misses some of them)
_IDLE = (
    "_worker (concurrent/futures/thread.py:81)",
    "EpollSelector.select (selectors.py:",
    "Thread.run (threading.py:982)",
    "Condition.wait (threading.py:",
    "Event.wait (threading.py:",
    "_wait_once (grpc/",
)


def _frames(stack: str) -> list[str]:
    return [f for f in stack.split(";") if f]


def _idle(leaf: str) -> bool:
    return any(leaf.startswith(p) for p in _IDLE)


def summarize(path: Path, top: int = 30) -> str:
    """A text table of the functions with the largest inclusive and self shares."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = _frames(stack)
        if not frames or _idle(frames[-1]):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return f"{path}: no samples\n"
    lines = [f"{path.name}: {total} samples (threads not waiting)", "", "inclusive:"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    lines += ["", "self:"]
    for frame, count in own.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines) + "\n"
