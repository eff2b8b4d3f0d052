"""summary.json / summary.csv: one row per candidate x variant x scenario point."""
from __future__ import annotations

from rich.markup import escape

from llmbench.metrics import group_cells, summarize_cell
from llmbench.results import RunDir, write_csv, write_json
from llmbench.roofline import add_roofline
from llmbench.slo import parse_slo

# A figure is unreliable when the machine was not ours while it was measured: the hypervisor
# stole this share of CPU time, or other processes kept this share of all CPUs busy.
STEAL_LIMIT_PCT = 5.0
OTHERS_LIMIT_PCT = 25.0
# ...or when its own spread says so: the p50 TPOT known only to ± this %, or per-token times this varied.
PRECISION_LIMIT_PCT = 10.0
TPOT_CV_LIMIT_PCT = 50.0

_VARIANT_KEYS = ("parameters", "size_bytes", "load_s", "device", "dtype", "random_weights", "weight_bytes_per_token")


def _reasons(row: dict) -> list[tuple[str, str]]:
    """(short tag for the table, full reason for the files) for each cause of an unreliable row."""
    out = []
    if row.get("partial_failure"):
        total = (row.get("requests") or 0) + (row.get("failed") or 0)
        out.append(("partial failure", f"failed partway ({row.get('failed')} of {total} requests failed)"))
    steal, others = row.get("cpu_steal_pct"), row.get("cpu_others_pct")
    if steal is not None and steal > STEAL_LIMIT_PCT:
        out.append((f"steal {steal:.0f}%", f"CPU steal {steal:.0f}% during the cell"))
    if others is not None and others > OTHERS_LIMIT_PCT:
        out.append((f"other load {others:.0f}%", f"other work used {others:.0f}% of the CPUs during the cell"))
    prec = row.get("precision_pct")
    if prec is not None and prec > PRECISION_LIMIT_PCT:
        out.append((f"±{prec:.0f}%", f"p50 TPOT known only to ±{prec:.0f}%"))
    cv = (row.get("tpot_ms") or {}).get("cv_pct")
    if cv is not None and cv > TPOT_CV_LIMIT_PCT:
        out.append((f"TPOT CV {cv:.0f}%", f"TPOT CV {cv:.0f}%"))
    return out


def reliability(row: dict) -> tuple[bool, str | None]:
    """Whether a row's figures can be trusted, and why not: a partial failure, steal or other load
    on the machine during the cell, or a spread too wide (see the limits above)."""
    reasons = [long for _, long in _reasons(row)]
    return bool(reasons), "; ".join(reasons) or None


def build_summary(run_dir: RunDir, meta: dict) -> dict:
    """Summary rows from the request log and the per-cell facts in run.json."""
    usd_per_hour = meta["hardware_profile"]["usd_per_hour"] * meta["hardware_profile"].get("devices", 1)
    slos = parse_slo(meta["config"].get("slo"), "slo")
    rows, bytes_per_token = [], {}
    for key, records in group_cells(run_dir.records()).items():
        row = summarize_cell(records, usd_per_hour, slos)
        row.update(meta.get("cells", {}).get("|".join(key[:4]), {}))
        vmeta = meta.get("variants", {}).get(f"{key[0]}|{key[1]}", {})
        row.update({k: vmeta.get(k) for k in _VARIANT_KEYS if k in vmeta})
        target = row.get("precision_target_pct")
        if target is not None and not row.get("error"):
            row["precision_reached"] = row.get("precision_pct") is not None and row["precision_pct"] <= target
        if not row.get("error"):
            row["unreliable"], row["unreliable_reason"] = reliability(row)
        bytes_per_token[(row["model"], row["variant"])] = vmeta.get("weight_bytes_per_token")
        rows.append(row)
    add_roofline(rows, (meta.get("roofline_bandwidth") or {}).get("gbs"), bytes_per_token)
    return {
        "run_id": meta["run_id"],
        "hardware": meta["hardware_profile"]["name"],
        "usd_per_hour": usd_per_hour,
        "device": meta.get("device"),
        "roofline_bandwidth": meta.get("roofline_bandwidth"),
        "rows": rows,
    }


def write_summary(run_dir: RunDir, summary: dict) -> None:
    write_json(run_dir.path / "summary.json", summary)
    write_csv(run_dir.path / "summary.csv", summary["rows"])


def row_notes(r: dict) -> str:
    """The table's short warnings for a row: noisy (precision not reached), why it is unreliable."""
    notes = []
    if r.get("precision_reached") is False and r.get("precision_pct") is not None:
        notes.append(f"noisy: ±{r['precision_pct']:.0f}%")
    if r.get("unreliable"):
        tags = [short for short, _ in _reasons(r) if not short.startswith("±")]
        notes.append("unreliable" + (f" ({', '.join(tags)})" if tags else ""))
    return "; ".join(notes)


def summary_table(summary: dict):
    """A rich table of the headline figures (user text escaped: names may hold brackets)."""
    from rich.table import Table

    def f(v, nd=1):
        return "-" if v is None else f"{v:,.{nd}f}"

    t = Table(title=escape(f"llmbench {summary['run_id']} on {summary['hardware']} ({summary.get('device')})"))
    for col in ("model", "variant", "scenario", "point", "n", "TTFT p50/p95 ms", "TPOT p50/p95 ms", "E2EL p95 ms", "tok/s",
                "peak RSS MB", "$/1M tok", "roofline", "notes"):
        t.add_column(col, justify="right" if col not in ("model", "variant", "scenario", "point", "notes") else "left")
    for r in summary["rows"]:
        name = [escape(str(r[k])) for k in ("model", "variant", "scenario", "point")]
        if r.get("error"):
            t.add_row(*name, "0", f"[red]failed: {escape(r['error'][:60])}[/red]", "", "", "", "", "", "", "")
            continue
        tt, tp, e2 = r.get("ttft_ms") or {}, r.get("tpot_ms") or {}, r.get("e2el_ms") or {}
        share = r.get("roofline_share")
        notes = row_notes(r)
        t.add_row(*name, str(r["requests"]),
                  f"{f(tt.get('p50'))} / {f(tt.get('p95'))}", f"{f(tp.get('p50'), 2)} / {f(tp.get('p95'), 2)}",
                  f(e2.get("p95")), f(r.get("output_throughput_tok_s")), f(r.get("peak_rss_mb"), 0),
                  f(r.get("cost_per_1m_output_tokens_usd"), 3), "-" if share is None else f"{share:.0%}",
                  f"[yellow]{escape(notes)}[/yellow]" if notes else "")
    return t
