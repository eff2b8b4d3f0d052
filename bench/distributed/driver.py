"""The driver of a distributed run: one Ray task per variant, each cell's outcome written as it streams back.

The results folder is the local run's: requests.jsonl gets the same records (request ids given
here, in arrival order), run.json the same cells, each tagged with the Ray node that measured it.
A group whose worker dies is submitted once more (its unfinished cells only), to another node that
fits when there is one; a second failure records those cells failed. Every wait has a deadline.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

from rich.markup import escape

from llmbench.distributed.loadgroup import LoadGroup, generators_of
from llmbench.results import RequestLog
from llmbench.runner import Runner

POLL_S = 5.0  # how long one ray.wait blocks before the deadlines are looked at again
GET_S = 60.0  # fetching one streamed item that Ray already reported ready


def stall_s() -> float:
    """Longest a group may go without a streamed item (a load plus one cell) before it is cancelled."""
    return float(os.environ.get("LLMBENCH_RAY_STALL_S", "1800"))


@dataclass
class Group:
    """One variant's cells still to measure, and where they were tried."""

    ci: int
    variant: str
    cells: list  # (ci, variant, si, point), the runner's plan entries
    attempt: int = 1
    node: dict = field(default_factory=dict)
    tried: list = field(default_factory=list)  # Ray node ids of earlier attempts
    last_seen: float = field(default_factory=time.monotonic)
    submitted: float = field(default_factory=time.monotonic)


