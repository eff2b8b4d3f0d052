"""The sweep as a picture: hit rate against false-hit rate, one curve per rule, chosen points marked."""
from __future__ import annotations

from pathlib import Path


def plot_sweep(result: dict, path: Path) -> None:
    """Draw result["sweep"] (from sweep_pairs) to a PNG at `path` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for name, style in (("cosine", "o-"), ("verifier", "s-")):
        pts = [p for p in result["sweep"].get(name, []) if p["false_hit_rate"] is not None]
        if pts:
            ax.plot([p["false_hit_rate"] for p in pts], [p["hit_rate"] for p in pts], style, ms=2.5, lw=1.2,
                    label="plain cosine (threshold sweep)" if name == "cosine" else "verifier (probability sweep)")
    base = result.get("baseline", {})
    if base.get("false_hit_rate") is not None:
        ax.plot(base["false_hit_rate"], base["hit_rate"], "kx", ms=9,
                label=f"cosine at {base['threshold']:.3f}")
    if result.get("false_hit_rate") is not None:
        ax.plot(result["false_hit_rate"], result["hit_rate"], "r*", ms=12,
                label=f"{result['setting']['rule']} (shipped setting)")
    target = result["setting"].get("target_false_hit")
    if target is not None:
        ax.axvline(target, color="grey", ls=":", lw=1, label=f"target false-hit rate {target:g}")
    ax.set_xlabel("false-hit rate (label-0 lookups served)")
    ax.set_ylabel("hit rate (label-1 lookups served their own entry)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Semantic cache on {Path(str(result.get('log', ''))).name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
