"""`llmbench run`: candidates x variants x scenario points, measured, then every later stage."""
from __future__ import annotations

import itertools
import time

from rich.markup import escape

from llmbench.backends.registry import backend_for
from llmbench.hardware import roofline_bandwidth
from llmbench.optimizers.guard.hook import GuardHook
from llmbench.records import RequestRecord
from llmbench.results import RequestLog, RunDir, write_json
from llmbench.roofline import weight_bytes_per_token
# Set-up before measuring lives in run_setup; its names stay importable from here.
from llmbench.run_setup import Prepared, new_run_id, open_for_resume, prepare, start_run  # noqa: F401
from llmbench.scenarios.base import CellContext
from llmbench.scenarios.plan import drop_unserved, replay, served_of
from llmbench.scenarios.registry import make_scenario
from llmbench.scenarios.sampling import Sampling
from llmbench.trackers import CpuTracker, MemoryTracker
from llmbench.trackers.memory import current_rss_mb, release_freed_memory
from llmbench.workload import build_prompts


class Runner:
    """Measures every cell of a prepared run into a results folder, resumable cell by cell."""

    def __init__(self, prep: Prepared, run_dir: RunDir, run_meta: dict, console, progress_enabled: bool = True):
        self.prep = prep
        self.dir = run_dir
        self.meta = run_meta
        self.console = console
        self.progress_enabled = progress_enabled
        self.failed_cells: list[str] = []

    def _save_meta(self) -> None:
        write_json(self.dir.path / "run.json", self.meta)

    def _plan(self) -> tuple[list, list]:
        """The scenarios and the cells still to measure, in order (a resume's completed cells left out).

        Also a hook: a distributed run (llmbench.distributed) plans exactly as a local one.
        """
        cfg = self.prep.config
        done = {tuple(c) for c in self.meta.setdefault("completed_cells", [])}
        self.dir.keep_only(done)
        scenarios = [make_scenario(s, seed=cfg.seed) for s in cfg.scenarios]
        plan = [
            (ci, variant, si, point)
            for ci, cand in enumerate(cfg.candidates)
            for variant in cand.variants
            for si, sc in enumerate(scenarios)
            for point in sc.points()
        ]
        plan = drop_unserved(plan, scenarios, served_of(cfg, backend_for), self.console.print)
        # A sweep's rates come from its earlier cells: a resume tells it those first.
        replay(scenarios, plan, lambda ci: cfg.candidates[ci].label, done, self.dir.records())
        todo = [p for p in plan if (cfg.candidates[p[0]].label, p[1], scenarios[p[2]].kind, p[3].label) not in done]
        if todo and "roofline_bandwidth" not in self.meta:  # once per run: the rooflines' denominator
            self.meta["roofline_bandwidth"] = roofline_bandwidth(self.prep.device, self.meta.get("environment", {}).get("machine"))
        return scenarios, todo

    def measure(self) -> None:
        """Run every cell not already completed; records are appended as requests complete."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        cfg = self.prep.config
        scenarios, todo = self._plan()
        log = RequestLog(self.dir.requests_path)
        counter = itertools.count(len(self.dir.records()))
        # Guards load before the first cell (their load is not a request's cost); run.json says which ran.
        self.guard_hook = GuardHook.from_config(cfg.guardrails, self.prep.hardware.usd_per_second)
        if self.guard_hook is not None:
            self.meta["guardrails"] = self.guard_hook.describe()
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[status]}"), console=self.console, disable=not self.progress_enabled)
        try:
            with progress:
                task = progress.add_task("measuring", total=len(todo), status="")
                for (ci, variant), cells in itertools.groupby(todo, key=lambda p: (p[0], p[1])):
                    self._measure_variant(ci, variant, list(cells), scenarios, log, counter, progress, task)
            if todo:
                self._bandwidth_after()
        finally:
            log.close()
            self._save_meta()

    def _measure_variant(self, ci, variant, cells, scenarios, log, counter, progress, task) -> None:
        cfg = self.prep.config
        cand = cfg.candidates[ci]
        label = cand.label
        progress.update(task, description=escape(f"{label} {variant}"), status="loading")
        backend = backend_for(variant)(self.prep.sources[ci], variant, self.prep.device, cand.dtype or cfg.dtype, cand.trust_remote_code)
        if cand.endpoint is not None:
            backend.endpoint = cand.endpoint
        vmeta = self.meta.setdefault("variants", {}).setdefault(f"{label}|{variant}", {})
        # The memory baseline: what the process holds before this variant, once earlier ones are freed.
        release_freed_memory()
        baseline = current_rss_mb()
        vmeta["rss_baseline_mb"] = baseline
        try:
            with MemoryTracker(self.prep.device, baseline) as mem:
                t = time.perf_counter()
                backend.load()
                vmeta.update(load_s=round(time.perf_counter() - t, 3), parameters=backend.info.parameters,
                             size_bytes=backend.info.size_bytes, device=backend.info.device, dtype=backend.info.dtype,
                             random_weights=getattr(self.prep.sources[ci], "random_weights", False), **backend.info.extra)
            vmeta["load_peak_rss_mb"] = mem.peak.rss_mb
            engine = getattr(backend, "engine_info", None)  # a managed engine (llama.cpp): its version
            if engine:
                self.meta.setdefault("engines", {})[engine["name"]] = engine
            vmeta["weight_bytes_per_token"] = self._bytes_per_token(backend)
            prompts = build_prompts(cfg.workload, backend.tokenizer, cfg.seed)
        except Exception as exc:  # a broken model fails its cells, not the run
            for _, _, si, point in cells:
                self._fail(label, variant, scenarios[si].kind, point, exc, log, counter)
                progress.advance(task)
            return
        try:
            for _, _, si, point in cells:
                progress.update(task, status=escape(f"{scenarios[si].kind} {point.label}"))
                self._measure_cell(backend, label, variant, scenarios[si], point, prompts, baseline, log, counter)
                progress.advance(task)
        finally:
            backend.close()
            release_freed_memory()

    def _measure_cell(self, backend, label, variant, scenario, point, prompts, baseline, log, counter) -> None:
        """One cell: begin_cell, warm-up, measure, end_cell; a failure anywhere fails this cell only."""
        cfg = self.prep.config
        key = (label, variant, scenario.kind, point.label)
        mem, cpu = MemoryTracker(self.prep.device, baseline), CpuTracker()
        scenario.last_sampler, scenario.last_facts = None, {}
        records: list[RequestRecord] = []
        begun = False
        try:
            point = scenario.resolve(point, label, variant)  # a sweep's rate, from earlier cells
            ctx = CellContext(self.meta["run_id"], label, variant, scenario.kind, point,
                              self.prep.hardware.usd_per_second, next_id=lambda: next(counter))
            begun = True
            try:  # end_cell runs even when begin_cell failed halfway (a server started, never healthy)
                backend.begin_cell(point, prompts, self.dir)
                scenario.warmup(backend, prompts, point, cfg.warmup)  # never recorded
                with mem, cpu:
                    texts = {p.sha256: p.text for p in prompts}
                    for rec in scenario.measure(backend, prompts, ctx, self._sampling()):
                        if getattr(self, "guard_hook", None) is not None:
                            self.guard_hook.apply(rec, texts.get(rec.prompt_sha256))
                        log.write([rec])
                        records.append(rec)
            finally:
                backend.end_cell()
        except Exception as exc:
            self._fail(label, variant, scenario.kind, point, exc, log, counter)
        else:
            self.meta["completed_cells"].append(list(key))
            scenario.observe(point, records)
        finally:
            facts = self._cell_facts(scenario, mem, cpu)
            if begun:  # the backend's own facts (a server's memory and command line) override the trackers'
                facts.update(self._backend_facts(backend))
                if facts.get("server_cpu_pct") is not None and facts.get("cpu_others_pct") is not None:
                    # A managed server's CPU is the cell's own work, not other load on the machine.
                    facts["cpu_others_pct"] = max(0.0, facts["cpu_others_pct"] - facts["server_cpu_pct"])
            self.meta.setdefault("cells", {})["|".join(key)] = facts
            self._save_meta()

    @staticmethod
    def _backend_facts(backend) -> dict:
        try:
            return dict(getattr(backend, "cell_facts", lambda: {})() or {})
        except Exception as exc:  # facts are extras: never fail a measured cell for them
            return {"cell_facts_error": f"{type(exc).__name__}: {exc}"[:200]}

    def _bandwidth_after(self) -> None:
        """A second bandwidth reading after measuring; the roofline uses the higher one.

        The bound is what the machine can read; a reading taken while other work shares the
        memory bus is low, and one low reading would make every variant look closer to its bound.
        """
        bw = self.meta.get("roofline_bandwidth") or {}
        if not bw or self.prep.device.startswith("cuda"):
            return
        try:
            again = roofline_bandwidth(self.prep.device)["gbs"]
        except Exception:
            return
        readings = bw.setdefault("readings_gbs", [bw["gbs"]]) + [again]
        bw.update(gbs=max(readings), readings_gbs=readings)

    def _sampling(self) -> Sampling:
        cfg = self.prep.config
        return Sampling(iterations=cfg.iterations, min_duration_s=cfg.min_duration_s,
                        precision_pct=cfg.precision_pct, time_cap_s=cfg.cell_time_cap_s)

    @staticmethod
    def _bytes_per_token(backend) -> int | None:
        try:
            return weight_bytes_per_token(backend)
        except Exception:  # a roofline is a bonus figure: never fail a variant for it
            return None

    @staticmethod
    def _cell_facts(scenario, mem: MemoryTracker, cpu: CpuTracker) -> dict:
        """Per-cell facts for run.json, merged into the summary row: memory, machine load, sampling."""
        p = mem.peak
        facts = {"peak_rss_mb": p.rss_mb, "rss_baseline_mb": p.baseline_mb, "peak_rss_delta_mb": p.delta_mb,
                 "memory_method": p.method, "cuda_max_allocated_mb": p.cuda_allocated_mb,
                 "cuda_max_reserved_mb": p.cuda_reserved_mb, **cpu.load.as_row()}
        sampler = getattr(scenario, "last_sampler", None)
        if sampler is not None:
            facts.update(sampler.outcome())
        facts.update(getattr(scenario, "last_facts", None) or {})  # rate_rps, an open loop's late sends
        return facts

    def _fail(self, label, variant, scenario, point, exc, log, counter) -> None:
        # Every line of the message, joined: a server's failure carries its log's last lines.
        msg = f"{type(exc).__name__}: {' | '.join(ln.strip() for ln in str(exc).splitlines() if ln.strip())}"[:2000]
        self.failed_cells.append(f"{label} {variant} {scenario} {point.label}: {msg[:500]}")
        log.write([RequestRecord(timestamp=time.time(), run_id=self.meta["run_id"], model=label, variant=variant,
                                 scenario=scenario, point=point.label, request_id=next(counter), prompt_tokens=0,
                                 output_tokens=0, status="error", error=msg, usage_source="none")])
