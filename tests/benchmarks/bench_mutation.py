"""Mutation testing of the measurement, cost and decision modules: how many planted bugs the suite kills.

    .venv/bin/python tests/benchmarks/bench_mutation.py [--named-only | --generated-only]
        [--modules bench/stats.py ...] [--json OUT] [--work DIR [--survivors-again]]

Two parts, both on a clone of HEAD in a temporary folder (the working tree is never touched):
1. Named mutants: the plausible bugs that reviews planted by hand (issue 20), each applied alone,
   then the tests of that module run. Every one must be killed.
2. Generated mutants: cosmic-ray (installed into its own virtual environment, so its dependencies
   never meet the project's pins) mutates each module in turn and runs that module's tests.
   Score = killed / (killed + survived); goal at least 85%. Equivalent mutants (they cannot change
   behaviour: mutation_equivalent.py lists each with its reason, and skips mutants inside
   never-evaluated annotations; lines marked `# pragma: no mutate` likewise) are counted apart;
   so are incompetent mutants (the mutation itself fails) and timeouts (counted as killed,
   reported apart).

Each module's tests are the ones that exercise it (MODULES; no model but for scenarios/base): a mutant
costs one pytest start (~1 s, no plugin autoload) plus those tests, and each module's baseline run must
be green first. The seven decision modules took about 75 min on the shared 2-core VM (BENCHMARKS.md).
With --work DIR the results stay; --survivors-again then re-tests only the survivors and runs what is left
(a module edited since keeps the results of its unchanged lines: mutation_carry.py). Not part of CI.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import subprocess
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from mutation_carry import carry_results
from mutation_equivalent import equivalent_reason, skip_annotation_mutants

ROOT = Path(__file__).resolve().parents[2]

# module -> pytest arguments selecting the tests that exercise it (files relative to the project
# root, optionally "-k", expr). Chosen to be fast: no model, no planner simulation where the module
# does not need one (a mutant's run is one pytest start plus these tests).
MODULES: dict[str, list[str]] = {
    "bench/stats.py": ["tests/test_stats.py", "tests/test_metrics.py"],
    "bench/metrics.py": ["tests/test_metrics.py", "tests/test_stats.py"],
    "bench/slo.py": ["tests/test_slo.py", "tests/test_metrics.py"],
    "bench/recommend/options.py": ["tests/test_recommend_options.py"],
    "bench/recommend/choose.py": ["tests/test_recommend_choose.py"],
    "bench/export/servers.py": ["tests/test_export_servers.py"],
    "bench/planner/capacity.py": ["tests/test_planner_capacity_notes.py", "tests/test_planner_capacity.py"],  # fast one first
    # Hand-built simulations and an exact service model (2-3 s a run; with test_planner_capacity_notes.py 5-7 s).
    "bench/planner/search.py": ["tests/test_planner_search.py", "tests/test_planner_search_mutants.py"],
    "bench/recommend/derived.py": ["tests/test_recommend_derived.py"],  # unit tests; test_recommend_decide.py: 10 s a test
    # Scripted backend (exact token times), then the served closed loop on a loopback server; the tiny-model
    # warm-up tests took 24-40 s a run.
    "bench/scenarios/base.py": ["tests/test_scenarios_base.py", "tests/test_scenarios_served.py", "-k",
                                "test_scenarios_base or closed_loop_holds or precision_driven"],
    # The cache class itself (test_cache.py's fits and shipped-profile checks take minutes).
    "optimizers/cache/cache.py": ["tests/test_cache.py", "-k", "store or lru or ttl or policy or cache_ or insert or entry "
                                  "or byte_count or exact_repeats or threshold_is_a_hit"],
    # No model, no tokenizer: the tests on a tiny model (stage, verdicts, reference choice) take 4-55 s each.
    # test_quality_scripted.py: the stage end to end on a scripted backend family (2 s).
    "bench/quality.py": ["tests/test_quality_mutants.py", "tests/test_quality_scripted.py", "tests/test_quality.py", "-k",
                         "test_quality_mutants or test_quality_scripted or not (stage "
                         "or trained_model or identical_variant or without_torch_fp32 or only_the_reference "
                         "or cut_at_eos or reference_fails)"],
}

# (module, text as it is, text of the bug, what the bug means): the survivors issue 20 lists, at today's sites.
NAMED: list[tuple[str, str, str, str]] = [
    ("bench/stats.py", "CI_LEVEL = 0.95", "CI_LEVEL = 0.90", "a 90% interval labelled 95%"),
    ("bench/slo.py", "if value is not None and value > s.limit_ms:", "if value is not None and value >= s.limit_ms:",
     "an SLO met only strictly below its limit"),
    ("bench/quality.py", '"ok": figs[k] >= share}', '"ok": figs[k] > share}', "the quality gate passes only above the bar"),
    ("optimizers/cache/cache.py", "score >= self.rule.threshold", "score > self.rule.threshold",
     "a cache hit only strictly above the threshold"),
    ("bench/planner/search.py", "sim.utilization <= NO_SLO_UTILIZATION", "sim.utilization <= NO_SLO_UTILIZATION + 0.1",
     "no-SLO replicas sized past the headroom rule"),
    ("bench/recommend/options.py", "p_in * input_usd_per_1m + p_out * output_usd_per_1m",
     "p_in * output_usd_per_1m + p_out * input_usd_per_1m", "API cost with input/output prices swapped"),
    ("bench/export/servers.py", 'p_in, p_out = o.get("prompt_tokens_mean") or 0, o.get("output_tokens_mean") or 0',
     'p_out, p_in = o.get("prompt_tokens_mean") or 0, o.get("output_tokens_mean") or 0',
     "gateway per-token cost with prompt/output counts swapped"),
    ("bench/recommend/derived.py", "v * (1.0 - share) + comp_ms", "v * (1.0 + share) + comp_ms",
     "a compression saving added instead of subtracted"),
    ("bench/scenarios/base.py", "for i in range(count):", "for i in range(0):", "warm-up skipped (count ignored)"),
]


def sh(cmd: list[str], cwd: Path, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def overlay_venv(work: Path, clone: Path) -> Path:
    """A venv that sees the project's installed packages but imports llmbench from the clone."""
    venv = work / "venv"
    py = venv / "bin" / "python"
    if py.exists():  # a kept --work folder: the clone is at the same path, its editable install still points there
        return py
    sh([sys.executable, "-m", "venv", str(venv)], cwd=work).check_returncode()
    site = next((venv / "lib").glob("python*/site-packages"))
    main_site = next((ROOT / ".venv" / "lib").glob("python*/site-packages"))
    # A plain path line: the main venv's .pth files (its editable llmbench finder) are not run.
    (site / "main-venv.pth").write_text(f"{main_site}\n")
    py = venv / "bin" / "python"
    sh([str(py), "-m", "pip", "install", "-q", "setuptools>=68"], cwd=work).check_returncode()
    r = sh([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(clone)], cwd=work)
    if r.returncode:
        sys.exit(f"could not install the clone: {r.stderr.strip().splitlines()[-1:]}")
    return py


