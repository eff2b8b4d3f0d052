"""Read a tracked run back as a results folder, so `compare` reads it as it reads one on disk.

A tracked run carries the folder's summary.json and run.json as artifacts (mlflow_track); they are
downloaded into a scratch folder and compared from there, so both paths share one comparison.
"""
from __future__ import annotations

import re
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.experiments.mlflow_store import describe, quiet_mlflow
from llmbench.experiments.spec import TrackSpec, tracked_run_id, tracking_uri

NEEDED = ("summary.json", "run.json")


def _find(client, run: str):
    """The MLflow run with this id, else the one tracked under this llmbench run id (None if neither)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run)
    except MlflowException:
        pass
    if not re.fullmatch(r"[\w.\-]+", run):  # no llmbench run id has other characters: nothing to search for
        return None
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, filter_string=f"tags.`llmbench.run_id` = '{run}'", max_results=2) if ids else []
    if len(found) > 1:
        raise BadInput(f"mlflow:{run}: more than one MLflow run was tracked from this llmbench run; give the MLflow run id")
    return found[0] if found else None


def fetch_run(ref: str, uri: str | None, into: Path) -> Path:
    """Download the tracked run `mlflow:RUN` (an MLflow run id or an llmbench run id) into `into`.

    `uri`: the tracking URI (default $MLFLOW_TRACKING_URI, else ./mlruns). Bad input (exit 2) when
    the store cannot be read, the run is not there, or it is not an llmbench run.
    """
    from mlflow import MlflowClient

    run = tracked_run_id(ref)
    spec = TrackSpec("mlflow", tracking_uri(uri))
    into.mkdir(parents=True, exist_ok=True)
    with quiet_mlflow(spec):
        try:
            client = MlflowClient(tracking_uri=spec.uri)
            found = _find(client, run)
            if found is None:
                raise BadInput(f"{ref}: no MLflow run with that run id or llmbench run id at {spec.uri}")
            have = {a.path for a in client.list_artifacts(found.info.run_id)}
            missing = [n for n in NEEDED if n not in have]
            if missing:
                raise BadInput(f"{ref}: MLflow run {found.info.run_id} at {spec.uri} has no {' or '.join(missing)}: "
                               "not a run tracked by `llmbench run --track`")
            for name in NEEDED:
                client.download_artifacts(found.info.run_id, name, str(into))
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(f"{ref}: MLflow at {spec.uri}: {describe(exc)}") from None
    return into
