"""Config input that must be refused at validation (issues 13 and 20): one line naming what and where."""
import time

import pytest

from llmbench.config import load_config, parse_config
from llmbench.errors import BadInput
from llmbench.yamlsafe import load_yaml

ONE = {"candidates": [{"model": "x"}]}


def bad(data: dict, *needles: str) -> str:
    with pytest.raises(BadInput) as exc:
        parse_config(data, "cfg.yaml")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("cfg.yaml")
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("patch, needles", [
    ({"workload": {"requests": 1e9}}, ["workload.requests", "100000"]),
    ({"scenarios": [{"kind": "concurrency", "clients": [1e9]}]}, ["clients", "1024"]),
    ({"scenarios": [{"kind": "batch", "batch_sizes": [1e6]}]}, ["batch_sizes", "1024"]),
    ({"scenarios": [{"kind": "concurrency", "rates": [1e-6]}]}, ["rates", "0.01"]),
    ({"min_duration_s": float("inf")}, ["min_duration_s", "finite"]),
    ({"min_duration_s": 1e7}, ["min_duration_s", "86400"]),
    ({"seed": -1}, ["seed", "0"]),
    ({"workload": {"prompt_tokens": {"dist": "normal", "mean": 50, "std": -3}}}, ["std"]),
    ({"workload": {"prompt_tokens": {"dist": "fixed", "value": 50, "min": 10, "max": 5}}}, ["max (5) is below min (10)"]),
    ({"workload": {"prompt_tokens": {"dist": "lognormal", "mean": -5, "sigma": 0.5}}}, ["lognormal", "mean > 0"]),
    ({"hardware": {"name": "h", "usd_per_hour": float("inf")}}, ["hardware", "usd_per_hour"]),
    ({"plan": {"max_batch": 1_000_000}}, ["plan.max_batch", "1024"]),
])
def test_sizes_and_ranges_are_limited_at_validation(patch, needles):
    bad({**ONE, **patch}, *needles)


def test_duplicate_candidate_names_are_refused():
    msg = bad({"candidates": [{"model": "x", "name": "same"}, {"card": "llama-5m", "name": "same"}]}, "'same'")
    assert "candidates 0 and 1" in msg
    # the same model twice without names: the labels collide too
    bad({"candidates": [{"model": "x"}, {"model": "x"}]}, "both named 'x'")


@pytest.mark.parametrize("card", ["../../etc", "a/../../b", ".."])
def test_card_name_with_a_path_is_refused(card):
    bad({"candidates": [{"card": card}]}, "card name")
    bad({"candidates": [{"model": f"card:{card}"}]}, "card name")


def test_all_errors_are_listed_with_the_nearest_key():
    msg = bad({"candidates": [{"model": "x", "variantz": ["torch-fp32"]}], "sed": 3, "workload": {"request": 4}})
    assert msg.startswith("cfg.yaml: 3 problems: ")
    assert "candidates.0.variantz: unknown key (did you mean 'variants'?)" in msg
    assert "sed: unknown key (did you mean 'seed'?)" in msg
    assert "workload.request: unknown key (did you mean 'requests'?)" in msg
    assert "more" not in msg
    # a scenario's keys come from its own kind
    assert "did you mean 'batch_sizes'?" in bad({**ONE, "scenarios": [{"kind": "batch", "batch_size": [2]}]})


def test_a_card_candidate_read_back_from_run_json_validates():
    # run.json stores both model: card:X and card: X (issue 13 item 1).
    cfg, _ = load_config(None)
    again = parse_config(cfg.model_dump(mode="json"), "run.json")
    from llmbench.models.reference import reference_dir

    # The default's candidates: the shipped reference model (a folder) and a card.
    assert [c.model for c in again.candidates] == [str(reference_dir()), "card:llama-50m"]
    bad({"candidates": [{"model": "card:llama-5m", "card": "llama-50m"}]}, "exactly one")


def test_quality_null_turns_the_gate_off():
    assert parse_config({**ONE, "quality": None}, "c.yaml").quality.enabled is False
    assert parse_config({**ONE, "quality": {}}, "c.yaml").quality.enabled is True
    assert parse_config(ONE, "c.yaml").quality is None  # absent: the default gate


def test_duplicate_yaml_keys_are_refused(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("candidates:\n  - model: x\nseed: 1\nseed: 2\n")
    with pytest.raises(BadInput, match=r"line 4.*duplicate key 'seed' \(first at line 3\)"):
        load_config(f)
    # a merge key is not a duplicate
    assert load_yaml("base: &b {a: 1}\nx:\n  <<: *b\n  a: 2\n", "t") == {"base": {"a": 1}, "x": {"a": 2}}


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_at_once():
    assert len(BOMB) < 500
    t = time.perf_counter()
    with pytest.raises(BadInput, match="expands to more than"):
        load_yaml(BOMB, "bomb.yaml")
    assert time.perf_counter() - t < 2.0


def test_an_alias_bomb_in_a_hardware_profile_is_one_line(tmp_path):
    from llmbench.hardware_profiles import load_hardware

    f = tmp_path / "hw.yaml"
    f.write_text(BOMB + "name: x\nusd_per_hour: 1\n")
    with pytest.raises(BadInput, match="expands to more than"):
        load_hardware(str(f))
    f.write_text("name: x\nusd_per_hour: .inf\n")
    with pytest.raises(BadInput, match="usd_per_hour"):
        load_hardware(str(f))


@pytest.mark.parametrize("slo, ok", [("ttft_p95=500ms", True), ("e2el_p50=1s,tpot_p99=80ms", True), ("itl_p90=5ms", True),
                                     ("ttft_p96=500ms", False), ("ttft_p99.9=1s", False), ("ttft_p95=0ms", False)])
def test_only_computed_percentiles_are_accepted(slo, ok):
    from llmbench.slo import parse_slo
    from llmbench.stats import describe

    if ok:
        # every accepted percentile is a key describe() computes, so it can be judged
        assert all(f"p{s.percentile:g}" in describe([1.0, 2.0]) for s in parse_slo(slo))
    else:
        with pytest.raises(BadInput, match="slo"):
            parse_slo(slo, "slo")


def test_stage_lines_keep_bracketed_user_text_and_their_own_styles():
    from rich.console import Console

    from llmbench.commands.run import _StageConsole

    console = Console(record=True, width=200, color_system="truecolor")
    stage = _StageConsole(console)
    stage.print("[yellow]plan: skipped for tiny [/int4] and [int4][/yellow]")
    stage.print("failed: KeyError: ['x'] [/red]")
    text = console.export_text()
    assert "plan: skipped for tiny [/int4] and [int4]" in text and "[yellow]" not in text
    assert "failed: KeyError: ['x'] [/red]" in text
