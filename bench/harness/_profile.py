"""Summaries of py-spy's raw (collapsed) stacks: the share of samples per function,
inclusive (on the stack) and self (at the top)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

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


# -- pyinstrument (the main thread's wall clock) ------------------------------------------

_WAIT = ("poll", "epoll.poll", "select.select")


def _label(node: dict[str, Any]) -> str:
    return f"{node['function']}  {node.get('file_path_short', '')}:{node.get('line_no', '')}"


def _is_import(node: dict[str, Any]) -> bool:
    path = str(node.get("file_path", ""))
    return node["function"] == "<module>" or "importlib" in path


def _largest(values: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:n]


def summarize_pyinstrument(path: Path, top: int = 25) -> str:
    """Shares of a pyinstrument JSON profile: imports (module bodies run on first use),
    waiting in the event loop, and the functions with the most time outside imports."""
    data = json.loads(path.read_text())
    root = data["root_frame"]
    total = float(data["duration"])
    imports: dict[str, float] = {}
    waits = 0.0
    inclusive: dict[str, float] = {}
    own: dict[str, float] = {}

    def module_name(node: dict[str, Any]) -> str:
        """The module an import frame loads (the first module body below importlib)."""
        stack = [node]
        while stack:
            n = stack.pop(0)
            path = str(n.get("file_path_short", ""))
            if n["function"] == "<module>" and "importlib" not in path and "<frozen" not in path:
                return path
            stack.extend(n.get("children", []))
        return str(node.get("file_path_short", node["function"]))

    def walk(node: dict[str, Any], seen: frozenset[str], depth: int) -> tuple[float, float]:
        """Returns (import time, wait time) inside ``node``; fills the counters."""
        nonlocal waits
        t = float(node["time"])
        if depth > 0 and _is_import(node):
            name = module_name(node)
            imports[name] = imports.get(name, 0.0) + t
            return t, 0.0
        if node["function"] in _WAIT:
            waits += t
            return 0.0, t
        label = _label(node)
        inner_import = inner_wait = child_time = 0.0
        for child in node.get("children", []):
            child_time += float(child["time"])
            i, w = walk(child, seen | {label}, depth + 1)
            inner_import += i
            inner_wait += w
        if label not in seen:
            inclusive[label] = inclusive.get(label, 0.0) + t - inner_import - inner_wait
        own[label] = own.get(label, 0.0) + max(0.0, t - child_time)
        return inner_import, inner_wait

    # the root is the script's own module: walk its children
    imported = sum(walk(child, frozenset(), 1)[0] for child in root.get("children", []))
    cpu = data.get("cpu_time")
    lines = [
        f"{path.name}: {total:.3f} s wall"
        + (f", {float(cpu):.3f} s CPU" if cpu is not None else "")
        + " (main thread)",
        f"  imports (module bodies, first use): {imported:.3f} s = {100 * imported / total:.0f}%",
        f"  waiting in the event loop (threads, subprocesses, sockets): {waits:.3f} s"
        f" = {100 * waits / total:.0f}%",
        "",
        "largest imports (outermost module loaded):",
    ]
    for name, t in _largest(imports, 12):
        lines.append(f"  {t:7.3f} s {100 * t / total:5.1f}%  {name}")
    lines += ["", "inclusive time outside imports and waits:"]
    for name, t in _largest(inclusive, top):
        lines.append(f"  {t:7.3f} s {100 * t / total:5.1f}%  {name}")
    lines += ["", "self time:"]
    for name, t in _largest(own, 15):
        lines.append(f"  {t:7.3f} s {100 * t / total:5.1f}%  {name}")
    return "\n".join(lines) + "\n"
