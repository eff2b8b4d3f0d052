"""Workload input checked before measuring (issues 13 and 20): templates, dataset lines, prompt records."""
import hashlib
import json
import time

import pytest

from llmbench.config import parse_config
from llmbench.errors import BadInput
from llmbench.models.tokenizer import load_shipped_tokenizer
from llmbench.workload import build_prompts, fill, validate_workload


def wl(workload: dict):
    return parse_config({"candidates": [{"model": "x"}], "workload": workload}, "c.yaml").workload


@pytest.mark.parametrize("template", ["Q: {query:>200000000}", "Q: {query.nope}", "Q: {0}", "Q: {query[9]}",
                                      "Q: {query!r}", "Q: {}", "Q: {query"])
def test_templates_take_plain_name_fields_only(template):
    t = time.perf_counter()
    with pytest.raises(BadInput, match="template 't'"):
        fill(template, {"query": "hello"}, "template 't'")
    assert time.perf_counter() - t < 1.0  # refused, not allocated


def test_plain_fields_and_literal_braces_fill():
    assert fill("{{json}} Q: {query} / {query}", {"query": "hi"}, "t") == "{json} Q: hi / hi"


def test_a_format_spec_template_is_bad_input_before_measuring(tmp_path):
    (tmp_path / "t.yaml").write_text('a_v1: {user: "Q: {query:>200000000}"}\n')
    (tmp_path / "v.jsonl").write_text('{"query": "x"}\n')
    with pytest.raises(BadInput, match="not a plain"):
        validate_workload(wl({"templates": {"file": str(tmp_path / "t.yaml"), "variables": str(tmp_path / "v.jsonl")}}))


def test_an_alias_bomb_in_a_templates_file_is_refused(tmp_path):
    from test_input_config import BOMB

    (tmp_path / "t.yaml").write_text(BOMB + 'a_v1: {user: "Q: {query}"}\n')
    (tmp_path / "v.jsonl").write_text('{"query": "x"}\n')
    with pytest.raises(BadInput, match="expands to more than"):
        validate_workload(wl({"templates": {"file": str(tmp_path / "t.yaml"), "variables": str(tmp_path / "v.jsonl")}}))


def test_a_dataset_line_without_the_prompt_field_names_file_and_line(tmp_path):
    f = tmp_path / "ds.jsonl"
    f.write_text('{"prompt": "fine"}\n\n{"question": "where is my order?"}\n')
    with pytest.raises(BadInput) as exc:
        validate_workload(wl({"dataset": {"path": str(f)}, "requests": 5}))
    assert f"{f}:3: no string field 'prompt'" in str(exc.value) and "'question'" in str(exc.value)


@pytest.mark.parametrize("value", ["NaN", '"many"', "-5", "0", "2.5", "true", "1e9"])
def test_a_bad_per_row_output_length_is_bad_input(tmp_path, value):
    f = tmp_path / "ds.jsonl"
    f.write_text('{"prompt": "a", "output_tokens": 3}\n' + '{"prompt": "b", "output_tokens": %s}\n' % value)
    with pytest.raises(BadInput, match=rf"{f.name}:2: 'output_tokens' must be a whole number"):
        validate_workload(wl({"dataset": {"path": str(f)}, "requests": 2}))


def test_a_huge_one_line_prompt_is_refused_without_tokenising(tmp_path):
    f = tmp_path / "big.jsonl"
    f.write_text(json.dumps({"prompt": "x" * 2_000_000}) + "\n")
    with pytest.raises(BadInput, match=r"big.jsonl:1: the prompt is 2,000,000 characters \(limit 1,000,000\)"):
        validate_workload(wl({"dataset": {"path": str(f)}}))


def test_prompt_text_is_recorded_only_when_allowed(tmp_path):
    tok = load_shipped_tokenizer()
    f = tmp_path / "ds.jsonl"
    f.write_text('{"prompt": "how do I reset my password?", "output_tokens": 4}\n')
    kept = build_prompts(wl({"dataset": {"path": str(f)}, "requests": 1, "record_prompts": True}), tok, 0)[0]
    hidden = build_prompts(wl({"dataset": {"path": str(f)}, "requests": 1}), tok, 0)[0]
    digest = hashlib.sha256("how do I reset my password?".encode()).hexdigest()
    assert kept.recorded_text == "how do I reset my password?" and kept.sha256 == digest and kept.output_tokens == 4
    assert hidden.recorded_text is None and hidden.sha256 == digest
