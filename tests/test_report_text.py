"""User text in the report (candidate names, error messages): drawn and written as plain text,
never as markup; a plot that fails to draw never takes the report with it."""
from __future__ import annotations

import html as htmlmod
import re

from llmbench.report import figures
from llmbench.report.build import build_report
from llmbench.report.markdown import escape
from test_recommend_runs import cell, make_run

ODD = "tiny $x_$ *b* [int4] <i>|_"


def test_a_dollar_name_draws_every_plot_and_keeps_the_name(tmp_path):
    run = make_run(tmp_path / "run", [cell(ODD), cell(ODD, batch=4), cell("plain", "onnx-int8")])
    got = build_report(run)
    # mathtext would fail on "$x^2$ *b*"-style names or render them as math; plain text draws them.
    assert {"latency_throughput", "ttft_tpot", "cost_per_1k", "pareto"} <= set(got["plots"]), got["skipped"]
    assert not any("could not be drawn" in why for why in got["skipped"].values()), got["skipped"]
    page = (run / "report.html").read_text()
    assert htmlmod.escape(f"{ODD}/torch-fp32") in page


def test_report_md_escapes_user_text(tmp_path):
    run = make_run(tmp_path / "run", [cell(ODD), cell("plain")])
    build_report(run)
    md = (run / "report.md").read_text()
    # The name appears only escaped: every markup character carries a backslash.
    expected = r"tiny \$x\_\$ \*b\* \[int4\] \<i\>\|\_/torch-fp32"
    assert expected in md
    assert f"{ODD}/torch-fp32" not in md
    # A table row keeps its column count: the escaped "|" does not split the cell.
    row = next(line for line in md.splitlines() if line.startswith("| " + expected))
    header = next(line for line in md.splitlines() if line.startswith("| option | point |"))
    assert len(re.findall(r"(?<!\\)\|", row)) == len(re.findall(r"(?<!\\)\|", header))


def test_escape_round_trips_through_a_markdown_reader():
    # Unescaping CommonMark's backslash escapes gives the original text back.
    text = "a*b_c [d](e) <f> `g` $h$ |i| ~j~ &k; #l !m {n}"
    assert re.sub(r"\\(.)", r"\1", escape(text)) == text


def test_a_plot_failing_at_save_is_skipped_not_fatal(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *a, **k):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(Figure, "savefig", broken)
    run = make_run(tmp_path / "run", [cell("m")])
    got = build_report(run)
    assert got["plots"] == [] and "latency_throughput" in got["skipped"]
    assert got["skipped"]["latency_throughput"] == "could not be drawn (RuntimeError: renderer broke)"
    assert "renderer broke" in (run / "report.md").read_text()


def test_report_command_prints_skip_reasons_as_written(tmp_path):
    from click.testing import CliRunner

    from llmbench.cli import main

    run = make_run(tmp_path / "[bold]run[/bold]", [cell("m")])
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    # rich would swallow "[bold]" as markup; the folder's real name is printed.
    assert f"wrote {run}/report.md" in res.stderr
