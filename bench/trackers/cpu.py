"""What the machine did during a measured span, from /proc/stat: steal time and other work's load.

A noisy neighbour shows up in two places: `steal` (the hypervisor ran another guest on our CPU)
and busy time that is not ours (other processes on this machine). Both are shares of all CPUs'
time over the span, in %.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


def read_proc_stat(path: str | Path = "/proc/stat") -> dict[str, int] | None:
    """The aggregate `cpu` line of /proc/stat as named jiffy counters (None where there is none)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("cpu "):
                values = [int(v) for v in line.split()[1:9]]
                return dict(zip(names, values + [0] * (8 - len(values))))
    except (OSError, ValueError):
        pass
    return None


def cpu_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float] | None:
    """Steal and busy time between two /proc/stat readings, in % of all CPUs' time.

    Busy is everything but idle, iowait and steal (user, nice, system, irq, softirq: guest time
    is already inside user). None when no time passed between the readings.
    """
    d = {k: after[k] - before[k] for k in before}
    total = sum(d.values())
    if total <= 0:
        return None
    busy = total - d["idle"] - d["iowait"] - d["steal"]
    return {"cpu_steal_pct": 100.0 * d["steal"] / total, "cpu_busy_pct": 100.0 * busy / total}


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class CpuLoad:
    cpu_steal_pct: float | None = None
    cpu_busy_pct: float | None = None
    cpu_others_pct: float | None = None
    loadavg_1min: float | None = None

    def as_row(self) -> dict:
        return {"cpu_steal_pct": self.cpu_steal_pct, "cpu_busy_pct": self.cpu_busy_pct,
                "cpu_others_pct": self.cpu_others_pct, "loadavg_1min": self.loadavg_1min}


class CpuTracker:
    """Context manager: steal, busy and others' busy share of the machine during the block.

    `cpu_others_pct` is busy time less this process's own CPU time: the load other work put on
    the machine while we measured.
    """

    def __init__(self, stat_path: str | Path = "/proc/stat"):
        self.stat_path = stat_path
        self.load = CpuLoad()

    def __enter__(self) -> "CpuTracker":
        self._stat = read_proc_stat(self.stat_path)
        self._own = _own_cpu_s()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        after = read_proc_stat(self.stat_path)
        wall = time.perf_counter() - self._wall
        shares = cpu_shares(self._stat, after) if self._stat and after else None
        if shares:
            self.load.cpu_steal_pct = shares["cpu_steal_pct"]
            self.load.cpu_busy_pct = shares["cpu_busy_pct"]
            cpus = os.cpu_count() or 1
            own = 100.0 * (_own_cpu_s() - self._own) / (wall * cpus) if wall > 0 else 0.0
            self.load.cpu_others_pct = max(0.0, shares["cpu_busy_pct"] - own)
        if hasattr(os, "getloadavg"):
            self.load.loadavg_1min = os.getloadavg()[0]
