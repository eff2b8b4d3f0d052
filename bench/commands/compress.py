"""`llmbench compress PROMPTS`: LLMLingua compression, counted in the target model's tokens."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from llmbench.errors import BadInput

_RANDOM_NOTE = (
    "the compressor has random weights: which tokens it drops is arbitrary, so the compressed "
    "text says nothing about quality; token counts and latency are real"
)


def _unescape(token: str) -> str:
    # Shells cannot easily pass a newline: let "\n" and "\t" mean them.
    return token.replace("\\n", "\n").replace("\\t", "\t")


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


_TABLE_SUFFIXES = {".csv", ".tsv", ".xlsx", ".parquet"}


def read_prompts(path: Path) -> list:
    """PROMPTS as prompts: a JSON array (of strings or {"prompt": ...} objects), one JSON object, JSONL,
    or plain text (one prompt). A table file is refused rather than compressed as one long prompt."""
    from llmbench.files import read_input_text
    from llmbench.optimizers.compress.prompts import Prompt, _prompt_from, load_prompts

    if path.suffix.lower() in _TABLE_SUFFIXES:
        raise BadInput(f"prompts file {str(path)!r}: a {path.suffix} table is not read as prompts; give a text file "
                       "(one prompt), JSONL (one {\"prompt\": ...} per line) or a JSON array of prompts")
    if not path.is_file():
        return load_prompts(path)  # its own one-line error for a missing file or a folder
    text = read_input_text(path, "prompts file")
    head = text.lstrip()[:1]
    if head in ("[", "{") or path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            if path.suffix.lower() == ".json":
                raise BadInput(f"prompts file {str(path)!r}: not valid JSON ({exc})") from None
            return load_prompts(path)  # JSONL, or plain text that starts with a bracket ("[INST] ...")
        items = doc if isinstance(doc, list) else [doc]
        if not items:
            raise BadInput(f"prompts file {str(path)!r}: the JSON array is empty")
        out = []
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(doc, list) else str(path)
            if isinstance(item, str) and item.strip():
                out.append(Prompt(context=item))
            elif isinstance(item, dict):
                out.append(_prompt_from(item, where))
            else:
                raise BadInput(f"{where}: each prompt must be a non-empty string or an object with \"prompt\"")
        return out
    return load_prompts(path)


def _totals(rows: list) -> dict:
    origin = sum(r.origin_tokens for r in rows)
    compressed = sum(r.compressed_tokens for r in rows)
    latency = sum(r.latency_ms for r in rows)
    return {
        "prompts": len(rows),
        "origin_tokens": origin,
        "compressed_tokens": compressed,
        "ratio": round(origin / max(compressed, 1), 3),
        "latency_ms": round(latency, 2),
        "tokens_per_s": round(origin / (latency / 1000), 1) if latency > 0 else None,
    }


@click.command()
@click.argument("prompts", type=click.Path(path_type=Path))
@click.option("--rate", type=float, default=None, help="keep this share of the prompt's tokens (0 < R <= 1; default 0.5)")
@click.option("--target-tokens", type=int, default=None, help="compress to about N tokens (instead of --rate)")
@click.option("--model", "model", default=None, help="compressor: a local causal LM folder, hub id or card:NAME (default card:llama-5m)")
@click.option("--target", "target", default=None, help="count tokens with this model's tokenizer, or tiktoken:ENCODING (default: the compressor's)")
@click.option("--force-token", "force_tokens", multiple=True, help="text to keep whatever it costs (repeatable; \\n means newline)")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="write compressed prompts here (text, or JSONL for several)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def compress(
    prompts: Path,
    rate: float | None,
    target_tokens: int | None,
    model: str | None,
    target: str | None,
    force_tokens: tuple[str, ...],
    out: Path | None,
    as_json: bool,
) -> None:
    """Compress PROMPTS (a text file, or JSONL with "prompt"/"text" and optional
    "instruction"/"context"/"question") with LLMLingua and a local model, offline."""
    from llmbench.optimizers.compress.compressor import DEFAULT_MODEL

    if rate is not None and target_tokens is not None:
        raise BadInput("give --rate or --target-tokens, not both")
    if rate is None and target_tokens is None:
        rate = 0.5
    if rate is not None and not 0 < rate <= 1:
        raise BadInput(f"--rate must be in (0, 1], got {rate}")
    if target_tokens is not None and target_tokens < 1:
        raise BadInput(f"--target-tokens must be at least 1, got {target_tokens}")
    if out is not None and not out.parent.is_dir():
        raise BadInput(f"--out: folder {str(out.parent)!r} does not exist")
    items = read_prompts(prompts)
    forced = tuple(_unescape(t) for t in force_tokens)

    from llmbench.models.source import resolve

    source = resolve(model or DEFAULT_MODEL, where="--model")
    target_tok = None
    if target is not None:
        from llmbench.optimizers.compress.counting import load_tokenizer

        target_tok = load_tokenizer(target, where="--target")
    compressor = _load(source.path(), target_tok, source.name)

    rows = []
    for item in items:
        try:
            rows.append(compressor.compress(item, rate=rate, target_tokens=target_tokens, force_tokens=forced))
        except ValueError as exc:  # a prompt the compressor's tokenizer cannot handle
            raise BadInput(f"{prompts}: prompt {len(rows) + 1}: {exc}") from None

    if out is not None:
        if len(rows) == 1 and len(items) == 1 and prompts.suffix.lower() not in {".jsonl", ".ndjson"}:
            _write_atomically(out, rows[0].compressed_prompt)
        else:
            _write_atomically(out, "".join(json.dumps({"prompt": r.compressed_prompt}) + "\n" for r in rows))

    about = {
        "model": source.name,
        "target_tokenizer": target or source.name,
        "rate_requested": rate,
        "target_tokens_requested": target_tokens,
        "force_tokens": list(forced),
        "load_ms": round(compressor.load_ms, 1),
        "random_weights": source.random_weights,
    }
    if source.random_weights:
        about["note"] = _RANDOM_NOTE
    if out is not None:
        about["out"] = str(out)
    with_text = out is None
    if as_json:
        if len(rows) == 1:
            doc = {**rows[0].as_dict(with_text), **about}
        else:
            doc = {"prompts": [r.as_dict(with_text) for r in rows], "totals": _totals(rows), **about}
        click.echo(json.dumps(doc))
        return
    _print_human(rows, about, with_text)


def _load(path: str, target_tok, name: str):
    from llmbench.optimizers.compress.compressor import Compressor

    click.echo(f"loading compressor {name} ...", err=True)
    try:
        return Compressor(path, target_tokenizer=target_tok)
    except Exception as exc:  # a model folder that exists but does not load is a failure, not bad input
        click.echo(f"error: cannot load compressor model {name!r}: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def _print_human(rows: list, about: dict, with_text: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    console = Console()
    table = Table(title=escape(f"LLMLingua with {about['model']} (tokens: {about['target_tokenizer']})"))
    for col in ("#", "original", "compressed", "ratio", "latency ms", "tokens/s"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows, start=1):
        tps = r.tokens_per_s
        table.add_row(str(i), str(r.origin_tokens), str(r.compressed_tokens), f"{r.ratio:.2f}x",
                      f"{r.latency_ms:.1f}", "-" if tps is None else f"{tps:.0f}")
    console.print(table)
    console.print(f"compressor load and warm-up: {about['load_ms']:.0f} ms (not in the latencies)")
    if "note" in about:
        console.print(f"[yellow]note:[/yellow] {escape(str(about['note']))}")
    if about.get("out"):
        console.print(f"compressed prompts written to {escape(str(about['out']))}")
    elif with_text:
        for i, r in enumerate(rows, start=1):
            if len(rows) > 1:
                console.print(f"--- prompt {i} ---", style="bold")
            click.echo(r.compressed_prompt)
