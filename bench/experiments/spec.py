"""`--track mlflow[:URI]` and `mlflow:RUN` as values: parsed here, without importing MLflow.

A URI with a scheme (http://, https://, sqlite:///, file:, databricks) goes to MLflow as it is; anything
else is a folder: MLflow's local file store there. No URI: $MLFLOW_TRACKING_URI, else ./mlruns.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from llmbench.errors import BadInput

TRACKERS = ("mlflow",)
DEFAULT_FOLDER = "mlruns"
RUN_PREFIX = "mlflow:"
# A scheme of two letters or more, so that a Windows drive letter (C:\...) stays a path.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


@dataclass(frozen=True)
class TrackSpec:
    """Where to track: the tracker's name and the tracking URI MLflow is given."""

    tracker: str
    uri: str

    @property
    def is_folder(self) -> bool:
        """A local file store (file: URI): MLflow 3.13+ opens one only with MLFLOW_ALLOW_FILE_STORE set."""
        return self.uri.startswith("file:")


def tracking_uri(raw: str | None) -> str:
    """A tracking URI as MLflow wants it: a folder path becomes an absolute file: URI."""
    if not raw:
        raw = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_FOLDER
    if _SCHEME.match(raw):
        return raw
    return Path(raw).expanduser().resolve().as_uri()


def parse_track(value: str, where: str = "--track") -> TrackSpec:
    """'mlflow' or 'mlflow:URI' -> TrackSpec; anything else is bad input (exit 2)."""
    tracker, _, uri = value.partition(":")
    if tracker not in TRACKERS:
        raise BadInput(f"{where} {value!r}: unknown tracker {tracker!r}; use mlflow or mlflow:URI "
                       "(a folder, or a tracking server's http:// address)")
    if _ and not uri:
        raise BadInput(f"{where} {value!r}: nothing after 'mlflow:'; give a folder or a tracking server's URI, or plain 'mlflow' "
                       f"for ./{DEFAULT_FOLDER}")
    return TrackSpec(tracker, tracking_uri(uri or None))


def is_tracked_run(ref: str) -> bool:
    """True for `mlflow:RUN` (an MLflow run id or an llmbench run id), the form `compare` reads."""
    return ref.startswith(RUN_PREFIX)


def tracked_run_id(ref: str) -> str:
    """The run named by `mlflow:RUN`; bad input when nothing follows the prefix."""
    run = ref[len(RUN_PREFIX):].strip()
    if not run:
        raise BadInput(f"{ref!r}: give mlflow:RUN_ID (the MLflow run id, or the llmbench run id it was tracked under)")
    return run
