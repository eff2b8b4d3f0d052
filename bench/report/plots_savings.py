"""What the cheaper ways cost in quality: quality per variant, cache hits against false hits,
compression ratio against agreement. Each is skipped when its stage did not run."""
from __future__ import annotations

from llmbench.recommend.facts import RANDOM_WEIGHTS, quality_of
from llmbench.report.context import ReportContext
from llmbench.report.figures import NOT_MEASURED, label_of, new_figure, plot

_SHAPES = ["o", "s", "^", "D"]
_GATE_COLOURS = {"pass": "tab:green", "fail": "tab:red", "unverified": "tab:grey"}


@plot("quality", "Quality per variant (against its reference)")
def quality(ctx: ReportContext):
    seen: dict[str, dict] = {}
    for r in ctx.data.rows:
        if isinstance(r.get("quality"), dict):
            seen.setdefault(label_of(r["model"], r["variant"], ctx.models), {**quality_of(r), "raw": r["quality"]})
    if not seen:
        return NOT_MEASURED + " (no quality gate ran)"
    fig, (ax,) = new_figure(7.5, max(2.5, 0.35 * len(seen) + 1.2))
    names = list(seen)
    metrics = [("greedy_agreement", "greedy agreement"), ("top1_agreement", "top-1 agreement")]
    h = 0.38
    unmeasured = False
    for j, (key, label) in enumerate(metrics):
        # A figure the gate could not measure (a served variant has no teacher-forced logits) gets
        # no bar, and says so: a bar at 0 would read as no agreement at all.
        at = [(i, n, seen[n]["raw"].get(key)) for i, n in enumerate(names)]
        got = [(i, n, v) for i, n, v in at if isinstance(v, (int, float))]
        ax.barh([i + (j - 0.5) * h for i, _, _ in got], [v for _, _, v in got], height=h, label=label,
                color=[_GATE_COLOURS.get(str(seen[n]["gate"]), "tab:blue") for _, n, _ in got], alpha=0.55 + 0.4 * j,
                hatch=["//" if seen[n]["status"] == RANDOM_WEIGHTS else "" for _, n, _ in got])
        for i, n, v in at:
            if not isinstance(v, (int, float)) and key in (seen[n]["raw"].get("not_measured") or {}):
                ax.text(0.01, i + (j - 0.5) * h, f"{label}: not measured", fontsize=6, va="center", color="0.35")
                unmeasured = True
    ax.set_yticks(range(len(names)), [f"{n} ({seen[n]['gate'] or 'no gate'})" for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("agreement with the reference variant")
    ax.legend(fontsize=7)
    rw = any(v["status"] == RANDOM_WEIGHTS for v in seen.values())
    return fig, ("Colour: gate pass (green), fail (red), unverified (grey)."
                 + (f" Hatched: {RANDOM_WEIGHTS} (figures shown, gate neither passes nor fails them)." if rw else "")
                 + (" Served variants (llama.cpp GGUF) are judged on greedy agreement through their server only: it "
                    "returns no teacher-forced logits, so top-1 agreement, KL and perplexity are not measured." if unmeasured else ""))


@plot("cache", "Semantic cache: hit rate against false-hit rate")
def cache(ctx: ReportContext):
    c = ctx.data.cache
    if not c:
        return NOT_MEASURED + " (no cache simulation: cache.json absent)"
    if c["false_hit_rate"] is None:
        return NOT_MEASURED + " (the cache replayed a log without labels: no false-hit rate)"
    fig, (ax,) = new_figure()
    # The settings that matter sit at low false-hit rates: show up to a few times the chosen ones,
    # not the whole sweep out to thresholds nobody would pick.
    gw = c.get("gateway") or {}
    chosen = [v for v in (c.get("false_hit_rate"), gw.get("false_hit_rate"), c.get("target_false_hit")) if isinstance(v, (int, float))]
    every = [p["false_hit_rate"] for k in ("cosine", "verifier") for p in c["sweep"].get(k) or []]
    xmax = min(max(every, default=1.0), max(0.2, 4 * max(chosen, default=0.05)))
    for name, label in (("cosine", "plain cosine, threshold swept"), ("verifier", "verifier, probability swept")):
        pts = sorted(c["sweep"].get(name) or [], key=lambda p: p["false_hit_rate"])
        if not pts:
            continue
        line, = ax.plot([p["false_hit_rate"] for p in pts], [p["hit_rate"] for p in pts], marker=".", label=label)
        last = None
        for p in pts:  # label a threshold only where it does not crowd the previous label
            if p.get("threshold") is None or p["false_hit_rate"] > xmax:
                continue
            at = (p["false_hit_rate"] / xmax, p["hit_rate"])
            if last is None or abs(at[0] - last[0]) > 0.08 or abs(at[1] - last[1]) > 0.08:
                ax.annotate(f"{p['threshold']:.2f}", (p["false_hit_rate"], p["hit_rate"]), fontsize=6,
                            xytext=(3, -8), textcoords="offset points", color=line.get_color())
                last = at
    # Same marks as `cache simulate --sweep` draws: the red star is the profile's own setting
    # (the verifier's, or plain cosine's when that is the rule), the black cross plain cosine at
    # the same target, which is what the gateway config runs. The labels say so in words.
    deployed_verifier = gw.get("rule") == "verifier"  # llmbench's proxy plug-in runs the verifier itself
    if c.get("rule") == "verifier" and c.get("hit_rate") is not None and not deployed_verifier:
        ax.plot([c["false_hit_rate"]], [c["hit_rate"]], "r*", ms=14, zorder=4,
                label=f"red star: llmbench's verifier at p >= {c['threshold']:.3f} (a check in your application)")
    if gw and gw.get("hit_rate") is not None and gw.get("false_hit_rate") is not None:
        star = c.get("rule") != "verifier" or deployed_verifier
        what = f"verifier {gw.get('verifier')} at p" if deployed_verifier else "plain cosine"
        ax.plot([gw["false_hit_rate"]], [gw["hit_rate"]], "r*" if star else "kx", ms=14 if star else 10, mew=2, zorder=4,
                label=(f"{'red star' if star else 'black cross'}: {what} >= {gw['threshold']:.3f}, "
                       "the gateway config's setting"))
        ax.annotate("gateway", (gw["false_hit_rate"], gw["hit_rate"]), fontsize=7, xytext=(8, 6), textcoords="offset points")
    ax.set_xlim(-0.01 * xmax, xmax * 1.02)
    ax.set_xlabel("false-hit rate (wrong answer served)" + (f"; the sweep goes on to {max(every):.2f}" if every and max(every) > xmax else ""))
    ax.set_ylabel("hit rate")
    ax.legend(fontsize=7)
    return fig, ("From cache.json, marked as `llmbench cache simulate --sweep` marks them: the red star is the cache "
                 "profile's own setting, the black cross plain cosine at the same false-hit target. The gateway config "
                 "runs the setting marked as its own: llmbench's cache in the proxy runs the profile's setting (verifier "
                 "included); LiteLLM's Qdrant cache compares cosines only.")


@plot("compression", "Prompt compression: ratio against output agreement")
def compression(ctx: ReportContext):
    pts = [c for c in ctx.data.compression if c.get("ratio") is not None]
    if not pts:
        return NOT_MEASURED + " (no compression figures: compression.json absent)"
    fig, (ax,) = new_figure(7.5, 4.5)
    by_model: dict[str, list] = {}
    for c in pts:
        by_model.setdefault(str(c.get("model") or "all candidates"), []).append(c)
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    handles: list = []
    offsets = [(6, 4), (6, -10), (-22, 4), (-22, -10)]  # models measured at the same rates overlap: label each apart
    for k, (model, cs) in enumerate(by_model.items()):
        cs.sort(key=lambda c: c["ratio"])
        ys = [c["agreement"] if c.get("agreement") is not None else float("nan") for c in cs]
        shape = _SHAPES[k % len(_SHAPES)]  # models measured at one rate land on one point: shapes tell them apart
        # Nudge each model's markers sideways by a few points so equal figures stay visible side by side.
        shift = offset_copy(ax.transData, fig=fig, x=9 * (k - (len(by_model) - 1) / 2), y=0, units="points")
        line, = ax.plot([c["ratio"] for c in cs], ys, ls="-", alpha=0.6, transform=shift)
        handles.append(Line2D([], [], color=line.get_color(), marker=shape, label=label_of(model, None, ctx.models)))
        for c, y in zip(cs, ys):
            filled = c.get("pays") is True
            ax.scatter([c["ratio"]], [y], s=50, marker=shape, zorder=3 + k, edgecolors=line.get_color(), linewidths=1.5,
                       facecolors=line.get_color() if filled else "white", transform=shift)
            ax.annotate(f"{c['rate']:g}", (c["ratio"], y), fontsize=7, color=line.get_color(),
                        xytext=offsets[k % len(offsets)], textcoords="offset points")
    # The nudged artists do not count in autoscaling: give the axes the points themselves.
    ax.update_datalim([(c["ratio"], 0.0) for c in pts])
    ax.margins(x=0.12)
    ax.autoscale_view()
    ax.set_ylim(-0.05, 1.05)  # agreement is a share: its whole range, so 0 reads as 0
    ax.set_xlabel("compression ratio (original / compressed tokens)")
    ax.set_ylabel("output agreement with the uncompressed prompt")
    ax.legend(handles=handles, fontsize=7)
    return fig, ("Higher ratio cuts input tokens; agreement (greedy output, against the uncompressed prompt) shows what it "
                 "costs in answers. Numbers are the rates asked for; a filled point pays for its compressor's own cost, a "
                 "hollow one does not; models with equal figures are drawn side by side.")
