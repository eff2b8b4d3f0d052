"""The plot registry and the shared figure plumbing (Agg via matplotlib.figure, no pyplot state)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from matplotlib import rc_context
from matplotlib.figure import Figure

from llmbench.report.context import ReportContext

NOT_MEASURED = "not measured in this run"


@dataclass
class Plot:
    """One plot of the report: drawn to path, or skipped with the reason."""

    name: str
    title: str
    caption: str = ""
    path: Path | None = None
    skipped: str | None = None


# fn(ctx) -> (figure, caption) or a string saying why the plot is skipped
PlotFn = Callable[[ReportContext], "tuple[Figure, str] | str"]
PLOTS: list[tuple[str, str, PlotFn]] = []


def plot(name: str, title: str):
    """Register a plot function under a file name and a title (the report's order is this order)."""
    def wrap(fn: PlotFn) -> PlotFn:
        PLOTS.append((name, title, fn))
        return fn
    return wrap


def new_figure(width: float = 7.0, height: float = 4.2, cols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = [fig.add_subplot(1, cols, i + 1) for i in range(cols)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def log_if_spread(ax, values, axis: str = "x", ratio: float = 20.0) -> bool:
    """Log scale on `axis` when the positive values span more than `ratio`x, so one slow option does
    not flatten the rest; ticks stay plain numbers (1, 10, 100), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    v = [float(x) for x in values if x is not None and x == x and x > 0]
    if not v or max(v) / min(v) <= ratio:
        return False
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    # 1-2-5 ticks while the span is a few decades, so a reader can read values off the axis.
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if max(v) / min(v) < 1e4 else (1.0,)))
    target.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.6g}"))
    target.set_minor_formatter(NullFormatter())
    return True


def label_of(model: str, variant: str | None, among=None) -> str:
    """'card:llama-5m', 'onnx-int4' -> 'llama-5m/onnx-int4'. With `among` (every model of the run),
    the model's name is the one the option ids use, unique among them ('./a/tiny' -> 'a-tiny')."""
    from llmbench.recommend.naming import model_labels, short_model

    name = model_labels(list(among))[model] if among is not None and model in among else short_model(model)
    return f"{name}/{variant}" if variant else name


def draw_all(ctx: ReportContext, out_dir: Path) -> list[Plot]:
    """Every registered plot into out_dir/<name>.png; a plot whose data is missing is skipped
    with its reason, and one that fails to draw is skipped with the error (never the report)."""
    import llmbench.report.plots_latency  # noqa: F401 - importing registers the plots, in this order
    import llmbench.report.plots_decision  # noqa: F401
    import llmbench.report.plots_savings  # noqa: F401

    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name, title, fn in PLOTS:
        p = Plot(name, title)
        try:
            # Names are user text: drawn as plain text, never as mathtext or LaTeX (a "$" in a
            # candidate's name must not fail the plot). Drawing happens at savefig, so it is
            # inside the guard too.
            with rc_context({"text.parse_math": False, "text.usetex": False}):
                got = fn(ctx)
                if not isinstance(got, str):
                    fig, caption = got
                    path = out_dir / f"{name}.png"
                    tmp = path.with_suffix(".tmp.png")
                    fig.savefig(tmp, format="png")
                    tmp.replace(path)  # atomic, like every results file
                    p.path, p.caption = path, caption
        except Exception as exc:  # a plot is an aid; its failure is reported, not fatal
            got = f"could not be drawn ({type(exc).__name__}: {exc})"
        if isinstance(got, str):
            p.skipped = got
        done.append(p)
    return done
