"""The requests a run sends: synthetic lengths, a versioned dataset, or versioned templates."""
from __future__ import annotations

import hashlib
import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmbench.config import MAX_TOKENS, LengthDist, Workload
from llmbench.errors import BadInput
from llmbench.files import read_input_text
from llmbench.jsonl import read_jsonl_lines
from llmbench.yamlsafe import load_yaml

# One prompt's text: far above any context window, far below what would exhaust memory when
# tokenised (a 50 MB one-line dataset is refused with its line number, not tokenised whole).
MAX_PROMPT_CHARS = 1_000_000


@dataclass
class Prompt:
    """One request to send: its token ids, output length, and where it came from."""

    ids: list[int]
    output_tokens: int
    text: str | None = None
    template: str | None = None
    template_version: str | None = None
    dataset: str | None = None
    record_text: bool = False  # workload.record_prompts: the text goes into requests.jsonl
    arrival_s: float | None = None  # workload.log: logged arrival, seconds after the log's first request

    @property
    def length_chars(self) -> int:
        return len(self.text) if self.text is not None else 0

    @property
    def recorded_text(self) -> str | None:
        """The text a request record keeps (`prompt`), only when the config allows it."""
        return self.text if self.record_text else None

    @property
    def sha256(self) -> str | None:
        """sha256 of the prompt text (`prompt_sha256`): repeats are visible without the text."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest() if self.text is not None else None


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


def fill(template: str, values: dict, where: str) -> str:
    """Substitute plain `{name}` fields; `{{`/`}}` are literal braces. Anything else is bad input.

    str.format would also run format specs (`{query:>200000000}` allocates gigabytes), attribute
    access (`{query.nope}`), positional fields (`{0}`) and indexing (`{query[9]}`).
    """
    out = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise BadInput(f"{where}: {exc} (write a literal brace as {{{{ or }}}})") from None
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise BadInput(f"{where}: {shown[:60]!r} is not a plain {{name}} field (no format specs, "
                           "attributes, indexes or positions)")
        if field not in values:
            raise KeyError(field)
        out.append(str(values[field]))
    return "".join(out)


def _templates(workload: Workload) -> list[tuple[str, str, str]]:
    """(template name, version, text) for each filled template, in order."""
    spec = workload.templates
    assert spec is not None
    table = load_yaml(read_input_text(spec.file, "templates file"), f"templates file {spec.file}")
    if not isinstance(table, dict) or not table:
        raise BadInput(f"templates file {spec.file}: expected a mapping of name -> {{system, user}}")
    names = spec.use or list(table)
    variables = read_jsonl(spec.variables, "template variables")
    out = []
    for name in names:
        entry = table.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), str):
            raise BadInput(f"templates file {spec.file}: template {str(name)[:80]!r} is missing or has no 'user' text")
        if not isinstance(entry.get("system", ""), str):
            raise BadInput(f"templates file {spec.file}: template {str(name)[:80]!r}: 'system' must be text")
        version = str(entry.get("version", name.rsplit("_v", 1)[1] if "_v" in name else "1"))
        for n, var in enumerate(variables, 1):
            try:
                parts = [entry.get("system", ""), fill(entry["user"], var, f"template {name!r}")]
            except KeyError as exc:
                raise BadInput(f"template {name!r}: variable {exc} missing in {spec.variables}:{n}") from None
            text = "\n".join(p for p in parts if p)
            if len(text) > MAX_PROMPT_CHARS:
                raise BadInput(f"template {name!r} filled from {spec.variables}:{n} is {len(text):,} characters "
                               f"(limit {MAX_PROMPT_CHARS:,})")
            out.append((name.rsplit("_v", 1)[0] if "_v" in name else name, version, text))
    return out


def build_prompts(workload: Workload, tokenizer, seed: int) -> list[Prompt]:
    """The run's requests, tokenised with the candidate's own tokenizer (exact prompt lengths)."""
    rng = np.random.default_rng(seed)
    outs = sample_lengths(workload.output_tokens, workload.requests, rng)
    keep = workload.record_prompts
    if workload.dataset is not None:
        return _dataset_prompts(workload, tokenizer, outs)
    if workload.log is not None:
        return _log_prompts(workload, tokenizer, rng)
    if workload.templates is not None:
        filled = _templates(workload)
        return [
            Prompt(ids=tokenizer(text)["input_ids"], output_tokens=outs[i % len(outs)], text=text, template=name,
                   template_version=ver, record_text=keep)
            for i, (name, ver, text) in enumerate(filled)
        ]
    lengths = sample_lengths(workload.prompt_tokens, workload.requests, rng)
    vocab = prompt_vocab(tokenizer)
    prompts = []
    for length, out in zip(lengths, outs):
        ids = rng.choice(vocab, size=length).tolist()
        prompts.append(Prompt(ids=ids, output_tokens=out, text=tokenizer.decode(ids), record_text=keep))
    return prompts


def text_reading_back(tokenizer, ids: list[int], length: int) -> tuple[list[int], str]:
    """(ids, text) whose text the tokenizer reads back as exactly those ids, at most `length` of them.
    Random token ids decoded to text tokenise again into more tokens (224 became 250-255; a
    lognormal workload's prompts read about 12% longer): a server sent the text would process more
    than the workload says. The ids are cut by what the text grew until it reads back."""
    for _ in range(8):
        text = tokenizer.decode(ids)
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(got) <= length:
            return got, text
        ids = ids[:max(1, len(ids) - (len(got) - length))]
    return ids[:1], tokenizer.decode(ids[:1])


def prompt_vocab(tokenizer) -> np.ndarray:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return np.array([i for i in range(min(len(tokenizer), 50_000)) if i not in special])


def _log_prompts(workload: Workload, tokenizer, rng: np.random.Generator) -> list[Prompt]:
    """The log's requests: its text where kept, else random tokens of the logged length; its arrivals."""
    from llmbench.monitor.log_workload import log_requests

    vocab = None
    name = f"log {workload.log.name}" if workload.log is not None else None
    prompts = []
    for req in log_requests(workload):
        if req.text is not None:
            ids, text = tokenizer(req.text)["input_ids"], req.text
        else:
            vocab = prompt_vocab(tokenizer) if vocab is None else vocab
            ids = rng.choice(vocab, size=req.prompt_tokens).tolist()
            text = tokenizer.decode(ids)
        prompts.append(Prompt(ids=ids, output_tokens=req.output_tokens, text=text, dataset=name,
                              record_text=workload.record_prompts, arrival_s=req.arrival_s))
    return prompts


def dataset_identity(workload: Workload) -> dict | None:
    """Name, version and sha256 of the dataset, for run.json (None for synthetic workloads)."""
    spec = workload.dataset
    if workload.log is not None:
        from llmbench.monitor.log_workload import log_identity

        return log_identity(workload)
    if spec is None:
        return None
    if not spec.path.is_file():
        raise BadInput(f"workload.dataset.path {str(spec.path)!r} does not exist")
    digest = sha256_of(spec.path)
    if spec.sha256 and spec.sha256 != digest:
        raise BadInput(f"workload.dataset: {spec.path} has sha256 {digest[:12]}..., the config pins {spec.sha256[:12]}...")
    return {"name": spec.name or spec.path.stem, "version": spec.version, "sha256": digest, "path": str(spec.path)}


def _output_tokens(value, where: str) -> int:
    # A row's own output length: a whole number of tokens, 1 .. MAX_TOKENS (NaN, "many", -5 and 0
    # would fail the cell, or worse, be measured as something else).
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if not ok or not 1 <= value <= MAX_TOKENS:
        raise BadInput(f"{where}: 'output_tokens' must be a whole number from 1 to {MAX_TOKENS:,}, got {value!r}"[:300])
    return int(value)


def dataset_rows(workload: Workload) -> list[tuple[str, int | None]]:
    """(prompt text, its own output length or None) for the rows a run sends; BadInput by file and line."""
    spec = workload.dataset
    assert spec is not None
    rows = read_jsonl_lines(spec.path, "dataset")
    out = []
    for no, row in rows[: workload.requests]:
        where = f"dataset {spec.path}:{no}"
        text = row.get(spec.field)
        if not isinstance(text, str) or not text:
            others = ", ".join(repr(k) for k in list(row)[:5])
            raise BadInput(f"{where}: no string field {spec.field!r} (the line has {others or 'no fields'}; "
                           "set workload.dataset.field to use another)")
        if len(text) > MAX_PROMPT_CHARS:
            raise BadInput(f"{where}: the prompt is {len(text):,} characters (limit {MAX_PROMPT_CHARS:,})")
        out.append((text, _output_tokens(row["output_tokens"], where) if "output_tokens" in row else None))
    return out


def _dataset_prompts(workload: Workload, tokenizer, outs: list[int]) -> list[Prompt]:
    ident = dataset_identity(workload)
    name = f"{ident['name']}@{ident['version']}"
    return [Prompt(ids=tokenizer(text)["input_ids"], output_tokens=out if out is not None else outs[n % len(outs)],
                   text=text, dataset=name, record_text=workload.record_prompts)
            for n, (text, out) in enumerate(dataset_rows(workload))]


def validate_workload(workload: Workload, replay: bool = False) -> None:
    """Checks that need the files, done before measuring (missing or empty files, bad lines, bad templates).

    `replay`: a scenario sends the log's arrivals, so they must be spread over time."""
    if workload.log is not None:
        from llmbench.monitor.log_workload import validate_log

        validate_log(workload, replay)
    if workload.dataset is not None:
        dataset_identity(workload)
        dataset_rows(workload)
    if workload.templates is not None:
        _templates(workload)
