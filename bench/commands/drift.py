"""`llmbench drift LOG --against RUN_DIR [--window 5m] [--min-change 0.2] [--json]`: exit 3 when something drifted."""
from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import click

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DRIFT_EXIT = 3


def parse_window(text: str) -> float:
    """'5m', '30s', '1h', '1d' or plain seconds, as seconds; BadInput otherwise."""
    from llmbench.errors import BadInput

    m = _DURATION.match(text or "")
    value = float(m.group(1)) * _UNIT_S[m.group(2) or "s"] if m else 0.0
    if not m or not 1 <= value <= 366 * 86400:
        raise BadInput(f"--window {text!r}: expected a duration from 1s to 366d such as 30s, 5m, 1h or 1d")
    return value


def _num(name: str, v: float) -> str:
    if name == "error_rate":
        return f"{100 * v:.1f}%"
    if name == "cost":
        return f"${v:.3g}"
    return f"{v:.1f}{' ms' if name.endswith('_ms') else ''}"


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _figure_text(f) -> str:
    what = "" if f.name == "error_rate" else "p50 "
    text = f"{f.name} {what}{_num(f.name, f.p50)} vs {_num(f.name, f.base_p50)} measured"
    change = f"{100 * f.change:+.1f} points" if f.name == "error_rate" else f"{100 * f.change:+.0f}%"
    if f.p_value is None:
        text += f" ({change}, too small to test)"
    else:
        text += f" ({change}, p={f.p_value:.2g}, {f.p_adjusted if f.p_adjusted is not None else f.p_value:.2g} corrected)"
    if f.plan_p95 is not None:
        text += f"; p95 {_num(f.name, f.p95)}, the plan predicted {_num(f.name, f.plan_p95)}"
    return text


def deployment_line(d: dict) -> str:
    """One line for one deployment: drifted or not, the figure, its baseline and the window."""
    name = f"{d['model']} {d['variant']}"
    wins = d["windows"]
    judged = [w for w in wins if w.figures]
    if not judged:
        return f"unknown  {name}: {wins[0].note if wins else 'no requests'}"
    hits = [(w, f) for w in judged for f in w.drifted]
    if hits:
        w, f = max(hits, key=lambda wf: abs(wf[1].change))
        others = sorted({g.name for _, g in hits} - {f.name})
        also = f"; also {', '.join(others)}" if others else ""
        n_win = len({id(x) for x, _ in hits})
        return (f"DRIFTED  {name}: {_figure_text(f)}{also}; window {_when(w.start)}-{_when(w.end)[11:]} UTC "
                f"({w.n} requests; {n_win} of {len(judged)} window(s) drifted)")
    w, f = max(((w, f) for w in judged for f in w.figures), key=lambda wf: abs(wf[1].change) if wf[1].name != "error_rate" else 0)
    return (f"ok       {name}: within the noise in {len(judged)} window(s), {d['requests']} requests "
            f"(largest change: {_figure_text(f)})")


def _as_json(doc: dict, log, run_dir: str) -> dict:
    out = {"log": log.path, "files": [str(f) for f in log.files], "skipped_lines": log.skipped,
           "first_bad_line": log.first_bad, "run": run_dir, **{k: v for k, v in doc.items() if k != "deployments"}}
    out["deployments"] = [{**{k: v for k, v in d.items() if k != "windows"}, "line": deployment_line(d),
                           "windows": [w.as_dict() for w in d["windows"]]} for d in doc["deployments"]]
    return out


@click.command(epilog="""\b
Per deployment (model, variant) of the log and per time window, compares TTFT, E2EL and TPOT,
prompt and output tokens, cost per request and the error rate with the run's own requests of that
deployment (and shows the plan's predicted p95 where RUN_DIR has plan.json). A figure drifted when
its median moved by at least --min-change (errors: 5 points) and a Mann-Whitney U test (errors:
Fisher's exact test) puts it beyond the noise: p < 0.01 after the Benjamini-Hochberg correction
over every figure of every window.
\b
Exit codes: 0 nothing drifted, 3 something drifted, 2 bad input (no usable line in the log,
RUN_DIR without requests). Deployments the run never measured are listed once.""")
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--against", "run_dir", required=True, type=click.Path(file_okay=False), help="the results folder of the last run")
@click.option("--window", default="5m", show_default=True, help="time window of the log: 30s, 5m, 1h, 1d")
@click.option("--min-change", type=click.FloatRange(0.01, 10.0), default=0.2, show_default=True,
              help="the smallest relative change of a median that counts as drift (0.2 = 20%)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout")
def drift(log: str, run_dir: str, window: str, min_change: float, as_json: bool) -> None:
    """Has production drifted from what the run measured? One line per deployment; exit 3 if so."""
    from llmbench.errors import BadInput
    from llmbench.monitor.drift import drift as compare
    from llmbench.monitor.log_read import read_log
    from llmbench.results import RunDir

    window_s = parse_window(window)
    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise BadInput(f"--against {run_dir!r} is not a folder")
    baseline = run.records()
    if not baseline:
        raise BadInput(f"--against {run_dir}: no request records (requests.jsonl) to compare with: "
                       "is this a results folder of `llmbench run`?")
    plan_doc = run.read_json("plan.json") if (run.path / "plan.json").is_file() else None
    parsed = read_log(log)
    if parsed.warning():
        click.echo(parsed.warning(), err=True)
    doc = compare(parsed.records, baseline, window_s, min_change, plan_doc)
    if as_json:
        click.echo(json.dumps(_as_json(doc, parsed, run_dir), indent=2, allow_nan=False, default=str))
    else:
        for d in doc["deployments"]:
            click.echo(deployment_line(d))
        if doc["unmeasured"]:
            shown = ", ".join(f"{u['model']} {u['variant']} ({u['requests']} requests)" for u in doc["unmeasured"])
            click.echo(f"not compared: the run never measured {shown}")
        if not doc["deployments"]:
            click.echo("nothing to compare: no deployment of the log was measured by the run")
    sys.exit(DRIFT_EXIT if doc["drifted"] else 0)