def test_command(py: Path, clone: Path, module: str) -> list[str]:
    """The pytest command line that runs `module`'s tests in the clone (globs expanded)."""
    args: list[str] = []
    for arg in MODULES[module]:
        found = sorted(glob.glob(str(clone / arg))) if arg.startswith("tests/") else []
        args += found or [arg]
    # No entry-point plugins (asyncio, anyio, randomly...): none of these tests needs one, and loading them is
    # half of a pytest start.
    return ["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", str(py), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]


def run_named(py: Path, clone: Path, timeout: float) -> list[dict]:
    out = []
    # A mutant counts as killed only when the same tests pass without it.
    def passes(module: str) -> bool:
        try:
            return sh(test_command(py, clone, module), cwd=clone, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    green = {m: passes(m) for m in {n[0] for n in NAMED}}
    for module, good, bad, meaning in NAMED:
        path = clone / module
        text = path.read_text()
        if not green[module]:
            out.append({"module": module, "bug": meaning, "result": "not judged: its tests fail (or time out) without the mutant"})
            print(f"  not judged {module}: its tests fail (or time out) without the mutant", flush=True)
            continue
        if good not in text:
            out.append({"module": module, "bug": meaning, "result": "site not found: update NAMED"})
            continue
        path.write_text(text.replace(good, bad, 1))
        try:
            r = sh(test_command(py, clone, module), cwd=clone, timeout=timeout)
            result = "survived" if r.returncode == 0 else "killed"
        except subprocess.TimeoutExpired:
            result = "killed (timeout)"
        finally:
            path.write_text(text)
        out.append({"module": module, "bug": meaning, "result": result})
        print(f"  {result:10s} {module}: {meaning}", flush=True)
    return out


def run_generated(py: Path, clone: Path, work: Path, module: str, timeout: float | None, again: bool = False) -> dict:
    """cosmic-ray on one module: {killed, survived, timeouts, incompetent, skipped, score, seconds}."""
    cr = work / "cosmic-ray"
    if not (cr / "bin" / "cosmic-ray").exists():
        sh([sys.executable, "-m", "venv", str(cr)], cwd=work).check_returncode()
        sh([str(cr / "bin" / "pip"), "install", "-q", "cosmic-ray==8.7.0"], cwd=work).check_returncode()
    cmd = test_command(py, clone, module)
    t0 = time.monotonic()
    base = sh(cmd, cwd=clone)
    baseline_s = time.monotonic() - t0
    if base.returncode:
        # A red (or empty) selection would count every mutant as killed.
        print(f"  {module}: not run, its tests fail without any mutant: {base.stdout.strip().splitlines()[-1:]}", flush=True)
        return {"module": module, "error": "tests fail without any mutant"}
    # A mutant that makes the tests loop is stopped at 10x the green run (counted as killed, shown apart).
    limit = timeout or max(30.0, 10 * baseline_s)
    name = module.replace("/", "_").removesuffix(".py")
    cfg = work / f"{name}.toml"
    cfg.write_text(
        f'[cosmic-ray]\nmodule-path = "{clone / module}"\ntimeout = {limit}\nexcluded-modules = []\n'
        f"test-command = {json.dumps(shlex.join(cmd))}\n\n[cosmic-ray.distributor]\nname = \"local\"\n"
    )
    db = work / f"{name}.sqlite"
    t0 = time.monotonic()
    exe = cr / "bin"
    source, now = work / f"{name}.source.py", (clone / module).read_text()  # the module the session was made on
    if again and db.exists():
        if source.exists() and source.read_text() != now:
            # Edited since: made again, with the results of mutants on unchanged lines (mutation_carry.py).
            old = db.with_suffix(".old.sqlite")
            db.replace(old)
            sh([str(exe / "cosmic-ray"), "init", str(cfg), str(db)], cwd=clone).check_returncode()
            carried, fresh = carry_results(old, db, source.read_text(), now)
            old.unlink()
            print(f"  {module} edited since its session: {carried} results carried over, {fresh} mutants without one", flush=True)
        # Only the survivors of the last run are tested again (against HEAD's tests now).
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    else:
        db.unlink(missing_ok=True)
        sh([str(exe / "cosmic-ray"), "init", str(cfg), str(db)], cwd=clone).check_returncode()
    source.write_text(now)
    # Equivalent mutants only: lines marked "# pragma: no mutate" (each says why), never-evaluated annotations.
    sh([str(exe / "cr-filter-pragma"), str(db)], cwd=clone).check_returncode()
    skip_annotation_mutants(db, clone / module)
    sh([str(exe / "cosmic-ray"), "exec", str(cfg), str(db)], cwd=clone).check_returncode()
    seconds = time.monotonic() - t0
    dump = sh([str(exe / "cosmic-ray"), "dump", str(db)], cwd=clone).stdout
    done = [json.loads(line) for line in dump.splitlines() if line.strip()]
    results = [r for _, r in done if r]
    skipped = sum(r["worker_outcome"] == "skipped" for r in results)
    timeouts = sum(r["test_outcome"] == "killed" and r.get("output") == "timeout" for r in results)
    killed = sum(r["test_outcome"] == "killed" for r in results)
    lived = [(w, r) for w, r in done if r and r["test_outcome"] == "survived"]
    def why(w: dict, r: dict) -> str | None:
        return equivalent_reason(module, r.get("diff"), w["mutations"][0].get("definition_name"))

    equivalent = [(w, r, why(w, r)) for w, r in lived if why(w, r)]
    survived = [(w, r) for w, r in lived if not why(w, r)]
    incompetent = sum(r["test_outcome"] == "incompetent" or r["worker_outcome"] in ("exception", "abnormal") for r in results)
    score = killed / (killed + len(survived)) if killed + len(survived) else None
    print(f"  {module}: {killed} killed ({timeouts} by timeout), {len(survived)} survived, {skipped} skipped and "
          f"{len(equivalent)} run as equivalent, "
          f"{incompetent} incompetent" + (f", score {score:.1%}" if score is not None else "")
          + f", {seconds:.0f} s ({baseline_s:.1f} s per green run)", flush=True)
    for w, r in survived:
        m = w["mutations"][0]
        print(f"    survived {m['operator_name']} at line {m['start_pos'][0]}: "
              + " | ".join(x for x in (r.get("diff") or "").splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")), flush=True)
    return {"module": module, "killed": killed, "timeouts": timeouts, "survived": len(survived), "skipped": skipped,
            "equivalent": [{"line": w["mutations"][0]["start_pos"][0], "why": why} for w, _, why in equivalent],
            "incompetent": incompetent, "score": score, "seconds": round(seconds), "baseline_s": round(baseline_s, 2),
            "survivors": [{"operator": w["mutations"][0]["operator_name"], "line": w["mutations"][0]["start_pos"][0],
                           "diff": r.get("diff")} for w, r in survived]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", nargs="*", default=list(MODULES), choices=list(MODULES))
    ap.add_argument("--named-only", action="store_true", help="only the hand-planted mutants (minutes)")
    ap.add_argument("--generated-only", action="store_true", help="only cosmic-ray's mutants")
    ap.add_argument("--timeout", type=float, help="seconds per mutant's test run (default: 10x the green run, 30 s at least)")
    ap.add_argument("--json", type=Path, help="write the result here")
    ap.add_argument("--work", type=Path, help="keep the venvs and results here between runs (default: a temporary folder)")
    ap.add_argument("--survivors-again", action="store_true",
                    help="with --work: test only the last run's survivors again (after adding tests)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory(prefix="llmbench-mutation-") as tmp:
        work = (a.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        clone = work / "clone"
        shutil.rmtree(clone, ignore_errors=True)  # always a fresh clone of HEAD
        sh(["git", "clone", "-q", "--local", str(ROOT), str(clone)], cwd=work).check_returncode()
        if not (work / "shared").exists():
            (work / "shared").symlink_to(ROOT.parent / "shared")  # tests read ../shared/data from the clone
        py = overlay_venv(work, clone)
        print("named mutants:", flush=True)
        result: dict = {"named": [] if a.generated_only else run_named(py, clone, a.timeout or 300.0), "generated": []}
        if not a.named_only:
            print("generated mutants (cosmic-ray):", flush=True)
            result["generated"] = [run_generated(py, clone, work, m, a.timeout, a.survivors_again) for m in a.modules]
        k = sum(g.get("killed", 0) for g in result["generated"])
        s = sum(g.get("survived", 0) for g in result["generated"])
        result["score"] = k / (k + s) if k + s else None
        result["named_killed"] = sum(n["result"].startswith("killed") for n in result["named"])
        print(json.dumps({"named_killed": result["named_killed"], "named": len(result["named"]), "score": result["score"]}))
        if a.json:
            a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
