"""The MLflow side shared by writing and reading: a client on a tracking URI, quietly.

MLflow prints links on stdout (which `--json` keeps for one JSON document), progress bars on
stderr, logs every HTTP retry, and retries a dead server for about four minutes by default;
llmbench has already measured by the time it tracks, so a dead server should fail in seconds. Every
default here yields to the user's own MLFLOW_* setting.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator

from llmbench.experiments.spec import TrackSpec

EXPERIMENT = "llmbench"
_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
             "MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.I)


@contextlib.contextmanager
def quiet_mlflow(spec: TrackSpec) -> Iterator[None]:
    """MLflow's environment defaults for this call, its stdout and log chatter swallowed."""
    wanted = dict(_DEFAULTS)
    if spec.is_folder:
        # MLflow 3.13+ opens a folder (file) store only when told to; a folder URI is the user asking for one.
        wanted["MLFLOW_ALLOW_FILE_STORE"] = "true"
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    loggers = [logging.getLogger(n) for n in ("mlflow", "urllib3", "alembic")]
    levels = [lg.level for lg in loggers]
    os.environ.update(added)
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for k in added:
            os.environ.pop(k, None)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def experiment_name() -> str:
    """$MLFLOW_EXPERIMENT_NAME (MLflow's own variable), else 'llmbench'."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def secret_values() -> dict[str, str]:
    """{env name: value} of the environment's secrets (names like *KEY*, *TOKEN*), 8 characters or more."""
    return {k: v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8}


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets whose value appears in `text`."""
    return [name for name, value in secrets.items() if value in text]


_NO_ANSWER = re.compile(r"\[Errno -?\d+\] [^'\")]+|timed out|Connection refused|Name or service not known")


def describe(exc: BaseException, limit: int = 300) -> str:
    """One short line: 'did not answer (...)' for a server that is not there, else the error's first line.

    MLflow wraps a refused connection in a page of urllib3 text; the OS's reason is the useful part.
    """
    text = str(exc)
    if "Max retries exceeded" in text or isinstance(exc, (ConnectionError, TimeoutError)):
        m = _NO_ANSWER.search(text)
        return f"did not answer ({m.group(0).strip() if m else type(exc).__name__})"[:limit]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:limit]
