"""Before measuring: the checks that make bad input cost nothing, and the results folder (new or resumed)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from llmbench import environment
from llmbench.backends.registry import backend_for
from llmbench.config import RunConfig
from llmbench.errors import BadInput
from llmbench.hardware import detect, resolve_device
from llmbench.hardware_profiles import HardwareProfile, load_hardware
from llmbench.models.source import ModelSource, resolve
from llmbench.results import FolderLock, RunDir, write_json
from llmbench.scenarios.plan import check_unserved, served_of
from llmbench.slo import parse_slo
from llmbench.workload import dataset_identity, validate_workload


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
    validate_workload(config.workload, replay=any(s.kind == "replay" for s in config.scenarios))
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
