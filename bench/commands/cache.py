"""`llmbench cache`: the similarity kernels against numpy and faiss, and the semantic cache replayed on traffic."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import click

from llmbench.errors import BadInput


@click.group(name="cache")
def cache() -> None:
    """Semantic cache: benchmark its Numba kernels, or simulate it on a log."""


@contextmanager
def _progress(enabled: bool = True):
    """A rich progress display on stderr; yields a callback (stage, done, total)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, disable=not enabled) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done if total else 1, total=max(total, 1))

        yield update


def _emit_json(doc: dict) -> None:
    click.echo(json.dumps(doc, indent=2, default=_json_default))


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@cache.command("bench")
@click.option("--n", "n", type=int, default=200_000, show_default=True, help="rows in the index")
@click.option("--dim", type=int, default=384, show_default=True, help="vector width")
@click.option("--queries", type=int, default=64, show_default=True, help="batch size for the batched comparison")
@click.option("--k", "k", type=int, default=10, show_default=True, help="neighbours per query")
@click.option("--repeats", type=int, default=41, show_default=True, help="single-query repeats (medians)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout")
def bench(n: int, dim: int, queries: int, k: int, repeats: int, seed: int, as_json: bool) -> None:
    """Time the float32, batched and int8 kernels against numpy and faiss on the same random unit vectors."""
    for name, value, low in (("--n", n, 1), ("--dim", dim, 1), ("--queries", queries, 1), ("--k", k, 1),
                             ("--repeats", repeats, 3)):
        if value < low:
            raise BadInput(f"{name} must be at least {low}, got {value}")
    need = n * dim * 4 * 2.4 + queries * n * 4  # float32 matrix, faiss's copy, int8 copy, numpy's batch scores
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except Exception:  # psutil missing: skip the check rather than refuse
        avail = None
    if avail is not None and need > 0.8 * avail:
        raise BadInput(f"--n {n} --dim {dim}: needs about {need / 1e9:.1f} GB, {avail / 1e9:.1f} GB available")
    # Before numba, faiss and numpy load their thread pools: idle workers sleep instead of spinning on
    # the core the other library needs (see llmbench.kernels.bench). OpenBLAS (numpy's `M @ q`) does
    # not read OMP_WAIT_POLICY; its workers spin for 2**THREAD_TIMEOUT cycles (about 0.1 s) after
    # each call unless told otherwise.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    from llmbench.kernels.bench import run_bench

    t0 = time.perf_counter()
    with _progress() as update:
        result = run_bench(n=n, dim=dim, queries=queries, k=k, single_repeats=repeats, seed=seed, progress=update)
    result["wall_s"] = time.perf_counter() - t0
    result["command"] = f"llmbench cache bench --n {n} --dim {dim} --queries {queries}"
    if as_json:
        _emit_json(result)
        return
    _bench_table(result)


def _fmt(v, digits=2) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _bench_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"top-{r['k']} search, N={r['n']:,}, d={r['dim']}, {r['threads']} threads "
                    f"(medians; bandwidth {r['bandwidth_gbs']:.1f} GB/s)")
    for col in ("method", "single query ms", f"batch of {r['queries']} ms"):
        t.add_column(col, justify="right" if col != "method" else "left")
    t.add_row(f"numba float32 (shape {r['f32_plan']})", _fmt(r["f32_single_ms"]), _fmt(r["f32_batch_ms"]))
    t.add_row("numba int8 + re-score", _fmt(r["int8_single_ms"]), "-")
    t.add_row("numpy", _fmt(r["numpy_single_ms"]), _fmt(r["numpy_batch_ms"]))
    t.add_row("faiss IndexFlatIP", _fmt(r["faiss_single_ms"]), _fmt(r["faiss_batch_ms"]))
    Console().print(t)
    for key in ("speedup_vs_faiss_single", "speedup_vs_faiss_batch", "int8_speedup_vs_f32", "int8_recall_at_10",
                "bandwidth_fraction_single"):
        click.echo(f"{key}: {_fmt(r[key], 3)}")


@cache.command("simulate")
@click.argument("log", type=str)
@click.option("--threshold", type=float, default=None, help="plain cosine at this threshold instead of the verifier")
@click.option("--sweep", is_flag=True, help="hit rate against false-hit rate over thresholds, drawn as a PNG")
@click.option("--target-false-hit", type=float, default=0.05, show_default=True,
              help="false-hit rate the shipped setting (and the cosine baseline) are chosen for")
@click.option("--price", type=float, default=None, help="USD per 1M tokens, for cost saved")
@click.option("--profile", "price_profile", type=str, default=None,
              help="API model from the price list, or a price file of its shape (llmbench.prices) holding one model")
@click.option("--verifier", "verifier_path", type=str, default=None,
              help="a cache profile fitted on your own pairs (python -m llmbench.optimizers.cache.fit "
                   "--pairs PAIRS --out FILE); default: the shipped one")
