"""The run config: the smallest form works, every fault is one clear BadInput."""
import pytest

from llmbench.config import Batch, LengthDist, load_config, parse_config
from llmbench.errors import BadInput

SMALLEST = """
candidates:
  - model: {model}
    variants: [torch-fp32]
workload: {{prompt_tokens: 64, output_tokens: 16, requests: 8}}
scenarios: [single-stream]
hardware: cpu-2core
"""


def test_smallest_form_of_design_md(tmp_path, tiny_llama):
    f = tmp_path / "c.yaml"
    f.write_text(SMALLEST.format(model=tiny_llama))
    cfg, _ = load_config(f)
    assert cfg.candidates[0].variants == ["torch-fp32"]
    assert cfg.workload.prompt_tokens.value == 64 and cfg.workload.requests == 8
    assert cfg.scenarios[0].kind == "single-stream"


def test_embedded_default_has_the_reference_model_a_card_and_a_batch_sweep():
    cfg, _ = load_config(None)
    assert [c.name or c.card for c in cfg.candidates] == ["shakespeare-4m", "llama-50m"]
    # The default's paths are relative to the folder it ships in, whatever the working directory.
    from llmbench.models.reference import reference_dir

    assert cfg.candidates[0].model == str(reference_dir()) and cfg.candidates[1].card == "llama-50m"
    assert cfg.quality.golden_set.name == "shakespeare.jsonl" and cfg.quality.golden_set.is_file()
    assert any(isinstance(s, Batch) for s in cfg.scenarios)
    assert cfg.precision_pct == 2.0  # it asks for its 12 requests and for precision by name


@pytest.mark.parametrize("extra, expected", [
    ({}, 2.0),                                                    # nothing said: measure on to +-2%
    ({"workload": {"output_tokens": 4}}, 2.0),                    # a workload, but no count asked for
    ({"workload": {"requests": 6}}, None),                        # a count asked for is the count sent
    ({"workload": {"requests": 6}, "precision_pct": 5}, 5.0),     # unless precision is asked for too
    ({"workload": {"requests": 6}, "precision_pct": None}, None),
])
def test_an_explicit_request_count_turns_the_precision_loop_off(extra, expected):
    cfg = parse_config({"candidates": [{"model": "x"}], **extra}, "c.yaml")
    assert cfg.precision_pct == expected


@pytest.mark.parametrize(
    "data, where",
    [
        ({"candidates": [{"model": "x"}], "bogus": 1}, "bogus: unknown key"),
        ({"candidates": [{"model": "x", "variantz": []}]}, "candidates.0.variantz"),
        ({"candidates": []}, "candidates"),
        ({"candidates": [{"model": "x"}], "workload": {"requests": 0}}, "workload.requests"),
        ({"candidates": [{"model": "x"}], "workload": {"prompt_tokens": {"dist": "normal", "mean": 5}}}, "std"),
        ({"candidates": [{"model": "x"}], "scenarios": [{"kind": "warp-speed"}]}, "scenarios.0"),
        ({"candidates": [{"model": "x", "card": "y"}]}, "exactly one"),
        (["not", "a", "mapping"], "mapping"),
    ],
)
def test_bad_config_names_what_and_where(data, where):
    with pytest.raises(BadInput) as exc:
        parse_config(data, "cfg.yaml")
    assert where in str(exc.value) and str(exc.value).startswith("cfg.yaml")


def test_broken_yaml_gives_line(tmp_path):
    f = tmp_path / "b.yaml"
    f.write_text("candidates: [\n")
    with pytest.raises(BadInput, match="not valid YAML at line"):
        load_config(f)


def test_relative_model_path_is_relative_to_the_config(tmp_path, tiny_llama):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.yaml"
    f.write_text("candidates:\n  - model: ./m\n")
    cfg, _ = load_config(f)
    assert cfg.candidates[0].model == str(tmp_path / "sub" / "m")


def test_length_distributions_are_seeded_and_clipped():
    import numpy as np

    from llmbench.workload import sample_lengths

    spec = LengthDist(dist="lognormal", mean=100, sigma=1.0, min=10, max=300)
    a = sample_lengths(spec, 500, np.random.default_rng(1))
    assert a == sample_lengths(spec, 500, np.random.default_rng(1))
    assert min(a) >= 10 and max(a) <= 300 and 60 < np.median(a) < 160
    u = sample_lengths(LengthDist(dist="uniform", low=5, high=7), 100, np.random.default_rng(0))
    assert set(u) == {5, 6, 7}


def test_every_relative_file_path_is_relative_to_the_config(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("candidates: [{model: x/y}]\nplan: {trace: t.csv}\ncache: {log: l.jsonl, verifier: v.json}\n"
                 "compression: {prompts: p.txt}\nquality: {golden_set: g.jsonl}\n")
    for name in ("t.csv", "l.jsonl", "p.txt", "g.jsonl"):
        (tmp_path / name).write_text("x\n")
    from llmbench.optimizers.cache.profile import profile_path

    (tmp_path / "v.json").write_text(profile_path("default").read_text())
    cfg, _ = load_config(f)
    assert cfg.plan.trace == tmp_path / "t.csv" and cfg.cache.log == tmp_path / "l.jsonl"
    assert cfg.compression.prompts == tmp_path / "p.txt" and cfg.quality.golden_set == tmp_path / "g.jsonl"
    assert cfg.cache.verifier == tmp_path / "v.json"


def test_a_missing_input_file_is_bad_input_before_anything_runs(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("candidates: [{card: llama-5m}]\ncache: {log: gone.jsonl}\n")
    with pytest.raises(BadInput, match=r"c\.yaml: cache\.log: .*gone\.jsonl does not exist"):
        load_config(f)
    (tmp_path / "v.json").write_text('{"verifiers": {}}')
    f.write_text("candidates: [{card: llama-5m}]\ncache: {verifier: v.json}\n")
    with pytest.raises(BadInput, match=r"c\.yaml: cache\.verifier: .*v\.json is not a readable cache profile"):
        load_config(f)
