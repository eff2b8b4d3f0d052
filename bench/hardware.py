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