class RayRunner(Runner):
    """Measures the run's cells on a Ray cluster through an open RaySession; the folder is written here."""

    def __init__(self, prep, run_dir, meta, console, session, progress_enabled: bool = True):
        super().__init__(prep, run_dir, meta, console, progress_enabled)
        self.session = session
        self.scenarios: list = []
        self.pending: dict = {}  # ObjectRefGenerator -> Group

    def measure(self) -> None:
        """Submit every group of unfinished cells, write what streams back, retry a dead worker's group once."""
        import ray

        try:
            self.scenarios, todo = self._plan()
            self.meta["ray"] = {**self.meta.get("ray", {}), "address": self.session.address,
                                "needs": self.session.needs, "nodes": self.session.nodes(),
                                "connect_s": self.session.info.get("connect_s")}
            self.meta.setdefault("ray", {}).setdefault("attempts", [])
            log = RequestLog(self.dir.requests_path)
            counter = itertools.count(len(self.dir.records()))
            loads = []  # endpoint candidates with several load generators: measured after the tasks, alone
            try:
                for (ci, variant), cells in itertools.groupby(todo, key=lambda p: (p[0], p[1])):
                    k = generators_of(self.prep.config.candidates[ci])
                    if k > 1:
                        loads.append(LoadGroup(self, ci, variant, list(cells), k))
                    else:
                        self._submit(Group(ci, variant, list(cells)))
                self._drain(log, counter)
                for load in loads:  # no other cell runs meanwhile: generators would disturb its timings
                    load.run(log, counter)
            except KeyboardInterrupt:
                for gen in self.pending:  # workers are killed; what completed is already written
                    ray.cancel(gen, force=True)
                raise
            finally:
                log.close()
            if todo:
                self._bandwidth_after()
        finally:
            self._save_meta()
            self.session.close()

    def _submit(self, group: Group) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from llmbench.distributed.placement import fitting_nodes
        from llmbench.distributed.worker import measure_group

        needs = dict(self.session.needs)
        options = dict(num_cpus=needs.pop("CPU"), num_gpus=needs.pop("GPU", 0), resources=needs,
                       max_retries=0, num_returns="streaming", name=f"llmbench:{self.prep.config.candidates[group.ci].label}|{group.variant}")
        if group.tried:  # a retry: another node that fits, when the cluster has one (soft: it may be gone too)
            busy = {g.node.get("ray_node_id") for g in self.pending.values()}
            others = [n["NodeID"] for n in fitting_nodes(self.session.needs, ray.nodes()) if n["NodeID"] not in group.tried]
            others.sort(key=lambda node_id: node_id in busy)  # an idle node first: the retry starts at once
            if others:
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(others[0], soft=True)
        job = {"prep": self.prep, "run_id": self.meta["run_id"], "results_path": str(self.dir.path.resolve()),
               "ci": group.ci, "variant": group.variant, "cells": group.cells, "scenarios": self.scenarios}
        group.last_seen = group.submitted = time.monotonic()
        self.pending[ray.remote(measure_group).options(**options).remote(job)] = group

    def _drain(self, log, counter) -> None:
        import ray

        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
            if not ready:
                for gen, group in list(self.pending.items()):
                    if time.monotonic() - group.last_seen > stall_s():
                        ray.cancel(gen, force=True)
                        self._lost(gen, f"no cell ended within {stall_s():g} s (cancelled)", log, counter)
                continue
            gen = ready[0]
            group = self.pending[gen]
            try:
                item = ray.get(next(gen), timeout=GET_S)
            except StopIteration:
                del self.pending[gen]
                if group.cells:  # ended without reporting these: never silently dropped
                    self._lost(None, "the task ended without measuring them", log, counter, group)
                continue
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as exc:
                self._lost(gen, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", log, counter)
                continue
            group.last_seen = time.monotonic()
            if "error" in item:
                ray.cancel(gen, force=True)
                self._lost(gen, item["error"], log, counter)
            else:
                self._merge(group, item, log, counter)

    def _merge(self, group: Group, item: dict, log, counter) -> None:
        if "node" in item:
            group.node = item["node"]
            known = self.meta["ray"]["nodes"].get(group.node["ray_node_id"])
            if known is not None:  # the node's measured figures, beside what Ray says it offers
                known.update({k: group.node.get(k) for k in ("hostname", "cpu_count", "bandwidth_gbs",
                                                             "bandwidth_method", "hw")})
            self.console.print(f"{escape(self._name(group))}: attempt {group.attempt} on Ray node "
                               f"{group.node['ray_node_id'][:12]} ({escape(str(group.node['hostname']))})")
            self.meta["ray"]["attempts"].append({"variant": self._name(group),
                                                 "attempt": group.attempt, **item["node"],
                                                 # from submission to a worker running it: queueing plus a worker's start
                                                 "start_wait_s": round(time.monotonic() - group.submitted, 3)})
            return
        log.write([r.model_copy(update={"request_id": next(counter)}) for r in item["records"]])
        ended = {tuple(k) for k in item["completed_cells"]} | {r.cell for r in item["records"] if r.status == "error"}
        # The node's own figures go with each cell: a plan or roofline of it uses them, not the driver's.
        where = {"ray_node_id": group.node.get("ray_node_id"), "ray_hostname": group.node.get("hostname"),
                 "ray_cpu_count": group.node.get("cpu_count"), "ray_attempt": group.attempt,
                 "ray_hw": group.node.get("hw"), "ray_bandwidth_gbs": group.node.get("bandwidth_gbs")}
        for key, facts in item["cells"].items():
            self.meta.setdefault("cells", {})[key] = {**facts, **where}
            ended.add(tuple(key.split("|")))
        self.meta["completed_cells"].extend(item["completed_cells"])
        for key, vmeta in item["variants"].items():
            self.meta.setdefault("variants", {})[key] = {**vmeta, **where}
        if item.get("guardrails"):
            self.meta["guardrails"] = item["guardrails"]
        if item["engines"]:
            self.meta.setdefault("engines", {}).update(item["engines"])
        self.failed_cells.extend(item["failed"])
        group.cells = [c for c in group.cells if self._key(c) not in ended]
        self._save_meta()  # a kill of the driver keeps every cell written so far

    def _name(self, group: Group) -> str:
        return f"{self.prep.config.candidates[group.ci].label}|{group.variant}"

    def _key(self, cell) -> tuple:
        ci, variant, si, point = cell
        return (self.prep.config.candidates[ci].label, variant, self.scenarios[si].kind, point.label)

    def _lost(self, gen, why: str, log, counter, group: Group | None = None) -> None:
        """A group's attempt failed: its unfinished cells go once more elsewhere, or are recorded failed."""
        group = group or self.pending.pop(gen)
        node_id = group.node.get("ray_node_id")
        self.meta["ray"]["attempts"].append({"variant": self._name(group),
                                             "attempt": group.attempt, "ray_node_id_failed": node_id, "error": why[:500]})
        if not group.cells:
            return
        if group.attempt < 2:
            self._submit(Group(group.ci, group.variant, group.cells, attempt=group.attempt + 1,
                               tried=group.tried + ([node_id] if node_id else [])))
            return
        for _, variant, si, point in group.cells:
            self._fail(self.prep.config.candidates[group.ci].label, variant, self.scenarios[si].kind, point,
                       RuntimeError(f"Ray: {why} (attempt {group.attempt} of 2)"), log, counter)
            key = "|".join(self._key((group.ci, variant, si, point)))
            self.meta.setdefault("cells", {})[key] = {"ray_nodes_tried": group.tried + [node_id], "ray_error": why[:500]}
        self._save_meta()
