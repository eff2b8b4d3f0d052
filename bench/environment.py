"""The environment a run measured in: versions, machine, git commit (recorded in run.json)."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("llmbench", "torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "onnxruntime-gpu",
            "onnx", "numpy", "numba", "llmlingua", "sentence-transformers", "litellm")


def installed_versions(names) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def package_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **installed_versions(PACKAGES)}


def git_commit() -> str | None:
    """The commit of the llmbench source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(machine: dict, seed: int) -> dict:
    """Everything run.json records about where a run measured."""
    import os

    return {"packages": package_versions(), "machine": machine, "git_commit": git_commit(), "seed": seed,
            "load_average_at_start": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spinning)")}
