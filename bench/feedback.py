"""Human feedback joined to a run: ratings of its answers, summarised per variant.

A ratings file has one JSON object a line, naming what was rated by the run's `request_id` or by
`prompt_sha256` (requests.jsonl has both), who rated it (`rater`) and when (`timestamp`, optional):
- an absolute rating: `rating` (a number, any scale) of the answer of `request_id`, or of `variant`
  (and `model` where the run has several) for a `prompt_sha256`;
- a preference: `preferred` and `other` variants compared on one prompt (`prompt_sha256`, or the
  prompt of `request_id`).
Summarised per (model, variant): the mean rating with a bootstrap 95% interval, the win rate in
comparisons with a Wilson 95% interval, and where two raters rated the same items, their agreement
(share identical, Cohen's kappa). `recommend --quality-source feedback` reads it as the quality.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from pydantic import BaseModel, ValidationError, model_validator

from llmbench.errors import BadInput

FILE = "feedback.json"


class Rating(BaseModel, extra="forbid"):
    """One line of a ratings file."""

    rater: str
    timestamp: float | str | None = None
    request_id: int | None = None
    prompt_sha256: str | None = None
    model: str | None = None
    variant: str | None = None
    rating: float | None = None
    preferred: str | None = None
    other: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "Rating":
        if (self.request_id is None) == (self.prompt_sha256 is None):
            raise ValueError("name the rated answer by exactly one of request_id or prompt_sha256")
        if (self.rating is None) == (self.preferred is None):
            raise ValueError("give either a rating or a preference (preferred and other)")
        if self.preferred is not None and not self.other:
            raise ValueError("a preference needs both preferred and other")
        if self.rating is not None and not math.isfinite(self.rating):
            raise ValueError("a rating must be a finite number")
        if self.rating is not None and self.prompt_sha256 is not None and not self.variant:
            raise ValueError("a rating by prompt_sha256 needs the variant it rates")
        return self


def read_ratings(path: str | Path) -> list[Rating]:
    """The ratings of a file; BadInput naming the first bad line."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such ratings file")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Rating.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "not JSON"
            raise BadInput(f"{p}:{n}: {first}") from None
    if not out:
        raise BadInput(f"{p}: no ratings")
    return out


def _variant_key(models: set[str], variant: str, model: str | None, where: str) -> tuple[str, str]:
    if model is None and len(models) > 1:
        raise BadInput(f"{where}: the run has several models ({', '.join(sorted(models))}): name the model")
    return (model or next(iter(models)), variant)


def join(ratings: list[Rating], records: list, where: str) -> list[dict]:
    """Each rating with the (model, variant) it is about and its item (the prompt it rated); BadInput
    for an id, hash or variant the run does not have (one line naming the rating)."""
    by_id: dict[int, list] = defaultdict(list)
    for r in records:
        by_id[r.request_id].append(r)
    hashes = {r.prompt_sha256 for r in records if r.prompt_sha256}
    pairs = {(r.model, r.variant) for r in records}
    models = {m for m, _ in pairs}
    out = []
    for i, g in enumerate(ratings, 1):
        at = f"{where}: rating {i}"
        if g.request_id is not None:
            found = [r for r in by_id.get(g.request_id, []) if g.model in (None, r.model) and g.variant in (None, r.variant)]
            if not found:
                raise BadInput(f"{at}: request_id {g.request_id} is not in the run's requests.jsonl")
            if len(found) > 1:
                raise BadInput(f"{at}: request_id {g.request_id} names {len(found)} requests of the run: add model and variant")
            rec = found[0]
            item, model = rec.prompt_sha256 or f"request-{rec.request_id}", rec.model
        else:
            if g.prompt_sha256 not in hashes:
                raise BadInput(f"{at}: prompt_sha256 {g.prompt_sha256[:12]}... is not a prompt of the run")
            item, model = g.prompt_sha256, g.model
        if g.rating is not None:
            key = (rec.model, rec.variant) if g.request_id is not None else _variant_key(models, g.variant, model, at)
            keys = [key]
        else:
            keys = [_variant_key(models, v, model, at) for v in (g.preferred, g.other)]
        for k in keys:
            if k not in pairs:
                raise BadInput(f"{at}: the run measured no variant {k[1]} of {k[0]}")
        out.append({"rater": g.rater, "item": item, "rating": g.rating, "keys": keys})
    return out


