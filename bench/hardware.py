"""What this machine is: CPU, cores, memory, GPUs, and a measured memory read bandwidth."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """CUDA devices that torch sees, with their memory."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1), "capability": f"{p.major}.{p.minor}"})
    return out


def measure_read_bandwidth_gbs(size_mb: int = 256) -> float:
    """Memory read bandwidth in GB/s with all cores: the median of parallel Numba reads.

    A parallel reader matters: one numpy thread reads about 30% less than the machine can, which
    would make a roofline bound look beatable (STACK.md). Random data, so nothing compresses or
    stays in a cache line of zeros.
    """
    import numpy as np

    from llmbench.kernels.bandwidth import measure_read_bandwidth

    data = np.random.default_rng(0).random(size_mb * 2**20 // 4, dtype=np.float32)
    return measure_read_bandwidth(data)


def measure_device_bandwidth_gbs(device: str = "cuda", size_mb: int = 1024, repeats: int = 10) -> float:
    """A CUDA device's memory bandwidth in GB/s: the median of timed device-to-device copies.

    A copy reads and writes every byte, so it moves 2 x size per copy; the figure counts both,
    as the bandwidth a decode step's weight reads draw from (the roofline's denominator on a GPU).
    """
    import statistics

    import torch

    n = size_mb * 2**20 // 4
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)  # first-touch and allocator warm-up
    torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize(device)
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return 2 * n * 4 / statistics.median(times) / 1e9


def roofline_bandwidth(device: str, machine: dict | None = None) -> dict:
    """The bandwidth a decode roofline divides by on `device`, and how it was measured.

    CPU: the parallel read bandwidth (`machine['memory_read_bandwidth_gbs']` when the run already
    measured it). CUDA: the device's copy bandwidth, never the host's.
    """
    if device.startswith("cuda"):
        return {"gbs": measure_device_bandwidth_gbs(device), "method": "CUDA device-to-device copy (read + write bytes)"}
    known = (machine or {}).get("memory_read_bandwidth_gbs")
    gbs = known if known else measure_read_bandwidth_gbs()
    return {"gbs": gbs, "method": "CPU parallel read (Numba, all cores)"}


def detect(measure_bandwidth: bool = True) -> dict:
    """Facts about this machine for run.json and `llmbench hardware`."""
    import psutil

    info = {
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "gpus": gpus(),
    }
    if measure_bandwidth:
        info["memory_read_bandwidth_gbs"] = round(measure_read_bandwidth_gbs(), 1)
    return info


def resolve_device(requested: str) -> str:
    """`auto` means CUDA when torch sees a GPU, else the CPU; `cuda` without one is bad input."""
    import torch

    from llmbench.errors import BadInput

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInput("device: 'cuda' was asked for but torch sees no GPU here (use 'auto' or 'cpu')")
    return requested
