"""Peak memory of a measured span: process RSS high-water mark against a stated baseline, and CUDA peaks.

Variants run one after another in one process, so a process-wide peak includes whatever earlier
variants left behind (live objects, allocator arenas not given back). Each span therefore
records its peak (`VmHWM`, reset at the start of the span) together with a baseline: the RSS
before the variant loaded. `peak_rss_delta_mb` (peak - baseline) is what this variant added.
"""
from __future__ import annotations

import ctypes
import gc
import resource
from dataclasses import dataclass
from pathlib import Path

METHOD = ("in-process: peak_rss_mb is the process RSS high-water mark during the cell (VmHWM reset at its start); "
          "peak_rss_delta_mb = peak_rss_mb - rss_baseline_mb, the RSS before this variant loaded")
METHOD_NO_RESET = ("in-process, VmHWM could not be reset: peak_rss_mb is the process's lifetime peak, "
                   "which includes earlier variants; peak_rss_delta_mb is not measured")


@dataclass
class MemoryPeak:
    rss_mb: float | None = None
    baseline_mb: float | None = None
    delta_mb: float | None = None
    method: str | None = None
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


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float | None:
    """The process's resident set size now, in MiB."""
    return _status_mb("VmRSS")


def release_freed_memory() -> None:
    """Collect garbage and hand glibc's free arenas back to the OS, so a baseline taken next is honest."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryTracker:
    """Context manager: `with MemoryTracker(device, baseline_mb) as mem: ...; mem.peak` after the block.

    Without `baseline_mb` the baseline is the RSS when the block starts.
    """

    def __init__(self, device: str = "cpu", baseline_mb: float | None = None):
        self.device = device
        self.baseline_mb = baseline_mb
        self.peak = MemoryPeak()

    def __enter__(self) -> "MemoryTracker":
        if self.baseline_mb is None:
            self.baseline_mb = current_rss_mb()
        self._reset = _reset_rss_peak()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc) -> None:
        self.peak.rss_mb = _rss_peak_mb()
        self.peak.baseline_mb = self.baseline_mb
        if self._reset and self.baseline_mb is not None:
            self.peak.delta_mb = self.peak.rss_mb - self.baseline_mb
            self.peak.method = METHOD
        else:
            self.peak.method = METHOD_NO_RESET
        if self.device.startswith("cuda"):
            import torch

            self.peak.cuda_allocated_mb = torch.cuda.max_memory_allocated() / 2**20
            self.peak.cuda_reserved_mb = torch.cuda.max_memory_reserved() / 2**20
