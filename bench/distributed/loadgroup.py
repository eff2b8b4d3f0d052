"""The driver's side of distributed load generation: K generator actors on K nodes, one clock.

An `endpoint:` candidate with `generators: K` (K > 1) is not one Ray task: the driver measures the
candidate's cells one after another, each split across a set of K LoadGenerator actors on K nodes
(genset: a STRICT_SPREAD placement group, each actor's clock offset measured) and started at one
moment. Every record is moved onto the driver's clock and written as a local run writes it.

Faults, as the driver's ordinary groups: a cell whose generator dies (its actor or node) or goes
silent past the stall deadline loses that attempt's records (a dead worker's unsent cell loses
them too), the whole set is ended, and the cell is measured once more by a fresh set on the nodes
still alive; then it is recorded failed. The candidate's later cells get a fresh set.
"""
from __future__ import annotations

import os
import time

from llmbench.distributed.genset import GeneratorSet, TooFewNodes

START_MARGIN_S = 1.0  # from handing out a cell to its common start: each actor's warm-up fits in it
ATTEMPTS = 2  # a cell's tries, as an ordinary group's (driver._lost)
FAULT_ENV = "LLMBENCH_TEST_GENERATOR_FAULT"  # tests only; read in this process, handed to the actors (loadgen)


def generators_of(cand) -> int:
    """How many generators a candidate's cells use on Ray: its endpoint's `generators`, else 1."""
    return cand.endpoint.generators if cand.endpoint is not None else 1


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class LoadGroup:
    """One endpoint candidate's cells, measured by K generators; the RayRunner's folder is written."""

    def __init__(self, runner, ci: int, variant: str, cells: list, k: int):
        self.runner, self.ci, self.variant, self.cells, self.k = runner, ci, variant, cells, k
        self.name = f"{runner.prep.config.candidates[ci].label}|{variant}"
        self.set: GeneratorSet | None = None
        self.sets = 0

    def run(self, log, counter) -> None:
        """Measure every cell (retried once on a fresh set); no actor or placement group outlives it."""
        stop = None  # no set can start any more: the candidate's remaining cells fail with this
        try:
            for cell in self.cells:
                if stop is not None:
                    self._fail(cell, stop, log, counter)
                else:
                    stop = self._cell(cell, log, counter)
        finally:
            self._close()
            self.runner._save_meta()

    def _generators(self) -> GeneratorSet:
        """The live set, or a fresh one started (its generators listed in run.json)."""
        if self.set is None:
            r = self.runner
            self.sets += 1
            self.set = GeneratorSet(r.prep, self.ci, self.k, self.sets)  # kept before start: _close ends a half-started one
            self.set.start()
            r.meta["ray"].setdefault("generators", {}).setdefault(self.name, []).extend(self.set.gens)
            r.console.print(f"{self.name}: {self.k} load generators (set {self.sets}), clock offsets "
                            + ", ".join(f"{g['offset_ms']:+.2f} ms (RTT {g['rtt_ms']:.2f})" for g in self.set.gens))
        return self.set

    def _close(self) -> None:
        if self.set is None:
            return
        gs, self.set = self.set, None
        gs.close()
        self.runner.meta["ray"].setdefault("generator_sets", {}).setdefault(self.name, []).append(
            {"set": gs.number, "ray_node_ids": gs.nodes(), "placement_group": gs.pg_state or "never placed"})

    def _cell(self, cell, log, counter) -> str | None:
        """One cell, tried at most ATTEMPTS times; returns why no later cell can be measured, if so."""
        r = self.runner
        ci, variant, si, point = cell
        label, scenario = r.prep.config.candidates[ci].label, r.scenarios[si]
        try:
            point = scenario.resolve(point, label, variant)  # a sweep's rate, from earlier cells
        except Exception as exc:
            self._fail(cell, _first_line(exc), log, counter)
            return None
        tried: list[str] = []
        for attempt in range(1, ATTEMPTS + 1):
            attempts = r.meta["ray"].setdefault("attempts", [])
            entry = {"variant": self.name, "cell": point.label, "attempt": attempt}
            try:
                gs = self._generators()
            except TooFewNodes as exc:  # a retry could not do better: this cell and the later ones fail
                attempts.append({**entry, "error": str(exc)})
                self._close()
                self._fail(cell, f"{exc} (attempt {attempt} of {ATTEMPTS})", log, counter)
                return str(exc)
            except Exception as exc:
                why = f"the {self.k} load generators did not start: {_first_line(exc)}"
                attempts.append({**entry, "error": why[:500]})
                self._close()
                if attempt == ATTEMPTS:  # another set would wait out the same start for nothing
                    self._fail(cell, f"{why} (attempt {attempt} of {ATTEMPTS})", log, counter)
                    return why
                continue
            attempts.append({**entry, "generator_set": gs.number, "ray_node_ids": gs.nodes()})
            why = self._measure(gs, cell, point, attempt, log, counter)
            if why is None:
                return None
            tried += gs.nodes()
            attempts.append({**entry, "ray_node_ids_failed": gs.nodes(), "error": why[:500]})
            self._close()  # the survivors too: a set with a dead member is never used again
        self._fail(cell, f"{why} (attempt {ATTEMPTS} of {ATTEMPTS})", log, counter)
        r.meta.setdefault("cells", {})["|".join((label, variant, scenario.kind, point.label))] = {
            "generators": self.k, "ray_attempt": ATTEMPTS, "ray_generator_nodes_tried": tried, "ray_error": why[:500]}
        return None

    def _measure(self, gs: GeneratorSet, cell, point, attempt: int, log, counter) -> str | None:
        """One attempt at a cell on set `gs`: its records written only when every generator ended (else why not)."""
        import ray

        from llmbench.distributed.driver import GET_S, POLL_S, stall_s
        from llmbench.distributed.loadgen import LoadGenerator, split_int, split_point

        r = self.runner
        cfg = r.prep.config
        ci, variant, si, _ = cell
        label, scenario = cfg.candidates[ci].label, r.scenarios[si]
        shares = split_point(point, self.k)
        used = [i for i, p in enumerate(shares) if p is not None]
        sampling = r._sampling()
        # The cell's minimum requests, as a local run counts them (only the prompts' number matters).
        total = sampling.iterations * max(1, scenario.pass_size([None] * gs.n_prompts, point))
        per = split_int(total, [float(shares[i].clients or 1) for i in used])
        start = LoadGenerator.clock() + START_MARGIN_S
        pending = {}
        for i, min_requests in zip(used, per):
            job = {"run_id": r.meta["run_id"], "label": label, "variant": variant, "scenario": scenario,
                   "point": shares[i], "generators": self.k, "sampling": sampling, "min_requests": min_requests,
                   "warmup": cfg.warmup, "usd_per_second": r.prep.hardware.usd_per_second,
                   "start_at": start + gs.gens[i]["offset_ms"] / 1e3, "attempt": attempt,
                   "fault": os.environ.get(FAULT_ENV)}
            pending[gs.actors[i].measure.options(num_returns="streaming").remote(job)] = i
        records, facts, error = [], {}, None
        seen = time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=min(POLL_S, stall_s()))
            if not ready:
                if time.monotonic() - seen > stall_s():
                    error = f"no generator reported within {stall_s():g} s"
                    break
                continue
            gen = ready[0]
            i = pending[gen]
            try:
                item = ray.get(next(gen), timeout=GET_S)
            except StopIteration:
                del pending[gen]
                continue
            except Exception as exc:  # an actor or its node died
                error = f"generator {i} on Ray node {gs.gens[i]['ray_node_id'][:12]} failed: {_first_line(exc)}"
                break
            seen = time.monotonic()
            offset = gs.gens[i]["offset_ms"] / 1e3
            records += [rec.model_copy(update={"timestamp": rec.timestamp - offset}) for rec in item["records"]]
            if "facts" in item:
                facts[i] = item["facts"]
        if error is not None:
            return error  # the set is ended by the caller: its actors' streams end with them
        records = [rec.model_copy(update={"request_id": next(counter)}) for rec in records]
        log.write(records)
        self._facts(gs, cell, label, scenario, point, facts, start, attempt)
        r.meta["completed_cells"].append([label, variant, scenario.kind, point.label])
        scenario.observe(point, records)
        r._save_meta()
        return None

    def _facts(self, gs: GeneratorSet, cell, label, scenario, point, facts: dict, start: float, attempt: int) -> None:
        """The cell's facts for run.json: the local run's keys, combined over generators, and each one's share."""
        r = self.runner
        out = {"peak_rss_mb": None, "rss_baseline_mb": None, "peak_rss_delta_mb": None,
               "memory_method": "not measured (remote endpoint)", "generators": self.k, "ray_attempt": attempt}
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
            g = gs.gens[i]
            started = None if f.get("started") is None else f["started"] - g["offset_ms"] / 1e3
            starts += [started] if started is not None else []
            out["generator_shares"].append({"index": i, "ray_node_id": g["ray_node_id"], "sent": f["sent"],
                                            "offset_ms": g["offset_ms"], "rtt_ms": g["rtt_ms"],
                                            "start_late_ms": None if started is None else round((started - start) * 1e3, 3)})
        if len(starts) > 1:
            out["generator_start_spread_ms"] = round((max(starts) - min(starts)) * 1e3, 3)
        # Not a ray_node_id: the generators' nodes measured no model (the endpoint's machine did).
        out["ray_generator_nodes"] = sorted(gs.nodes())
        _, variant, _, _ = cell
        r.meta.setdefault("cells", {})["|".join((label, variant, scenario.kind, point.label))] = out

    def _fail(self, cell, why: str, log, counter) -> None:
        ci, variant, si, point = cell
        r = self.runner
        r._fail(r.prep.config.candidates[ci].label, variant, r.scenarios[si].kind, point, RuntimeError(f"Ray: {why}"),
                log, counter)
