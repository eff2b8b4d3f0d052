"""The verifier: a logistic model over pair features that says whether a cached entry answers a query.

It is stored as plain numbers (feature names, standardisation, coefficients, intercept), never as
a pickle, so the shipped default is data that can be read, diffed and loaded without sklearn.
Only candidates at or above `floor` cosine are considered at all: the model is fitted on that
region, where a fixed threshold has to make its hard calls.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmbench.optimizers.cache.embedder import TokenVectors
from llmbench.optimizers.cache.features import FEATURE_NAMES, TOKEN_FEATURE_NAMES, pair_features, token_features


@dataclass
class Verifier:
    """A fitted logistic model over candidate features; see `probabilities`."""

    name: str
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    floor: float

    @property
    def uses_tokens(self) -> bool:
        """Whether the model needs token vectors (then the embedder must provide them)."""
        return any(n in TOKEN_FEATURE_NAMES for n in self.feature_names)

    def features(self, query: str, query_tokens: TokenVectors | None, entry: str,
                 entry_tokens: TokenVectors | None, cosine: float) -> np.ndarray:
        """The model's feature vector for one (query, cached entry) pair."""
        row = pair_features(entry, query, cosine)
        if self.uses_tokens:
            if query_tokens is None or entry_tokens is None:
                raise ValueError(f"verifier {self.name} needs token vectors for both texts")
            row += token_features(entry_tokens.vectors, entry_tokens.content,
                                  query_tokens.vectors, query_tokens.content)
        return np.asarray(row[: len(self.feature_names)], dtype=np.float64)

    def probabilities(self, x: np.ndarray, cosines: np.ndarray) -> np.ndarray:
        """P(same meaning) for feature rows x; 0 where the cosine is below the floor."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return np.where(np.asarray(cosines) >= self.floor, p, 0.0)

    def to_dict(self) -> dict:
        """A JSON-ready description of the model."""
        return {"name": self.name, "floor": self.floor, "features": list(self.feature_names),
                "mean": [round(float(v), 8) for v in self.mean], "scale": [round(float(v), 8) for v in self.scale],
                "coef": [round(float(v), 8) for v in self.coef], "intercept": round(float(self.intercept), 8)}

    @classmethod
    def from_dict(cls, d: dict) -> "Verifier":
        """Load a model written by `to_dict`; the feature names must be ones this code computes."""
        names = tuple(d["features"])
        known = FEATURE_NAMES + TOKEN_FEATURE_NAMES
        if names != known[: len(names)]:
            raise ValueError(f"verifier {d.get('name')}: features {names} do not match this version's {known}")
        arrays = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(names),) for a in arrays):
            raise ValueError(f"verifier {d.get('name')}: coefficient lengths do not match its features")
        return cls(str(d["name"]), names, arrays[0], arrays[1], arrays[2], float(d["intercept"]), float(d["floor"]))


def _constrained_logistic(x: np.ndarray, y: np.ndarray, signs: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """L2 logistic regression (sklearn's objective: C x log-loss + |w|^2 / 2, intercept free) with each
    weight held to its sign (+1: >= 0, -1: <= 0, 0: free). L-BFGS-B from zeros: deterministic."""
    from scipy.optimize import minimize

    n, f = x.shape
    ys = np.where(y > 0, 1.0, -1.0)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:f], theta[f]
        z = ys * (x @ w + b)
        # log(1 + exp(-z)) and its derivative, stable for large |z|
        lse = np.logaddexp(0.0, -z)
        g = -ys * np.exp(-np.logaddexp(0.0, z))  # d/d(xw+b) of log(1+exp(-z))
        value = c * lse.sum() + 0.5 * w @ w
        grad = np.empty(f + 1)
        grad[:f] = c * (x.T @ g) + w
        grad[f] = c * g.sum()
        return float(value), grad

    bounds = [(0.0, None) if s > 0 else (None, 0.0) if s < 0 else (None, None) for s in signs] + [(None, None)]
    res = minimize(loss, np.zeros(f + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-10})
    return res.x[:f].copy(), float(res.x[f])


def fit_verifier(x: np.ndarray, y: np.ndarray, cosines: np.ndarray, floor: float, name: str,
                 c: float = 0.3, use_tokens: bool = True) -> Verifier:
    """Fit a standardised L2 logistic regression on the pairs at or above `floor` cosine.

    Each weight keeps the sign FEATURE_SIGNS gives its feature, so a pair that is more alike on
    any feature never scores lower: an identical pair scores at least as high as any other of its
    length. (Unconstrained, collinear sameness features took negative weights and refused exact
    repeats at strict targets.)
    """
    from llmbench.optimizers.cache.features import FEATURE_SIGNS

    width = len(FEATURE_NAMES) + (len(TOKEN_FEATURE_NAMES) if use_tokens else 0)
    x = np.asarray(x, dtype=np.float64)[:, :width]
    keep = np.asarray(cosines) >= floor
    xk, yk = x[keep], np.asarray(y)[keep]
    if len(set(yk.tolist())) < 2:
        raise ValueError(f"need both labels at or above cosine {floor} to fit a verifier")
    mean = xk.mean(axis=0)
    scale = xk.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature contributes nothing rather than dividing by zero
    names = (FEATURE_NAMES + TOKEN_FEATURE_NAMES)[:width]
    signs = np.array([FEATURE_SIGNS[n] for n in names], dtype=np.int64)
    coef, intercept = _constrained_logistic((xk - mean) / scale, yk, signs, c)
    return Verifier(name, names, mean, scale, coef, intercept, floor)
