"""The driver's side of distributed load generation: K generator actors on K nodes, one clock.

An `endpoint:` candidate with `generators: K` (K > 1) is not one Ray task: the driver places K
LoadGenerator actors with a STRICT_SPREAD placement group (one per node; too few nodes was refused
before anything started, see session), measures each actor's clock against its own, then measures
the candidate's cells one after another, each split across the K actors and started at one moment.
Every record is moved onto the driver's clock and written as a local run writes it.

Clock offset, NTP-style: the driver reads its clock (t_send), asks the actor for its clock (t_actor),
reads its clock again (t_recv); of several round trips, the one with the least RTT gives
offset = t_actor - (t_send + t_recv) / 2, which is right to within half that RTT.
"""
from __future__ import annotations

import time

OFFSET_SAMPLES = 16
START_MARGIN_S = 1.0  # from handing out a cell to its common start: each actor's warm-up fits in it
READY_S = 120.0  # placing the actors, loading their backends (tokenizer, a probe of the endpoint)


def generators_of(cand) -> int:
    """How many generators a candidate's cells use on Ray: its endpoint's `generators`, else 1."""
    return cand.endpoint.generators if cand.endpoint is not None else 1


def measure_offset(actor, samples: int = OFFSET_SAMPLES) -> dict:
    """The actor's clock minus the driver's, from the least-RTT round trip of `samples`; in seconds."""
    import ray

    from llmbench.distributed.loadgen import LoadGenerator

    clock = LoadGenerator.clock  # the driver's clock is the same function, read in this process
    best = None
    for _ in range(samples):
        sent = clock()
        theirs = ray.get(actor.clock.remote(), timeout=30)
        back = clock()
        if best is None or back - sent < best[0]:
            best = (back - sent, theirs - (sent + back) / 2)
    return {"offset_s": best[1], "rtt_s": best[0], "samples": samples}


