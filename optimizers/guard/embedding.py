"""The embedding guard: a logistic model over MiniLM + n-gram features, loaded from a shipped fit.

A fit may carry rules (regex patterns, the rules guard's kind) checked first: a prompt that a
pattern matches is flagged without the model; the threshold was chosen with those flags counted,
so the cascade as a whole keeps the target false-positive rate. The patterns are copied into the
fit's json, so the threshold always goes with the rules it was chosen for.

The features are the mean-pooled output of MiniLM's first `layers` layers (encoder.py: an int8
onnxruntime graph, about a millisecond a prompt) and hashed character n-grams (features.py).
The fit is data, not a pickle: profiles/guard/embedding.npz holds the weights (float32) and
embedding.json the layer count, the threshold, how it was fitted and which rows of the training
file it saw (sha256 prefixes), so an evaluation can tell fit rows from held-out ones.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmbench.errors import BadInput
from llmbench.optimizers.guard.base import Verdict
from llmbench.optimizers.guard.features import EMBED_DIM, HASH_WIDTH, hasher, ngram_rows
from llmbench.optimizers.guard.rules import RulesGuard, compile_patterns


def shipped_fit() -> Path:
    """The fit that ships with llmbench (its .json; the weights sit beside it as .npz)."""
    return Path(__file__).resolve().parents[2] / "profiles" / "guard" / "embedding.json"


def row_key(text: str) -> str:
    """How a fit row is remembered: the first 16 hex digits of its text's sha256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class EmbeddingGuard:
    """Flags a prompt that a rule matches (when the fit has rules) or whose logit
    (w . [MiniLM's first layers | n-grams] + b) is above the fit's threshold."""

    layers: int
    coef_embed: np.ndarray
    coef_ngram: np.ndarray
    intercept: float
    threshold: float
    meta: dict
    stage: str = "pre"
    name: str = "embedding"
    rules: RulesGuard | None = None
    _enc: object = field(default=None, repr=False)
    _hv: object = field(default=None, repr=False)

    def load(self) -> None:
        """Load the encoder (building its cached graph if need be) once, before anything is timed."""
        if self._enc is None:
            from llmbench.optimizers.guard.encoder import LayerEncoder

            enc = LayerEncoder(self.layers)
            enc.load()
            self._enc, self._hv = enc, hasher()

    def score(self, text: str) -> float:
        """The logit for one prompt."""
        self.load()
        emb = self._enc.encode(text)
        grams = ngram_rows([text], self._hv)
        return float(emb @ self.coef_embed + (grams @ self.coef_ngram)[0] + self.intercept)

    def check(self, text: str) -> Verdict:
        """Flag on a rule match (score None, detail 'rules:ID': the model is not run) or a logit above the threshold."""
        if self.rules is not None:
            hit = self.rules.check(text)
            if hit.flagged:
                return Verdict(True, None, f"rules:{hit.detail}")
        s = self.score(text)
        return Verdict(s > self.threshold, s, None)

    @property
    def fit_rows(self) -> set[str]:
        """row_key of every prompt the model was fitted on (threshold chosen on them too)."""
        return set(self.meta.get("fit_rows", []))

    def describe(self) -> dict:
        """Kind, threshold and the fit's provenance (without the row list)."""
        rules = None if self.rules is None else {"name": self.rules.name, "version": self.rules.version,
                                                 "rules": [r for r, _ in self.rules.patterns]}
        return {"kind": "embedding", "layers": self.layers, "threshold": self.threshold, "rules_first": rules,
                "fit": {k: v for k, v in self.meta.items() if k not in ("fit_rows", "rules")}}


def save_fit(path: Path, layers: int, coef: np.ndarray, intercept: float, threshold: float, meta: dict) -> None:
    """Write a fit: weights to path.npz, layer count, threshold and meta to path (.json)."""
    path = Path(path).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path.with_suffix(".npz"), coef_embed=coef[:EMBED_DIM].astype(np.float32),
                        coef_ngram=coef[EMBED_DIM:].astype(np.float32))
    doc = {"layers": int(layers), "intercept": round(float(intercept), 8), "threshold": round(float(threshold), 8),
           **meta}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load_fit(path: Path | None = None, stage: str = "pre", threshold: float | None = None) -> EmbeddingGuard:
    """Read a fit written by save_fit (default: the shipped one); BadInput when it is missing or malformed."""
    path = Path(path or shipped_fit()).with_suffix(".json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        with np.load(path.with_suffix(".npz")) as z:
            ce, cn = z["coef_embed"].astype(np.float64), z["coef_ngram"].astype(np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInput(f"{path}: not a readable embedding-guard fit ({type(exc).__name__}: {exc})") from None
    if ce.shape != (EMBED_DIM,) or cn.shape != (HASH_WIDTH,):
        raise BadInput(f"{path}: weights of shape {ce.shape}+{cn.shape}, expected ({EMBED_DIM},)+({HASH_WIDTH},)")
    if not isinstance(doc.get("layers"), int) or not 1 <= doc["layers"] <= 6:
        raise BadInput(f"{path}: 'layers' (MiniLM layers used, 1-6) missing or out of range: refit it with "
                       "python -m llmbench.optimizers.guard.fit --out")
    meta = {k: v for k, v in doc.items() if k not in ("layers", "intercept", "threshold")}
    thr = float(doc["threshold"]) if threshold is None else float(threshold)
    rules = None
    if doc.get("rules") is not None:  # a fit without rules (older, or --no-rules) is the model alone
        r = doc["rules"]
        rules = RulesGuard(str(r.get("name")), str(r.get("version")), compile_patterns(r.get("patterns"), path), stage)
    return EmbeddingGuard(doc["layers"], ce, cn, float(doc["intercept"]), thr, meta, stage, rules=rules)


def build(spec) -> EmbeddingGuard:
    """The guard of a `{kind: embedding}` block."""
    return load_fit(spec.model, spec.stage, spec.threshold)
