"""Versioned datasets and prompt templates."""
import hashlib
import json

import pytest

from llmbench.config import parse_config
from llmbench.errors import BadInput
from llmbench.models.tokenizer import load_shipped_tokenizer
from llmbench.workload import build_prompts, dataset_identity, validate_workload


@pytest.fixture(scope="module")
def tok():
    return load_shipped_tokenizer()


def cfg(workload):
    return parse_config({"candidates": [{"model": "x"}], "workload": workload}, "c.yaml").workload


def test_dataset_is_recorded_with_name_version_and_sha(tmp_path, tok):
    f = tmp_path / "ds.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"question {i}?"}) + "\n" for i in range(5)))
    wl = cfg({"dataset": {"path": str(f), "name": "faq", "version": "1.2.0"}, "requests": 3})
    ident = dataset_identity(wl)
    assert ident["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest() and ident["version"] == "1.2.0"
    prompts = build_prompts(wl, tok, 0)
    assert len(prompts) == 3 and prompts[0].dataset == "faq@1.2.0" and prompts[0].ids


def test_dataset_sha_mismatch_and_empty_file_are_bad_input(tmp_path):
    f = tmp_path / "ds.jsonl"
    f.write_text('{"prompt": "a"}\n')
    with pytest.raises(BadInput, match="sha256"):
        dataset_identity(cfg({"dataset": {"path": str(f), "sha256": "0" * 64}}))
    f.write_text("\n")
    with pytest.raises(BadInput, match="empty"):
        validate_workload(cfg({"dataset": {"path": str(f)}}))


def test_templates_carry_name_and_version(tmp_path, tok):
    (tmp_path / "t.yaml").write_text(
        'support_v1: {system: "Be brief.", user: "Q: {query}"}\n'
        'support_v2: {system: "You are a support agent.", user: "Context: {context}\\nQuestion: {query}"}\n')
    (tmp_path / "vars.jsonl").write_text('{"query": "reset password?", "context": "Accounts page"}\n')
    wl = cfg({"templates": {"file": str(tmp_path / "t.yaml"), "variables": str(tmp_path / "vars.jsonl")}, "requests": 2})
    prompts = build_prompts(wl, tok, 0)
    assert [(p.template, p.template_version) for p in prompts] == [("support", "1"), ("support", "2")]
    assert "Context: Accounts page" in prompts[1].text and len(prompts[1].ids) > len(prompts[0].ids)


def test_template_variable_missing_is_bad_input(tmp_path):
    (tmp_path / "t.yaml").write_text('a_v1: {user: "{missing}"}\n')
    (tmp_path / "vars.jsonl").write_text('{"query": "x"}\n')
    with pytest.raises(BadInput, match="missing"):
        validate_workload(cfg({"templates": {"file": str(tmp_path / "t.yaml"), "variables": str(tmp_path / "vars.jsonl")}}))


def test_synthetic_prompts_have_exact_lengths(tok):
    prompts = build_prompts(cfg({"prompt_tokens": 40, "output_tokens": 5, "requests": 4}), tok, 0)
    assert [len(p.ids) for p in prompts] == [40] * 4 and all(p.output_tokens == 5 for p in prompts)
