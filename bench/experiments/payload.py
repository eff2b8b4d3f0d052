"""What one llmbench results folder becomes in an experiment tracker: params, metrics, tags, artifacts.

Pure functions over the folder's files (run.json, summary.json, quality.json), no tracker import,
so the mapping is tested on its own. Metric keys are `<cell>/<metric>`: the MLflow UI groups
charts by the part before the slash, and `cells.json` (an artifact) maps each <cell> back to its
model, variant, scenario and point.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# MLflow allows alphanumerics, _ - . space : and /; `/` separates cell from metric, so a part keeps
# none, and `:` is left out too (Windows stores refuse it).
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.\- ]+")
MAX_KEY = 250  # MLflow's longest metric or param key
MAX_VALUE = 6000  # MLflow's longest param value
PERCENTILES = ("p50", "p95", "p99")
LATENCIES = ("ttft_ms", "tpot_ms", "e2el_ms")
SCALARS = ("requests", "failed", "error_rate", "output_throughput_tok_s", "request_throughput_req_s", "per_user_tok_s",
           "goodput_req_s", "cost_per_request_usd", "cost_per_1m_output_tokens_usd", "peak_rss_mb")
# The results folder's files a tracked run carries; requests.jsonl (can be large) and servers/ (logs) stay in the folder.
ARTIFACT_FILES = ("report.md", "report.html", "recommendation.json", "plan.json", "deployment.yaml", "summary.json",
                  "summary.csv", "run.json", "quality.json", "cache.json", "compression.json", "verify.json")
ARTIFACT_DIRS = ("plots", "gateway")
CELL = ("model", "variant", "scenario", "point")


def key_part(text: object) -> str:
    """One part of a metric key: characters MLflow refuses become `_`, never empty, never `.` or `..`."""
    part = _NOT_ALLOWED.sub("_", str(text)).strip("_. ")
    return part or "_"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def cell_prefixes(rows: list[dict], room: int = MAX_KEY - 40) -> list[str]:
    """One unique metric-key prefix per summary row, in the rows' order: `model.variant.scenario.point`."""
    out: list[str] = []
    for row in rows:
        ident = json.dumps([row.get(k) for k in CELL], default=str)
        name = ".".join(key_part(row.get(k)) for k in CELL)
        if len(name) > room:  # cut long names (a model given as a deep path), kept unique by a hash
            name = f"{name[:room - 7]}-{_short_hash(ident)}"
        if name in out:  # two cells that differ only in refused characters
            name = f"{name[:room - 7]}-{_short_hash(ident)}"
        out.append(name)
    return out


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def row_metrics(row: dict) -> dict[str, float]:
    """One summary row's figures as {metric: value}: latency percentiles, throughput, cost, quality."""
    out: dict[str, float] = {}
    for lat in LATENCIES:
        for q in PERCENTILES:
            if (v := _number((row.get(lat) or {}).get(q))) is not None:
                out[f"{lat}_{q}"] = v
    for name in SCALARS:
        if (v := _number(row.get(name))) is not None:
            out[name] = v
    quality = row.get("quality") or {}
    for name, value in quality.items():
        if (v := _number(value)) is not None:
            out[f"quality_{key_part(name)}"] = v
    if quality.get("gate") in ("pass", "fail"):
        out["quality_gate_passed"] = 1.0 if quality["gate"] == "pass" else 0.0
    return out


def metrics(summary: dict) -> tuple[dict[str, float], dict[str, dict]]:
    """({'<cell>/<metric>': value}, {cell prefix: cell}) over every row of summary.json."""
    rows = summary.get("rows") or []
    prefixes = cell_prefixes(rows)
    out: dict[str, float] = {}
    for prefix, row in zip(prefixes, rows):
        out.update({f"{prefix}/{name}": v for name, v in row_metrics(row).items()})
    return out, {p: {k: row.get(k) for k in CELL} for p, row in zip(prefixes, rows)}


def _param_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_VALUE]


def params(config: dict, prefix: str = "") -> dict[str, str]:
    """The resolved config, flattened: `candidates.0.model`, `workload.requests`; values as text (JSON for non-strings)."""
    out: dict[str, str] = {}
    items = config.items() if isinstance(config, dict) else enumerate(config)
    for k, v in items:
        name = f"{prefix}{key_part(k)}"
        if isinstance(v, (dict, list)) and v:
            out.update(params(v, f"{name}."))
        else:
            out[name[:MAX_KEY]] = _param_value(v)
    return out


def _dataset_tag(dataset: dict | None) -> str:
    if not dataset:
        return "none: synthetic prompts of the configured lengths"
    return f"{dataset.get('name')}@{dataset.get('version')} sha256:{str(dataset.get('sha256'))[:12]}"


def tags(meta: dict, summary: dict, quality: dict | None) -> dict[str, str]:
    """Run tags: git commit, hardware, dataset versions, llmbench version (MLflow's own names where it has one)."""
    env = meta.get("environment") or {}
    commit = str(env.get("git_commit") or "unknown")
    machine = env.get("machine") or {}
    out = {
        "mlflow.source.git.commit": commit.removesuffix("-dirty"),
        "llmbench.git_commit": commit,
        "llmbench.run_id": str(meta.get("run_id")),
        "llmbench.version": str((env.get("packages") or {}).get("llmbench", "unknown")),
        "llmbench.hardware": str(summary.get("hardware") or (meta.get("hardware_profile") or {}).get("name")),
        "llmbench.device": str(summary.get("device") or meta.get("device")),
        "llmbench.machine": f"{machine.get('cpu_model')}, {machine.get('cpu_cores_logical')} CPUs, "
                            f"{machine.get('memory_gb')} GB, GPUs: {', '.join(map(str, machine.get('gpus') or [])) or 'none'}",
        "llmbench.dataset": _dataset_tag(meta.get("dataset")),
    }
    golden = (quality or {}).get("golden")
    if golden:
        out["llmbench.golden_set"] = _dataset_tag(golden)
    return out


@dataclass
class Payload:
    """Everything one tracked run gets from a results folder."""

    run_id: str
    started_at: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    cells: dict[str, dict]
    tags: dict[str, str]
    artifacts: list[Path] = field(default_factory=list)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def build_payload(folder: Path) -> Payload:
    """The payload of a written results folder (run.json and summary.json must be there)."""
    meta, summary = _read(folder / "run.json"), _read(folder / "summary.json")
    found, cells = metrics(summary)
    files = [folder / f for f in ARTIFACT_FILES if (folder / f).is_file()]
    files += [folder / d for d in ARTIFACT_DIRS if (folder / d).is_dir()]
    return Payload(run_id=str(meta.get("run_id") or folder.name), started_at=meta.get("started_at"),
                   params=params(meta.get("config") or {}), metrics=found, cells=cells,
                   tags=tags(meta, summary, _read(folder / "quality.json") or None), artifacts=files)
