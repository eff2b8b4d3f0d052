"""summary.json / summary.csv: one row per candidate x variant x scenario point."""
from __future__ import annotations

from llmbench.metrics import group_cells, summarize_cell
from llmbench.results import RunDir, write_csv, write_json
from llmbench.slo import parse_slo


def build_summary(run_dir: RunDir, meta: dict) -> dict:
    """Summary rows from the request log and the per-cell facts in run.json."""
    usd_per_hour = meta["hardware_profile"]["usd_per_hour"] * meta["hardware_profile"].get("devices", 1)
    slos = parse_slo(meta["config"].get("slo"), "slo")
    rows = []
    for key, records in group_cells(run_dir.records()).items():
        row = summarize_cell(records, usd_per_hour, slos)
        row.update(meta.get("cells", {}).get("|".join(key), {}))
        vmeta = meta.get("variants", {}).get(f"{key[0]}|{key[1]}", {})
        row.update({k: vmeta.get(k) for k in ("parameters", "size_bytes", "load_s", "device", "dtype", "random_weights") if k in vmeta})
        rows.append(row)
    return {
        "run_id": meta["run_id"],
        "hardware": meta["hardware_profile"]["name"],
        "usd_per_hour": usd_per_hour,
        "device": meta.get("device"),
        "rows": rows,
    }


def write_summary(run_dir: RunDir, summary: dict) -> None:
    write_json(run_dir.path / "summary.json", summary)
    write_csv(run_dir.path / "summary.csv", summary["rows"])


def summary_table(summary: dict):
    """A rich table of the headline figures."""
    from rich.table import Table

    def f(v, nd=1):
        return "-" if v is None else f"{v:,.{nd}f}"

    t = Table(title=f"llmbench {summary['run_id']} on {summary['hardware']} ({summary.get('device')})")
    for col in ("model", "variant", "scenario", "point", "n", "TTFT p50/p95 ms", "TPOT p50/p95 ms", "E2EL p95 ms", "tok/s", "peak RSS MB", "$/1M tok"):
        t.add_column(col, justify="right" if col not in ("model", "variant", "scenario", "point") else "left")
    for r in summary["rows"]:
        if r.get("error"):
            t.add_row(r["model"], r["variant"], r["scenario"], r["point"], "0", f"[red]failed: {r['error'][:60]}[/red]", "", "", "", "", "")
            continue
        tt, tp, e2 = r.get("ttft_ms") or {}, r.get("tpot_ms") or {}, r.get("e2el_ms") or {}
        t.add_row(r["model"], r["variant"], r["scenario"], r["point"], str(r["requests"] - r["failed"]),
                  f"{f(tt.get('p50'))} / {f(tt.get('p95'))}", f"{f(tp.get('p50'), 2)} / {f(tp.get('p95'), 2)}",
                  f(e2.get("p95")), f(r.get("output_throughput_tok_s")), f(r.get("peak_rss_mb"), 0),
                  f(r.get("cost_per_1m_output_tokens_usd"), 3))
    return t