def wilson(wins: int, n: int) -> list[float] | None:
    """Wilson score 95% interval of a win rate (None without comparisons)."""
    from scipy.stats import binomtest

    if n == 0:
        return None
    ci = binomtest(wins, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def mean_ci(values: list[float], seed: int = 0) -> list[float] | None:
    """Percentile-bootstrap 95% interval of a mean (None under two values or without spread)."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(values) < 2 or len(set(values)) == 1:
        return None if len(values) < 2 else [values[0], values[0]]
    ci = bootstrap((np.asarray(values, float),), np.mean, confidence_level=0.95, method="percentile",
                   random_state=np.random.default_rng(seed)).confidence_interval
    return [float(ci.low), float(ci.high)]


def _agreement(joined: list[dict]) -> list[dict]:
    """Per pair of raters on the items both judged: share of identical verdicts and Cohen's kappa."""
    from sklearn.metrics import cohen_kappa_score

    verdicts: dict[str, dict[tuple, str]] = defaultdict(dict)
    for j in joined:
        what = (j["item"], j["keys"][0]) if j["rating"] is not None else (j["item"], tuple(sorted(j["keys"])))
        verdicts[j["rater"]][what] = str(j["rating"]) if j["rating"] is not None else "/".join(j["keys"][0])
    out = []
    for a, b in combinations(sorted(verdicts), 2):
        common = sorted(set(verdicts[a]) & set(verdicts[b]), key=str)
        if len(common) < 2:
            continue
        x, y = [verdicts[a][c] for c in common], [verdicts[b][c] for c in common]
        kappa = float(cohen_kappa_score(x, y)) if len(set(x) | set(y)) > 1 else 1.0
        out.append({"raters": [a, b], "items": len(common), "agreement": sum(p == q for p, q in zip(x, y)) / len(common),
                    "cohen_kappa": kappa})
    return out


def summarise(joined: list[dict], seed: int = 0) -> dict:
    """Per variant: mean rating (bootstrap 95% CI), win rate (Wilson 95% CI); raters' agreement."""
    ratings: dict[tuple, list[float]] = defaultdict(list)
    wins: dict[tuple, int] = defaultdict(int)
    games: dict[tuple, int] = defaultdict(int)
    for j in joined:
        if j["rating"] is not None:
            ratings[j["keys"][0]].append(j["rating"])
        else:
            win, lose = j["keys"]
            wins[win] += 1
            games[win] += 1
            games[lose] += 1
    variants = {}
    for key in sorted(set(ratings) | set(games)):
        r = ratings.get(key, [])
        variants[f"{key[0]}|{key[1]}"] = {
            "model": key[0], "variant": key[1], "ratings": len(r),
            "mean_rating": sum(r) / len(r) if r else None,
            "mean_rating_ci95": mean_ci(r, seed),
            "comparisons": games.get(key, 0), "wins": wins.get(key, 0),
            "win_rate": wins.get(key, 0) / games[key] if games.get(key) else None,
            "win_rate_ci95": wilson(wins.get(key, 0), games.get(key, 0)),
        }
    return {"variants": variants, "rater_agreement": _agreement(joined),
            "raters": sorted({j["rater"] for j in joined}), "ratings": len(joined)}


def import_feedback(ratings_path: str | Path, run_dir: str | Path) -> dict:
    """Join a ratings file to a run and write RUN_DIR/feedback.json; the document."""
    from llmbench.results import RunDir, write_json

    if not Path(run_dir).is_dir():
        raise BadInput(f"{run_dir}: no such results folder")
    records = RunDir(Path(run_dir)).records()
    if not records:
        raise BadInput(f"{run_dir}: no requests.jsonl records to join the ratings to")
    doc = {"source": str(Path(ratings_path).resolve()), **summarise(join(read_ratings(ratings_path), records, str(ratings_path)))}
    write_json(Path(run_dir) / FILE, doc)
    return doc


def read_feedback(run_dir: str | Path) -> dict:
    """RUN_DIR/feedback.json; BadInput when `feedback import` has not written one."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        raise BadInput(f"{run_dir}: no {FILE}: run `llmbench feedback import RATINGS.jsonl {run_dir}` first")
    return json.loads(path.read_text())


def variant_quality(doc: dict, model: str, variant: str) -> tuple[float, str] | None:
    """A variant's quality from human feedback, as a share like the gate's: its win rate where it was
    compared, else its mean rating over the best-rated variant of its model's; None without feedback."""
    v = doc["variants"].get(f"{model}|{variant}")
    if v is None:
        return None
    if v["comparisons"]:
        return v["win_rate"], f"human feedback: won {v['wins']} of {v['comparisons']} comparisons"
    best = max(x["mean_rating"] for x in doc["variants"].values() if x["model"] == model and x["mean_rating"] is not None)
    if not best or best <= 0:
        return None
    return v["mean_rating"] / best, f"human feedback: mean rating {v['mean_rating']:.3g} of the best variant's {best:.3g} ({v['ratings']} ratings)"
