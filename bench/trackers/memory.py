"""Peak memory of a measured span: process RSS high-water mark, and torch's CUDA peaks."""
from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path


@dataclass
class MemoryPeak:
    rss_mb: float | None = None
    cuda_allocated_mb: float | None = None
    cuda_reserved_mb: float | None = None


def _reset_rss_peak() -> bool:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each span gets its own peak
    # without a sampling thread competing with the measured loop for the GIL.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class MemoryTracker:
    """Context manager: `with MemoryTracker(device) as mem: ...; mem.peak` after the block."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak = MemoryPeak()

    def __enter__(self) -> "MemoryTracker":
        _reset_rss_peak()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        self.peak.rss_mb = round(_rss_peak_mb(), 1)
        if self.device.startswith("cuda"):
            import torch

            self.peak.cuda_allocated_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            self.peak.cuda_reserved_mb = round(torch.cuda.max_memory_reserved() / 2**20, 1)
