"""The requests a run sends: synthetic lengths, a versioned dataset, or versioned templates."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from llmbench.config import LengthDist, Workload
from llmbench.errors import BadInput
from llmbench.jsonl import read_jsonl_lines


@dataclass
class Prompt:
    """One request to send: its token ids, output length, and where it came from."""

    ids: list[int]
    output_tokens: int
    text: str | None = None
    template: str | None = None
    template_version: str | None = None
    dataset: str | None = None

    @property
    def length_chars(self) -> int:
        return len(self.text) if self.text is not None else 0


def sample_lengths(spec: int | LengthDist, n: int, rng: np.random.Generator) -> list[int]:
    """Draw n token lengths from a fixed value or a distribution, clipped to [min, max]."""
    if isinstance(spec, int):
        return [spec] * n
    if spec.dist == "fixed":
        raw = np.full(n, spec.value, dtype=float)
    elif spec.dist == "uniform":
        raw = rng.integers(spec.low, spec.high + 1, size=n).astype(float)
    elif spec.dist == "normal":
        raw = rng.normal(spec.mean, spec.std, size=n)
    else:  # lognormal with the given arithmetic-scale median `mean`
        raw = rng.lognormal(np.log(spec.mean), spec.sigma, size=n)
    hi = spec.max if spec.max is not None else np.inf
    return [int(x) for x in np.clip(np.rint(raw), spec.min, hi)]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_jsonl(path: Path, what: str) -> list[dict]:
    """The objects of a JSONL file; BadInput naming the file and line on any fault."""
    return [rec for _, rec in read_jsonl_lines(path, what)]


class _SafeDict(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def _templates(workload: Workload) -> list[tuple[str, str, str]]:
    """(template name, version, text) for each filled template, in order."""
    spec = workload.templates
    assert spec is not None
    if not spec.file.is_file():
        raise BadInput(f"templates file {str(spec.file)!r} does not exist")
    try:
        table = yaml.safe_load(spec.file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInput(f"templates file {spec.file}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(table, dict) or not table:
        raise BadInput(f"templates file {spec.file}: expected a mapping of name -> {{system, user}}")
    names = spec.use or list(table)
    variables = read_jsonl(spec.variables, "template variables")
    out = []
    for name in names:
        entry = table.get(name)
        if not isinstance(entry, dict) or "user" not in entry:
            raise BadInput(f"templates file {spec.file}: template {name!r} is missing or has no 'user'")
        version = str(entry.get("version", name.rsplit("_v", 1)[1] if "_v" in name else "1"))
        for n, var in enumerate(variables, 1):
            try:
                parts = [entry.get("system", ""), entry["user"].format_map(_SafeDict(var))]
            except KeyError as exc:
                raise BadInput(f"template {name!r}: variable {exc} missing in {spec.variables}:{n}") from None
            out.append((name.rsplit("_v", 1)[0] if "_v" in name else name, version, "\n".join(p for p in parts if p)))
    return out


def build_prompts(workload: Workload, tokenizer, seed: int) -> list[Prompt]:
    """The run's requests, tokenised with the candidate's own tokenizer (exact prompt lengths)."""
    rng = np.random.default_rng(seed)
    outs = sample_lengths(workload.output_tokens, workload.requests, rng)
    if workload.dataset is not None:
        return _dataset_prompts(workload, tokenizer, outs)
    if workload.templates is not None:
        filled = _templates(workload)
        return [
            Prompt(ids=tokenizer(text)["input_ids"], output_tokens=outs[i % len(outs)], text=text, template=name, template_version=ver)
            for i, (name, ver, text) in enumerate(filled)
        ]
    lengths = sample_lengths(workload.prompt_tokens, workload.requests, rng)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    vocab = np.array([i for i in range(min(len(tokenizer), 50_000)) if i not in special])
    prompts = []
    for length, out in zip(lengths, outs):
        ids = rng.choice(vocab, size=length).tolist()
        prompts.append(Prompt(ids=ids, output_tokens=out, text=tokenizer.decode(ids)))
    return prompts


def dataset_identity(workload: Workload) -> dict | None:
    """Name, version and sha256 of the dataset, for run.json (None for synthetic workloads)."""
    spec = workload.dataset
    if spec is None:
        return None
    if not spec.path.is_file():
        raise BadInput(f"workload.dataset.path {str(spec.path)!r} does not exist")
    digest = sha256_of(spec.path)
    if spec.sha256 and spec.sha256 != digest:
        raise BadInput(f"workload.dataset: {spec.path} has sha256 {digest[:12]}..., the config pins {spec.sha256[:12]}...")
    return {"name": spec.name or spec.path.stem, "version": spec.version, "sha256": digest, "path": str(spec.path)}


def _dataset_prompts(workload: Workload, tokenizer, outs: list[int]) -> list[Prompt]:
    spec = workload.dataset
    ident = dataset_identity(workload)
    rows = read_jsonl(spec.path, "dataset")
    prompts = []
    for n, row in enumerate(rows[: workload.requests], 1):
        text = row.get(spec.field)
        if not isinstance(text, str) or not text:
            raise BadInput(f"dataset {spec.path}:{n}: no string field {spec.field!r}")
        out = int(row.get("output_tokens", outs[(n - 1) % len(outs)]))
        prompts.append(Prompt(ids=tokenizer(text)["input_ids"], output_tokens=out, text=text, dataset=f"{ident['name']}@{ident['version']}"))
    return prompts


def validate_workload(workload: Workload) -> None:
    """Checks that need the files, done before measuring (missing or empty files are bad input)."""
    if workload.dataset is not None:
        dataset_identity(workload)
        read_jsonl(workload.dataset.path, "dataset")
    if workload.templates is not None:
        _templates(workload)
