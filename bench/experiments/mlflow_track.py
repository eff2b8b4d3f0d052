"""`llmbench run --track mlflow[:URI]`: a written results folder logged as one MLflow run.

Called once the folder is complete (every stage has run), so tracking can fail without losing a
measurement: the caller says so once and exits 1.
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmbench.experiments.mlflow_store import describe, experiment_name, quiet_mlflow, secret_values, secrets_in
from llmbench.experiments.payload import Payload, build_payload
from llmbench.experiments.spec import TrackSpec

CELLS_ARTIFACT = "cells.json"  # metric-key prefix -> cell; `compare mlflow:...` and people read it
_PARAMS_PER_BATCH = 100  # MLflow's limits per log_batch call
_METRICS_PER_BATCH = 1000


@dataclass(frozen=True)
class Tracked:
    """Where a results folder went: the MLflow run and experiment ids, and a link for people."""

    run_id: str
    experiment_id: str
    url: str
    withheld: tuple[str, ...] = ()


def _millis(iso: str | None) -> int | None:
    try:
        return int(dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else None
    except ValueError:
        return None


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # another run created it meanwhile
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _without_secrets(payload: Payload) -> list[str]:
    """Drop every param, tag and artifact that carries a secret's value; returns what was withheld."""
    secrets = secret_values()
    withheld = []
    for section in (payload.params, payload.tags):
        for k in [k for k, v in section.items() if secrets_in(v, secrets)]:
            section[k] = "(withheld: it contains a secret's value)"
            withheld.append(k)
    kept = []
    for path in payload.artifacts:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        found = [n for f in files for n in secrets_in(f.read_text(errors="replace"), secrets)]
        (withheld.append(f"{path.name} (holds the value of ${found[0]})") if found else kept.append(path))
    payload.artifacts = kept
    return withheld


def _log(client, run_id: str, payload: Payload) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in payload.params.items()]
    for i in range(0, len(params), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=params[i:i + _PARAMS_PER_BATCH], synchronous=True)
    metrics = [Metric(k, v, now, 0) for k, v in payload.metrics.items()]
    for i in range(0, len(metrics), _METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + _METRICS_PER_BATCH], synchronous=True)
    for path in payload.artifacts:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            client.log_artifact(run_id, str(path))
    with tempfile.TemporaryDirectory() as tmp:
        cells = Path(tmp) / CELLS_ARTIFACT
        cells.write_text(json.dumps(payload.cells, indent=1))
        client.log_artifact(run_id, str(cells))


def track_folder(folder: Path, spec: TrackSpec, failed: bool) -> Tracked:
    """Log the results folder as one MLflow run (FAILED when the llmbench run had failures); raises on any error."""
    from mlflow import MlflowClient

    payload = build_payload(folder)
    withheld = _without_secrets(payload)
    with quiet_mlflow(spec):
        client = MlflowClient(tracking_uri=spec.uri)
        exp_id = _experiment_id(client, experiment_name())
        run = client.create_run(exp_id, start_time=_millis(payload.started_at), tags=payload.tags, run_name=payload.run_id)
        run_id = run.info.run_id
        try:
            _log(client, run_id, payload)
        except BaseException:
            try:  # the run shows as failed in the UI rather than running for ever
                client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise
        client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    if spec.uri.startswith(("http://", "https://")):
        url = f"{spec.uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
    else:  # a store on disk has no page of its own until a UI serves it
        opt_in = "MLFLOW_ALLOW_FILE_STORE=true " if spec.is_folder else ""
        url = f"see it with: {opt_in}mlflow ui --backend-store-uri {spec.uri}"
    return Tracked(run_id, exp_id, url, tuple(withheld))


def track_results(folder: Path, spec: TrackSpec, failed: bool, say: Callable[[str], None]) -> bool:
    """Track the folder and say one line either way; False when tracking failed (the caller exits 1)."""
    try:
        done = track_folder(folder, spec, failed)
    except Exception as exc:  # tracking never loses the measurements: they are in the folder already
        # --resume on a complete folder measures nothing, re-runs the stages and tracks: the way to retry.
        say(f"tracking failed: MLflow at {spec.uri}: {describe(exc)}; nothing is lost: the results folder {folder.resolve()} "
            f"is complete; track it later with `llmbench run --resume {folder.resolve()} --track mlflow:URI`")
        return False
    note = f"; withheld (secrets): {', '.join(done.withheld)}" if done.withheld else ""
    say(f"tracked: MLflow run {done.run_id} in experiment {experiment_name()!r} at {spec.uri} ({done.url}){note}")
    return True