@click.option("--out", type=str, default=None, help="folder for result.json (and sweep.png)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout")
def simulate(log: str, threshold: float | None, sweep: bool, target_false_hit: float, price: float | None,
             price_profile: str | None, verifier_path: str | None, out: str | None, as_json: bool) -> None:
    """Replay LOG (labelled pairs, a JSONL of prompts, or a run's requests.jsonl) through the semantic cache."""
    if threshold is not None and sweep:
        raise BadInput("give --threshold or --sweep, not both")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise BadInput(f"--threshold is a cosine, within [-1, 1]; got {threshold}")
    if not 0.0 < target_false_hit < 1.0:
        raise BadInput(f"--target-false-hit must be within (0, 1), got {target_false_hit}")
    if price is not None and price_profile is not None:
        raise BadInput("give --price or --profile, not both")
    if price is not None and price < 0:
        raise BadInput(f"--price must be non-negative, got {price}")
    from llmbench.optimizers.cache.logs import PairsLog, read_log
    from llmbench.optimizers.cache.profile import load_profile, load_user_profile

    price_arg: float | tuple[float, float] | None = price
    if price_profile is not None:
        from llmbench.optimizers.cache.prices import input_output_per_million

        price_arg = input_output_per_million(price_profile)
    data = read_log(log)  # BadInput for a missing or malformed file, naming the line
    if sweep and not isinstance(data, PairsLog):
        raise BadInput(f"{log}: --sweep needs a labelled pairs file (text_a, text_b, label)")
    profile = load_user_profile(verifier_path, "--verifier") if verifier_path else load_profile()
    smallest = min(s.target for s in profile.settings)
    if target_false_hit < smallest:
        # With --threshold too: the cosine baseline beside it is chosen for this target.
        raise BadInput(f"--target-false-hit {target_false_hit}: the profile's settings start at {smallest}"
                       + (" (the cosine baseline reported beside --threshold is chosen for this target)"
                          if threshold is not None else ""))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmbench.optimizers.cache import simulate as sim

    out_dir = Path(out) if out else None
    kwargs = dict(target_false_hit=target_false_hit, threshold=threshold, price_per_1m=price_arg, profile=profile)
    with _progress() as update:
        if sweep:
            plot = (out_dir or Path("results") / "cache") / f"sweep-{Path(log).stem}.png"
            result = sim.sweep_pairs(data, plot_path=plot, progress=update, **kwargs)
        elif isinstance(data, PairsLog):
            result = sim.simulate_pairs(data, progress=update, **kwargs)
        else:
            result = sim.simulate_prompts(data.prompts, data.prompt_tokens, data.output_tokens, data.costs,
                                          source=str(log), progress=update, **kwargs)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
        tmp.replace(out_dir / "result.json")
    if as_json:
        _emit_json(result)
        return
    _simulate_table(result)


def _simulate_table(r: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    s, b = r["setting"], r["baseline"]
    rule = (f"verifier {s.get('verifier', '')}, p >= {s['threshold']:.3f}" if s["rule"] == "verifier"
            else f"cosine >= {s['threshold']:.3f}")
    from rich.markup import escape

    t = Table(title=escape(f"{r['log']}: {r['lookups']} lookups, target false-hit rate {s['target_false_hit']}"),
              caption=escape(f"rule: {rule}; baseline: cosine >= {b['threshold']:.3f}"), box=box.SIMPLE_HEAD)
    units = r.get("units") or {}
    hit_unit = "per label-1 lookup" if units.get("hit_rate") == "per_label1_lookup" else "per request"
    t.caption += (f"; hit {hit_unit}, false hit per label-0 lookup, wrong entry per label-1 lookup; "
                  "served and wrong answers (false hits + wrong entries) per request")
    t.add_column("", no_wrap=True, min_width=8)
    for col in ("hit", "false hit", "wrong entry", "served", "wrong ans.", "calls saved", "tokens saved",
                "cost saved"):
        t.add_column(col, justify="right", min_width=6 if col == "served" else 5)
    for name, x in (("rule", r), ("baseline", b)):
        t.add_row(name, _fmt(x["hit_rate"], 3), _fmt(x.get("false_hit_rate"), 3), _fmt(x.get("wrong_entry_rate"), 3),
                  _fmt(x.get("served_from_cache_rate"), 3), _fmt(x.get("wrong_answer_rate"), 3),
                  _fmt(x["api_calls_saved"]), _fmt(x["tokens_saved"]), _fmt(x["cost_saved"], 4))
    Console().print(t)
    click.echo(f"lookup latency p50 {_fmt(r['lookup_ms_p50'], 3)} ms, p99 {_fmt(r['lookup_ms_p99'], 3)} ms"
               + (f"; plot: {r['plot']}" if r.get("plot") else ""))
