"""`llmbench quantize MODEL --to int8|int4 [--block-size N] [--out DIR] [--json]`: build one variant."""
from __future__ import annotations

import json

import click


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


@click.command()
@click.argument("model")
@click.option("--to", "precision", type=click.Choice(["fp32", "int8", "int4"]), required=True,
              help="int8: dynamic (int8 weights); int4: weight-only MatMulNBits; fp32: plain ONNX export")
@click.option("--block-size", type=int, default=None, help="int4 block size (a power of two >= 16; default 32)")
@click.option("--embeddings/--no-embeddings", default=None,
              help="int8/int4: quantize the input embedding table too (default) or keep it float32")
@click.option("--out", type=click.Path(file_okay=False), help="also copy the variant into this folder (new or empty)")
@click.option("--force", is_flag=True, help="with --out: replace the files of a non-empty folder")
@click.option("--trust-remote-code", is_flag=True, help="allow the model's own code (transformers)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def quantize(model: str, precision: str, block_size: int | None, embeddings: bool | None, out: str | None, force: bool,
             trust_remote_code: bool, as_json: bool) -> None:
    """Build the ONNX variant of MODEL (a folder, hub id or card:NAME), cached for `llmbench run`.

    Prints its size against the source weights and the operator counts, and says plainly when the
    recipe quantized nothing.
    """
    from pathlib import Path

    from llmbench.errors import BadInput
    from llmbench.models.source import resolve
    from llmbench.optimizers.quantize.build import build_variant, check_out_folder, copy_variant

    if block_size is not None and precision != "int4":
        raise BadInput(f"--block-size applies to --to int4 only (got --to {precision})")
    if embeddings is not None and precision == "fp32":
        raise BadInput("--embeddings/--no-embeddings apply to --to int8 and int4 only")
    if force and not out:
        raise BadInput("--force applies to --out only")
    source = resolve(model, where="MODEL")
    target = Path(out) if out else None
    if target is not None:  # before building: a refusal must not cost a build
        if source.kind == "local" and Path(source.ref).resolve().is_relative_to(target.resolve()):
            raise BadInput(f"--out {out}: holds the source model {source.ref}; choose another folder")
        check_out_folder(target, force)
    log = (lambda s: click.echo(s, err=True))
    build = build_variant(source, f"onnx-{precision}", block_size=block_size, trust_remote_code=trust_remote_code,
                          log=log, embeddings=embeddings)
    folder = copy_variant(build, target, replace=force) if target is not None else build.path
    doc = {
        "model": source.name, "variant": build.variant, "path": str(folder), "cache_entry": str(build.path),
        "cache_hit": build.cache_hit, "build_s": build.build_s, "build_total_s": build.build_total_s,
        "size_bytes": build.size_bytes, "source_bytes": build.source_bytes, "size_ratio": build.size_ratio,
        "quantized_ops": build.ops.get("quantized", {}), "float_weight_layers": build.ops.get("float_weight_layers", {}),
        "ops": build.ops.get("ops", {}), "tables": build.ops.get("tables", {}), "note": build.note, "recipe": build.recipe,
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    ratio = f" ({build.size_ratio:.2f}x the source)" if build.size_ratio else ""
    click.echo(f"{build.variant} of {source.name}: {folder}")
    click.echo(f"  size     {_mb(build.size_bytes)} against {_mb(build.source_bytes)} of source weights{ratio}")
    click.echo(f"  built    {'reused from the cache' if build.cache_hit else f'in {build.build_s:.1f} s'}"
               f" (from the source: {build.build_total_s:.1f} s)")
    click.echo(f"  {build.note}")
    top = ", ".join(f"{op} {n}" for op, n in list(build.ops.get("ops", {}).items())[:12])
    click.echo(f"  operators: {top}")
