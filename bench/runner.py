"""`llmbench run`: candidates x variants x scenario points, measured, then every later stage."""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmbench.backends.registry import backend_for
from llmbench.config import RunConfig
from llmbench.errors import BadInput
from llmbench.hardware import detect, resolve_device
from llmbench.hardware_profiles import HardwareProfile, load_hardware
from llmbench.models.source import ModelSource, resolve
from llmbench.records import RequestRecord
from llmbench.results import FolderLock, RequestLog, RunDir, write_json
from llmbench.scenarios.base import CellContext
from llmbench.scenarios.plan import check_unserved, drop_unserved, replay, served_of
from llmbench.scenarios.registry import make_scenario
from llmbench.slo import parse_slo
from llmbench.hardware import roofline_bandwidth
from llmbench.roofline import weight_bytes_per_token
from llmbench.scenarios.sampling import Sampling
from llmbench.trackers import CpuTracker, MemoryTracker
from llmbench.trackers.memory import current_rss_mb, release_freed_memory
from llmbench.workload import build_prompts, dataset_identity, validate_workload
from llmbench import environment
from rich.markup import escape


@dataclass
class Prepared:
    """Everything checked before a single request is sent (bad input never costs a measurement)."""

    config: RunConfig
    sources: list[ModelSource]
    hardware: HardwareProfile
    device: str
    slos: list = field(default_factory=list)


def prepare(config: RunConfig) -> Prepared:
    """Validate what needs the file system or the libraries; BadInput on the first fault."""
    # An endpoint candidate has no weights here: its source is None (the server holds the model).
    sources = [None if c.endpoint is not None else resolve(str(c.model), where=f"candidates[{i}].model")
               for i, c in enumerate(config.candidates)]
    device = resolve_device(config.device)
    for i, cand in enumerate(config.candidates):
        for variant in cand.variants:
            try:
                backend_for(variant).check_variant(variant, device)
            except BadInput as exc:
                raise BadInput(f"candidates[{i}].variants: {exc}") from None
    check_unserved(config, served_of(config, backend_for))
    validate_workload(config.workload)
    hardware, slos = load_hardware(config.hardware), parse_slo(config.slo, "slo")
    from llmbench.preflight import preflight

    preflight(config, sources, device)
    from llmbench.served.probe import check_endpoint

    for i, cand in enumerate(config.candidates):  # last: the only checks that wait on a network
        if cand.endpoint is not None:
            check_endpoint(cand.endpoint, f"candidates[{i}].endpoint")
    return Prepared(config, sources, hardware, device, slos)


def new_run_id(config_text: str) -> str:
    """Time, config hash and a random part: two runs of one config in the same second differ."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{hashlib.sha256(config_text.encode()).hexdigest()[:6]}-{secrets.token_hex(3)}"


_HELD_LOCKS: list[FolderLock] = []  # results folders this process writes (released at exit)


def open_for_resume(path: Path) -> tuple[RunDir, dict]:
    """Lock an interrupted run's folder and read its run.json (BadInput when another run holds it)."""
    lock = FolderLock(Path(path)).acquire() if Path(path).is_dir() else None
    run_dir = RunDir(Path(path))
    meta = run_dir.read_json("run.json")
    if lock is not None:
        _HELD_LOCKS.append(lock)
    return run_dir, meta


@dataclass
class Cell:
    candidate: int
    variant: str
    scenario_index: int
    point: object

    def key(self, model: str, scenario: str) -> tuple:
        return (model, self.variant, scenario, self.point.label)


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

    def measure(self) -> None:
        """Run every cell not already completed; records are appended as requests complete."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
        log = RequestLog(self.dir.requests_path)
        counter = itertools.count(len(self.dir.records()))
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
            vmeta["weight_bytes_per_token"] = self._bytes_per_token(backend)
            prompts = build_prompts(cfg.workload, backend.tokenizer, cfg.seed)
        except Exception as exc:  # a broken model fails its cells, not the run
            for _, _, si, point in cells:
                self._fail(label, variant, scenarios[si].kind, point, exc, log, counter)
                progress.advance(task)
            return
        try:
            for _, _, si, point in cells:
                scenario = scenarios[si]
                key = (label, variant, scenario.kind, point.label)
                progress.update(task, status=escape(f"{scenario.kind} {point.label}"))
                mem, cpu = MemoryTracker(self.prep.device, baseline), CpuTracker()
                scenario.last_sampler, scenario.last_facts = None, {}
                records: list[RequestRecord] = []
                try:
                    point = scenario.resolve(point, label, variant)  # a sweep's rate, from earlier cells
                    ctx = CellContext(self.meta["run_id"], label, variant, scenario.kind, point,
                                      self.prep.hardware.usd_per_second, next_id=lambda: next(counter))
                    try:  # end_cell runs even when begin_cell failed halfway (a server started, never healthy)
                        backend.begin_cell(point, prompts, self.dir)
                        scenario.warmup(backend, prompts, point, cfg.warmup)  # never recorded
                        with mem, cpu:
                            for rec in scenario.measure(backend, prompts, ctx, self._sampling()):
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
                    self.meta.setdefault("cells", {})["|".join(key)] = self._cell_facts(scenario, mem, cpu)
                    self._save_meta()
                progress.advance(task)
        finally:
            backend.close()
            release_freed_memory()

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


def start_run(prep: Prepared, config_text: str, out: Path | None) -> tuple[RunDir, dict]:
    """Create and lock the results folder and write its run.json (config as resolved, environment)."""
    run_id = new_run_id(config_text)
    path = Path(out) if out else Path("results") / run_id
    lock = FolderLock(path).acquire()  # held until the process ends: a second run here is refused
    if (path / "run.json").exists():
        lock.release()
        raise BadInput(f"--out {str(path)!r} already holds a run; use --resume {path} or another folder")
    _HELD_LOCKS.append(lock)
    meta = {
        "run_id": run_id,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": prep.config.model_dump(mode="json"),
        "config_text": config_text,
        "hardware_profile": prep.hardware.model_dump(),
        "device": prep.device,
        "dataset": dataset_identity(prep.config.workload),
        "environment": environment.environment(detect(measure_bandwidth=True), prep.config.seed),
        "completed_cells": [],
    }
    run_dir = RunDir(path)
    write_json(path / "run.json", meta)
    return run_dir, meta