class LoadGroup:
    """One endpoint candidate's cells, measured by K generators; the RayRunner's folder is written."""

    def __init__(self, runner, ci: int, variant: str, cells: list, k: int):
        self.runner, self.ci, self.variant, self.cells, self.k = runner, ci, variant, cells, k
        self.actors: list = []
        self.gens: list[dict] = []
        self.n_prompts = 0

    def run(self, log, counter) -> None:
        """Place the generators, measure their clocks, measure every cell; the actors end with it."""
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        r = self.runner
        name = f"{r.prep.config.candidates[self.ci].label}|{self.variant}"
        pg = placement_group([{"CPU": 1.0}] * self.k, strategy="STRICT_SPREAD")
        try:
            try:
                self._start(pg)
            except Exception as exc:  # the candidate's cells fail; the run goes on
                for cell in self.cells:
                    self._fail(cell, f"the {self.k} load generators did not start: {type(exc).__name__}: {exc}", log, counter)
                return
            r.meta["ray"].setdefault("generators", {})[name] = self.gens
            r.console.print(f"{name}: {self.k} load generators, clock offsets "
                            + ", ".join(f"{g['offset_ms']:+.2f} ms (RTT {g['rtt_ms']:.2f})" for g in self.gens))
            for cell in self.cells:
                self._cell(cell, log, counter)
        finally:
            for actor in self.actors:
                ray.kill(actor)
            remove_placement_group(pg)

    def _start(self, pg) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from llmbench.distributed.loadgen import LoadGenerator

        ray.get(pg.ready(), timeout=READY_S)
        remote = ray.remote(LoadGenerator)
        self.actors = [remote.options(num_cpus=1, max_restarts=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=i)).remote(i, self.runner.prep, self.ci) for i in range(self.k)]
        nodes = ray.get([a.node.remote() for a in self.actors], timeout=READY_S)
        self.n_prompts = ray.get(self.actors[0].prompt_count.remote(), timeout=30)
        for i, (actor, node) in enumerate(zip(self.actors, nodes)):
            off = measure_offset(actor)
            self.gens.append({"index": i, "ray_node_id": node["ray_node_id"], "hostname": node["hostname"],
                              "cpu_count": node["cpu_count"], "offset_ms": round(off["offset_s"] * 1e3, 3),
                              "rtt_ms": round(off["rtt_s"] * 1e3, 3), "offset_samples": off["samples"]})

    def _cell(self, cell, log, counter) -> None:
        import ray

        from llmbench.distributed.driver import stall_s
        from llmbench.distributed.loadgen import LoadGenerator, split_int, split_point

        r = self.runner
        cfg = r.prep.config
        ci, variant, si, point = cell
        label, scenario = cfg.candidates[ci].label, r.scenarios[si]
        try:
            point = scenario.resolve(point, label, variant)  # a sweep's rate, from earlier cells
        except Exception as exc:
            self._fail(cell, f"{type(exc).__name__}: {exc}", log, counter)
            return
        shares = split_point(point, self.k)
        used = [i for i, p in enumerate(shares) if p is not None]
        sampling = r._sampling()
        # The cell's minimum requests, as a local run counts them (only the prompts' number matters).
        total = sampling.iterations * max(1, scenario.pass_size([None] * self.n_prompts, point))
        per = split_int(total, [float(shares[i].clients or 1) for i in used])
        start = LoadGenerator.clock() + START_MARGIN_S
        pending = {}
        for i, min_requests in zip(used, per):
            offset = self.gens[i]["offset_ms"] / 1e3
            job = {"run_id": r.meta["run_id"], "label": label, "variant": variant, "scenario": scenario,
                   "point": shares[i], "generators": self.k, "sampling": sampling, "min_requests": min_requests,
                   "warmup": cfg.warmup, "usd_per_second": r.prep.hardware.usd_per_second, "start_at": start + offset}
            pending[self.actors[i].measure.options(num_returns="streaming").remote(job)] = i
        records, facts, error = [], {}, None
        seen = time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            if not ready:
                if time.monotonic() - seen > stall_s():
                    error = f"no generator reported within {stall_s():g} s"
                    break
                continue
            gen = ready[0]
            i = pending[gen]
            try:
                item = ray.get(next(gen), timeout=60)
            except StopIteration:
                del pending[gen]
                continue
            except Exception as exc:  # an actor or its node died: the cell fails, the completed records stay
                error = f"generator {i} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                break
            seen = time.monotonic()
            offset = self.gens[i]["offset_ms"] / 1e3
            moved = [rec.model_copy(update={"request_id": next(counter), "timestamp": rec.timestamp - offset})
                     for rec in item["records"]]
            log.write(moved)
            records += moved
            if "facts" in item:
                facts[i] = item["facts"]
        for gen in pending:
            ray.cancel(gen, force=False)
        self._facts(cell, label, scenario, point, facts, records, start)
        if error is not None:
            self._fail(cell, error, log, counter)
        else:
            r.meta["completed_cells"].append([label, variant, scenario.kind, point.label])
            scenario.observe(point, records)
        r._save_meta()

    def _facts(self, cell, label, scenario, point, facts: dict, records: list, start: float) -> None:
        """The cell's facts for run.json: the local run's keys, combined over generators, and each one's share."""
        r = self.runner
        out = {"peak_rss_mb": None, "rss_baseline_mb": None, "peak_rss_delta_mb": None,
               "memory_method": "not measured (remote endpoint)", "generators": self.k}
        if point.rate is not None:
            out["rate_rps"] = point.rate
        every = list(facts.values())
        if every:
            out.update(precision_target_pct=every[0]["precision_target_pct"], time_cap_s=every[0]["time_cap_s"],
                       hit_cap=any(f["hit_cap"] for f in every), measured_s=max(f["measured_s"] for f in every))
            for key in ("cpu_steal_pct", "cpu_busy_pct", "cpu_others_pct", "loadavg_1min", "max_send_lag_ms"):
                seen = [f[key] for f in every if f.get(key) is not None]
                out[key] = max(seen) if seen else None  # the worst node's: any one of them disturbs the cell
            if any("late_sends" in f for f in every):
                out["late_sends"] = sum(f.get("late_sends", 0) for f in every)
        starts = []
        out["generator_shares"] = []
        for i, f in sorted(facts.items()):
            g = self.gens[i]
            started = None if f.get("started") is None else f["started"] - g["offset_ms"] / 1e3
            starts += [started] if started is not None else []
            out["generator_shares"].append({"index": i, "ray_node_id": g["ray_node_id"], "sent": f["sent"],
                                            "offset_ms": g["offset_ms"], "rtt_ms": g["rtt_ms"],
                                            "start_late_ms": None if started is None else round((started - start) * 1e3, 3)})
        if len(starts) > 1:
            out["generator_start_spread_ms"] = round((max(starts) - min(starts)) * 1e3, 3)
        # Not a ray_node_id: the generators' nodes measured no model (the endpoint's machine did).
        out["ray_generator_nodes"] = sorted({g["ray_node_id"] for g in self.gens})
        _, variant, _, _ = cell
        r.meta.setdefault("cells", {})["|".join((label, variant, scenario.kind, point.label))] = out

    def _fail(self, cell, why: str, log, counter) -> None:
        ci, variant, si, point = cell
        r = self.runner
        r._fail(r.prep.config.candidates[ci].label, variant, r.scenarios[si].kind, point, RuntimeError(f"Ray: {why}"),
                log, counter)
