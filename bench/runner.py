"""`llmbench run`: candidates x variants x scenario points, measured, then every later stage."""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
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
from llmbench.results import RequestLog, RunDir, write_json
from llmbench.scenarios.base import CellContext
from llmbench.scenarios.registry import make_scenario
from llmbench.slo import parse_slo
from llmbench.trackers import MemoryTracker
from llmbench.workload import build_prompts, dataset_identity, validate_workload
from llmbench import environment


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
    sources = [resolve(str(c.model), where=f"candidates[{i}].model") for i, c in enumerate(config.candidates)]
    device = resolve_device(config.device)
    for i, cand in enumerate(config.candidates):
        for variant in cand.variants:
            try:
                backend_for(variant).check_variant(variant, device)
            except BadInput as exc:
                raise BadInput(f"candidates[{i}].variants: {exc}") from None
    validate_workload(config.workload)
    return Prepared(config, sources, load_hardware(config.hardware), device, parse_slo(config.slo, "slo"))


def new_run_id(config_text: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{hashlib.sha256(config_text.encode()).hexdigest()[:6]}"


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
        todo = [p for p in plan if (cfg.candidates[p[0]].label, p[1], scenarios[p[2]].kind, p[3].label) not in done]
        log = RequestLog(self.dir.requests_path)
        counter = itertools.count(len(self.dir.records()))
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[status]}"), console=self.console, disable=not self.progress_enabled)
        try:
            with progress:
                task = progress.add_task("measuring", total=len(todo), status="")
                for (ci, variant), cells in itertools.groupby(todo, key=lambda p: (p[0], p[1])):
                    self._measure_variant(ci, variant, list(cells), scenarios, log, counter, progress, task)
        finally:
            log.close()
            self._save_meta()

    def _measure_variant(self, ci, variant, cells, scenarios, log, counter, progress, task) -> None:
        cfg = self.prep.config
        cand = cfg.candidates[ci]
        label = cand.label
        progress.update(task, description=f"{label} {variant}", status="loading")
        backend = backend_for(variant)(self.prep.sources[ci], variant, self.prep.device, cand.dtype or cfg.dtype, cand.trust_remote_code)
        vmeta = self.meta.setdefault("variants", {}).setdefault(f"{label}|{variant}", {})
        try:
            with MemoryTracker(self.prep.device) as mem:
                t = time.perf_counter()
                backend.load()
                vmeta.update(load_s=round(time.perf_counter() - t, 3), parameters=backend.info.parameters,
                             size_bytes=backend.info.size_bytes, device=backend.info.device, dtype=backend.info.dtype,
                             random_weights=self.prep.sources[ci].random_weights, **backend.info.extra)
            vmeta["load_peak_rss_mb"] = mem.peak.rss_mb
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
                progress.update(task, status=f"{scenario.kind} {point.label}")
                ctx = CellContext(self.meta["run_id"], label, variant, scenario.kind, point,
                                  self.prep.hardware.usd_per_second, next_id=lambda: next(counter))
                try:
                    scenario.warmup(backend, prompts, point, cfg.warmup)
                    with MemoryTracker(self.prep.device) as mem:
                        for rec in scenario.measure(backend, prompts, ctx, cfg.iterations, cfg.min_duration_s):
                            log.write([rec])
                except Exception as exc:
                    self._fail(label, variant, scenario.kind, point, exc, log, counter)
                else:
                    self.meta.setdefault("cells", {})["|".join(key)] = {
                        "peak_rss_mb": mem.peak.rss_mb, "cuda_max_allocated_mb": mem.peak.cuda_allocated_mb,
                        "cuda_max_reserved_mb": mem.peak.cuda_reserved_mb}
                    self.meta["completed_cells"].append(list(key))
                    self._save_meta()
                progress.advance(task)
        finally:
            backend.close()

    def _fail(self, label, variant, scenario, point, exc, log, counter) -> None:
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        self.failed_cells.append(f"{label} {variant} {scenario} {point.label}: {msg}")
        log.write([RequestRecord(timestamp=time.time(), run_id=self.meta["run_id"], model=label, variant=variant,
                                 scenario=scenario, point=point.label, request_id=next(counter), prompt_tokens=0,
                                 output_tokens=0, status="error", error=msg)])


def start_run(prep: Prepared, config_text: str, out: Path | None) -> tuple[RunDir, dict]:
    """Create the results folder and its run.json (config as resolved, environment)."""
    run_id = new_run_id(config_text)
    path = Path(out) if out else Path("results") / run_id
    if (path / "run.json").exists():
        raise BadInput(f"--out {str(path)!r} already holds a run; use --resume {path} or another folder")
    path.mkdir(parents=True, exist_ok=True)
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
