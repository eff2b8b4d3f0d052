"""The Ray side of a distributed run: one variant's cells, measured by the runner's own code on a node.

Each cell's outcome (its records, its facts for run.json, a failure's message) is yielded as soon as
the cell ends, so the driver writes it while later cells are still measured and a worker that dies
mid-cell loses only that cell. The measuring runs in a thread because the runner's loop is not a
generator; the generator hands on what the thread puts in a queue.
"""
from __future__ import annotations

import itertools
import os
import queue
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from llmbench.distributed.cluster import hw_resource
from llmbench.results import RunDir
from llmbench.runner import Runner


class _Collect:
    """Stands in for the RequestLog on a node: records wait here until their cell ends."""

    def __init__(self) -> None:
        self.records: list = []

    def write(self, records) -> None:
        self.records.extend(records)

    def close(self) -> None:
        pass


class _NoProgress:
    """The runner reports progress to a rich bar; on a node nobody watches it."""

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


def node_info() -> dict:
    """Who measures: the Ray node id, the host, its CPU count and what Ray assigned to this task."""
    import ray

    ctx = ray.get_runtime_context()
    return {"ray_node_id": ctx.get_node_id(), "hostname": socket.gethostname(), "cpu_count": os.cpu_count(),
            "pid": os.getpid(), "assigned": {k: float(v) for k, v in ctx.get_assigned_resources().items()},
            # Ray sets a task's OpenMP threads to its num_cpus: it changes timings, so it is recorded.
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


_BANDWIDTH: dict[str, dict] = {}  # per worker process and device: a node is measured once, not per group
BANDWIDTH_MB = 64  # large enough to read from memory, not cache; small enough to cost under a second


def node_bandwidth(device: str) -> dict:
    """This node's roofline bandwidth, measured here (its memory, not the driver's); cached per process.

    The same measurement as a local run's (llmbench.hardware), on a smaller array: a node's groups
    must not wait seconds for it. A failure is recorded, never a failed group.
    """
    if device not in _BANDWIDTH:
        from llmbench.hardware import measure_device_bandwidth_gbs, measure_read_bandwidth_gbs

        try:
            if device.startswith("cuda"):
                gbs, method = measure_device_bandwidth_gbs(device), "CUDA device-to-device copy (read + write bytes)"
            else:
                gbs, method = measure_read_bandwidth_gbs(BANDWIDTH_MB), f"CPU parallel read (Numba, {BANDWIDTH_MB} MB)"
            _BANDWIDTH[device] = {"bandwidth_gbs": round(gbs, 2), "bandwidth_method": method}
        except Exception as exc:
            return {"bandwidth_gbs": None, "bandwidth_error": f"{type(exc).__name__}: {exc}"[:200]}
    return _BANDWIDTH[device]


def _title(text: str) -> None:
    """What `ps` shows for this worker: the cell it measures (an operator's view; Ray resets it after the task)."""
    try:
        import ray._raylet

        ray._raylet.setproctitle(text)
    except Exception:  # a cosmetic: never fail a cell for it
        pass


class GroupRunner(Runner):
    """A Runner that measures one variant's cells and emits each cell's outcome instead of writing run.json."""

    def __init__(self, job: dict, emit: Callable[[dict], None]):
        # Server logs go into the driver's results folder when this node shares its file system.
        path = Path(job["results_path"])
        run_dir = RunDir(path if path.is_dir() else Path(tempfile.mkdtemp(prefix="llmbench-ray-")))
        super().__init__(job["prep"], run_dir, {"run_id": job["run_id"], "completed_cells": [], "cells": {}},
                         console=None, progress_enabled=False)
        self.emit = emit
        self.log = _Collect()
        self._sent_failures = 0

    def _save_meta(self) -> None:
        pass  # the driver owns run.json

    def _measure_cell(self, backend, label, variant, scenario, point, prompts, baseline, log, counter) -> None:
        _title(f"ray::llmbench:{label}|{variant} measuring {scenario.kind} {point.label}")
        super()._measure_cell(backend, label, variant, scenario, point, prompts, baseline, log, counter)
        self.flush()

    def flush(self) -> None:
        """Emit what ended since the last flush: records, completed cells, their facts, failure lines."""
        records, self.log.records = self.log.records, []
        delta = {"records": records, "completed_cells": self.meta["completed_cells"], "cells": self.meta["cells"],
                 "variants": self.meta.get("variants", {}), "engines": self.meta.get("engines", {}),
                 "failed": self.failed_cells[self._sent_failures:],
                 "guardrails": self.guard_hook.describe() if getattr(self, "guard_hook", None) is not None else None}
        self._sent_failures = len(self.failed_cells)
        self.meta["completed_cells"], self.meta["cells"] = [], {}
        self.emit(delta)

    def run(self, ci: int, variant: str, cells: list, scenarios: list) -> None:
        """Load the variant once and measure its cells (request ids are the driver's to give)."""
        from llmbench.optimizers.guard.hook import GuardHook

        # The run's guardrails apply on the node as they do locally (the runner's measure() loads them there).
        self.guard_hook = GuardHook.from_config(self.prep.config.guardrails, self.prep.hardware.usd_per_second)
        self._measure_variant(ci, variant, cells, scenarios, self.log, itertools.count(), _NoProgress(), None)
        self.flush()  # a variant that failed to load fails its cells without passing through _measure_cell


def measure_group(job: dict) -> Iterator[dict]:
    """Ray task body (a streaming generator): node facts first, then one delta per ended cell."""
    # Measured before the group's cells, never during them (its reads would slow their decode).
    yield {"node": {**node_info(), **node_bandwidth(job["prep"].device),
                    "hw": hw_resource(job["prep"].hardware.name)}}
    out: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            GroupRunner(job, out.put).run(job["ci"], job["variant"], job["cells"], job["scenarios"])
        except BaseException as exc:  # reaches the driver as this attempt's failure
            out.put({"error": f"{type(exc).__name__}: {exc}"[:1000]})
        finally:
            out.put(None)

    # The thread lives as long as the group: a llama-server it starts dies with it (PDEATHSIG is per thread).
    thread = threading.Thread(target=work, name="llmbench-group", daemon=True)
    thread.start()
    while (item := out.get()) is not None:
        yield item
    thread.join()
