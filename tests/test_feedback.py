"""`llmbench feedback import`: human ratings joined to a run's requests, figures recomputed by hand."""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.errors import BadInput
from llmbench.feedback import join, read_ratings, summarise, wilson
from llmbench.results import RunDir
from test_recommend_runs import cell, make_run, served


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = make_run(tmp_path_factory.mktemp("fb") / "run", [cell("m", "fp32", n=4), cell("m", "int4", n=4)])
    recs = [json.loads(line) for line in (path / "requests.jsonl").read_text().splitlines()]
    for i, r in enumerate(recs):  # ids unique in the run; the same four prompts for both variants
        r["request_id"], r["prompt_sha256"] = i, f"{i % 4:064x}"
    (path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path, recs


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_ratings_join_by_id_and_by_hash_and_summarise_by_hand(run, tmp_path):
    path, recs = run
    fp32 = [r for r in recs if r["variant"] == "fp32"]
    h = [f"{i:064x}" for i in range(4)]
    rows = [{"request_id": fp32[0]["request_id"], "rating": 4, "rater": "ann"},
            {"request_id": fp32[1]["request_id"], "rating": 5, "rater": "ann"},
            {"prompt_sha256": h[2], "variant": "int4", "rating": 2, "rater": "ann"},
            {"prompt_sha256": h[3], "variant": "int4", "rating": 3, "rater": "ann", "timestamp": "2026-12-01T10:00:00Z"},
            {"prompt_sha256": h[0], "preferred": "fp32", "other": "int4", "rater": "ann"},
            {"prompt_sha256": h[1], "preferred": "fp32", "other": "int4", "rater": "ann"},
            {"prompt_sha256": h[2], "preferred": "int4", "other": "fp32", "rater": "ann"},
            {"prompt_sha256": h[0], "preferred": "fp32", "other": "int4", "rater": "bob"},
            {"prompt_sha256": h[1], "preferred": "int4", "other": "fp32", "rater": "bob"},
            {"prompt_sha256": h[2], "preferred": "int4", "other": "fp32", "rater": "bob"}]
    got = CliRunner().invoke(main, ["feedback", "import", _write(tmp_path / "r.jsonl", rows), str(path), "--json"])
    assert got.exit_code == 0, got.output
    doc = json.loads(got.stdout)
    assert json.loads((path / "feedback.json").read_text()) == doc and doc["ratings"] == 10 and doc["raters"] == ["ann", "bob"]
    f, q = doc["variants"]["m|fp32"], doc["variants"]["m|int4"]
    assert (f["ratings"], f["mean_rating"], q["ratings"], q["mean_rating"]) == (2, 4.5, 2, 2.5)
    # fp32 won 3 of 6 comparisons (ann: 2 of 3, bob: 1 of 3); int4 the other 3.
    assert (f["comparisons"], f["wins"], f["win_rate"]) == (6, 3, 0.5) and (q["wins"], q["win_rate"]) == (3, 0.5)
    # Wilson 95% at 3 of 6, by its formula.
    z, p, n = 1.959963984540054, 0.5, 6
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert f["win_rate_ci95"] == pytest.approx([centre - half, centre + half])
    lo, hi = f["mean_rating_ci95"]
    assert 4.0 <= lo <= 4.5 <= hi <= 5.0  # a bootstrap of [4, 5]: its resampled means lie between them
    # ann and bob judged the same three pairs: they agree on 2 of 3 (prompts 0 and 2); kappa by hand:
    # ann says fp32, fp32, int4; bob fp32, int4, int4 -> p_o = 2/3, p_e = (2/3)(1/3) + (1/3)(2/3) = 4/9.
    (a,) = doc["rater_agreement"]
    assert a["raters"] == ["ann", "bob"] and a["items"] == 3 and a["agreement"] == pytest.approx(2 / 3)
    assert a["cohen_kappa"] == pytest.approx((2 / 3 - 4 / 9) / (1 - 4 / 9))


def test_unknown_ids_hashes_variants_and_bad_lines_are_one_line_exit_2(run, tmp_path):
    path, recs = run
    cases = {
        "request_id 999999 is not in the run's requests.jsonl": {"request_id": 999999, "rating": 3, "rater": "a"},
        "is not a prompt of the run": {"prompt_sha256": "ab" * 32, "variant": "fp32", "rating": 3, "rater": "a"},
        "the run measured no variant int8 of m": {"prompt_sha256": f"{0:064x}", "preferred": "int8", "other": "fp32", "rater": "a"},
        "exactly one of request_id or prompt_sha256": {"rating": 3, "rater": "a"},
        "either a rating or a preference": {"request_id": recs[0]["request_id"], "rater": "a"},
    }
    for i, (message, row) in enumerate(cases.items()):
        got = CliRunner().invoke(main, ["feedback", "import", _write(tmp_path / f"{i}.jsonl", [row]), str(path)])
        assert got.exit_code == 2 and message in got.stderr and "Traceback" not in got.stderr, (message, got.stderr)
        assert len(got.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.jsonl").write_text('{"request_id": 0, "rating": 3, "rater": "a"}\nnot json\n')
    got = CliRunner().invoke(main, ["feedback", "import", str(tmp_path / "bad.jsonl"), str(path)])
    assert got.exit_code == 2 and "bad.jsonl:2: not JSON" in got.stderr
    got = CliRunner().invoke(main, ["feedback", "import", str(tmp_path / "none.jsonl"), str(path)])
    assert got.exit_code == 2 and "no such ratings file" in got.stderr


def test_several_models_need_the_model_named(tmp_path):
    path = make_run(tmp_path / "run", [cell("a", "fp32", n=2), cell("b", "fp32", n=2)])
    recs = [json.loads(line) for line in (path / "requests.jsonl").read_text().splitlines()]
    h = "cd" * 32
    (path / "requests.jsonl").write_text("".join(json.dumps({**r, "prompt_sha256": h}) + "\n" for r in recs))
    ratings = read_ratings(_write(tmp_path / "r.jsonl", [{"prompt_sha256": h, "variant": "fp32", "rating": 1, "rater": "x"}]))
    with pytest.raises(BadInput, match="several models"):
        join(ratings, RunDir(path).records(), "r.jsonl")
    # make_run numbers requests per cell: an id two cells share needs its model and variant.
    by_id = read_ratings(_write(tmp_path / "i.jsonl", [{"request_id": 0, "rating": 1, "rater": "x"}]))
    with pytest.raises(BadInput, match="names 2 requests of the run: add model and variant"):
        join(by_id, RunDir(path).records(), "i.jsonl")
    named_id = read_ratings(_write(tmp_path / "j.jsonl", [{"request_id": 0, "model": "a", "variant": "fp32", "rating": 2, "rater": "x"}]))
    assert summarise(join(named_id, RunDir(path).records(), "j.jsonl"))["variants"]["a|fp32"]["mean_rating"] == 2
    named = read_ratings(_write(tmp_path / "n.jsonl", [{"prompt_sha256": h, "model": "b", "variant": "fp32", "rating": 1, "rater": "x"}]))
    assert summarise(join(named, RunDir(path).records(), "n.jsonl"))["variants"]["b|fp32"]["ratings"] == 1
    assert wilson(0, 0) is None


def test_recommend_takes_quality_from_feedback_and_honours_the_floor(tmp_path):
    # Two served variants of one model: q4 is three times faster (so cheaper), f16 the better one.
    path = make_run(tmp_path / "run", [served("m", "gguf-f16", ttft_ms=300, tpot_ms=30), served("m", "gguf-q4_0", ttft_ms=100, tpot_ms=10)])
    recs = [json.loads(line) for line in (path / "requests.jsonl").read_text().splitlines()]
    for i, r in enumerate(recs):
        r["request_id"], r["prompt_sha256"] = i, f"{i % 8:064x}"
    (path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    # f16 preferred in 6 of 8 comparisons: win rates 0.75 and 0.25.
    rows = [{"prompt_sha256": f"{i:064x}", "preferred": "gguf-f16" if i < 6 else "gguf-q4_0",
             "other": "gguf-q4_0" if i < 6 else "gguf-f16", "rater": "ann"} for i in range(8)]
    assert CliRunner().invoke(main, ["feedback", "import", _write(tmp_path / "r.jsonl", rows), str(path)]).exit_code == 0
    chosen = lambda rec: next(o for o in rec["options"] if o["id"] == rec["choice"]["chosen"])  # noqa: E731
    gate = CliRunner().invoke(main, ["recommend", str(path), "--rps", "0.5", "--quality-floor", "0.5", "--json"])
    assert gate.exit_code == 0, gate.stderr
    assert chosen(json.loads(gate.stdout))["variant"] == "gguf-q4_0"  # no gate figures: the cheaper one
    fb = CliRunner().invoke(main, ["recommend", str(path), "--rps", "0.5", "--quality-floor", "0.5", "--quality-source",
                                   "feedback", "--json"])
    assert fb.exit_code == 0, fb.stderr
    rec = json.loads(fb.stdout)
    c = chosen(rec)
    assert c["variant"] == "gguf-f16" and c["quality"] == 0.75 and c["quality_status"] == "measured"
    assert any("won 6 of 8 comparisons" in n for n in c["notes"])
    q4 = next(o for o in rec["options"] if o["variant"] == "gguf-q4_0")
    verdict = next(v for v in rec["choice"]["verdicts"] if v["id"] == q4["id"])
    assert q4["quality"] == 0.25 and verdict["status"] == "rejected" and verdict["reasons"] == ["quality 0.250 < floor 0.5"]
    (path / "feedback.json").unlink()
    missing = CliRunner().invoke(main, ["recommend", str(path), "--quality-source", "feedback"])
    assert missing.exit_code == 2 and "feedback import" in missing.stderr
