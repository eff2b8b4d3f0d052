"""Build one ONNX variant of a model source, or reuse it from the variant cache.

onnx-fp32 is exported from the source; onnx-int8 and onnx-int4 are quantized from the (cached)
onnx-fp32 entry, so asking for both exports once.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmbench.errors import BadInput
from llmbench.models.source import ModelSource
from llmbench.optimizers.quantize.opcount import count_ops, describe
from llmbench.optimizers.quantize.recipes import Recipe, onnx_recipe
from llmbench.optimizers.quantize.sources import folder_digest, model_folder, weights_bytes
from llmbench.optimizers.quantize.store import Entry, VariantStore, cache_key, library_versions

MODEL_FILE = "model.onnx"
ONNX_SUFFIXES = (".onnx", ".onnx_data", ".data")


@dataclass
class VariantBuild:
    """A built variant: where it is and what it is (the facts the summary and the CLI show)."""

    variant: str
    path: Path
    key: str
    recipe: dict
    cache_hit: bool
    build_s: float          # this step only (quantizing, or exporting for fp32), when it was built
    build_total_s: float    # from the source: export plus this step
    size_bytes: int         # ONNX files of the variant
    source_bytes: int       # weight files of the source
    ops: dict
    note: str
    rebuilt_corrupt: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def size_ratio(self) -> float | None:
        return round(self.size_bytes / self.source_bytes, 4) if self.source_bytes else None

    def facts(self) -> dict:
        """Flat facts for run.json's per-variant record (backend.info.extra)."""
        return {
            "variant_path": str(self.path), "cache_hit": self.cache_hit, "build_s": self.build_s,
            "build_total_s": self.build_total_s, "source_bytes": self.source_bytes, "size_ratio": self.size_ratio,
            "quantized_ops": self.ops.get("quantized", {}), "float_weight_layers": self.ops.get("float_weight_layers", {}),
            "lookup_tables": self.ops.get("tables", {}), "quantize_note": self.note, "recipe": self.recipe, "fusion": self.extra.get("graph", {}).get("fusion"),
        }


def onnx_size(folder: Path) -> int:
    """Bytes of the ONNX graph and weight files in a variant folder."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix in ONNX_SUFFIXES)


def check_causal_lm(folder: Path, trust_remote_code: bool = False) -> None:
    """BadInput (one line) unless transformers reads `folder`'s config as a causal LM it can export."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as exc:  # ValueError (unknown model type, remote code refused), OSError, JSON errors
        first = str(exc).strip().split("\n")[0].split(". ")[0]
        raise BadInput(f"model {folder}: transformers cannot read its config.json ({first})") from None
    if getattr(config, "auto_map", None) and trust_remote_code:
        return  # the model's own code: only the export itself can tell
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise BadInput(f"model {folder}: model type {config.model_type!r} is not a causal language model "
                       "(no text-generation head to export)")
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX export configs)
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(config.model_type.replace("_", "-"), "onnx",
                                                                library_name="transformers")
    except KeyError:
        tasks = {}
    if "text-generation-with-past" not in tasks:
        raise BadInput(f"model {folder}: optimum-onnx has no text-generation ONNX export for model type "
                       f"{config.model_type!r}; its torch variants still run")


def _from_entry(entry: Entry, hit: bool, problem: str | None) -> VariantBuild:
    m = entry.manifest
    return VariantBuild(
        variant=m["variant"], path=entry.path, key=m["key"], recipe=m["recipe"], cache_hit=hit,
        build_s=m["build_s"], build_total_s=m.get("build_total_s", m["build_s"]), size_bytes=onnx_size(entry.path),
        source_bytes=m.get("source_bytes", 0), ops=m.get("ops", {}), note=m.get("note", ""), rebuilt_corrupt=problem,
        extra={"graph": m.get("graph") or {}},
    )


def build_variant(
    source: ModelSource,
    variant: str,
    block_size: int | None = None,
    trust_remote_code: bool = False,
    store: VariantStore | None = None,
    log: Callable[[str], None] | None = None,
    embeddings: bool | None = None,
) -> VariantBuild:
    """The variant `variant` (onnx-fp32, onnx-int8, onnx-int4[-b<N>]) of `source`, built or reused.

    `block_size` overrides the int4 block size; `embeddings` whether int8/int4 quantize the
    embedding table (None: the recipe's default, yes). `log` receives one line per step taken
    (building, reusing, rebuilding a corrupt entry).
    """
    recipe = onnx_recipe(variant, block_size, embeddings)
    return _build(source, recipe, trust_remote_code, store or VariantStore(), log or (lambda s: None))


def reuse(store: VariantStore, key: str, variant: str, log) -> tuple[VariantBuild | None, str | None]:
    """The cached build under `key` (None when there is none or it failed verification) and the
    store's reason for refusing a damaged entry, which the caller keeps in the rebuilt manifest."""
    entry = store.lookup(key)
    problem = store.last_problem
    if problem:
        log(problem)
    if entry is None:
        return None, problem
    log(f"{variant}: reusing {entry.path}")
    return _from_entry(entry, hit=True, problem=None), problem


def _build(source: ModelSource, recipe: Recipe, trust_remote_code: bool, store: VariantStore, log) -> VariantBuild:
    folder = model_folder(source)
    key = cache_key(folder_digest(folder), recipe.identity(), library_versions(), trust_remote_code)
    hit, problem = reuse(store, key, recipe.variant, log)
    if hit is not None:
        return hit

    parent = _build(source, recipe.parent, trust_remote_code, store, log) if recipe.parent else None
    log(f"{recipe.variant}: building from {parent.variant if parent else source.name}")
    work = store.new_build_dir()
    try:
        t = time.perf_counter()
        graph = parent.extra.get("graph") if parent else None
        if parent is None:
            from llmbench.optimizers.quantize.export import export_onnx

            check_causal_lm(folder, trust_remote_code)
            graph = export_onnx(folder, work, trust_remote_code, fuse=recipe.fuse)
        else:
            from llmbench.optimizers.quantize.onnx_quant import QUANTIZERS

            for f in parent.path.iterdir():  # config and tokenizer files travel with the model
                if f.is_file() and f.suffix not in ONNX_SUFFIXES and f.name != "manifest.json":
                    shutil.copy2(f, work / f.name)
            QUANTIZERS[recipe.precision](parent.model_file, work / MODEL_FILE, recipe)
        build_s = round(time.perf_counter() - t, 3)
        report = count_ops(work / MODEL_FILE)
        facts = {
            "variant": recipe.variant, "recipe": recipe.describe(), "source": {"kind": source.kind, "ref": source.ref},
            "versions": library_versions(), "build_s": build_s,
            "build_total_s": round(build_s + (parent.build_total_s if parent else 0.0), 3),
            "source_bytes": weights_bytes(folder), "ops": report.to_dict(), "note": describe(recipe.precision, report),
            "graph": graph,
        }
        entry = store.put(key, work, facts)
    except BaseException:
        store.discard(work)
        raise
    return _from_entry(entry, hit=False, problem=problem)


def check_out_folder(out: Path, force: bool = False) -> None:
    """BadInput unless `out` can take a variant: absent, an empty folder, or (with `force`) a folder.

    Copying into a folder that holds another model would mix the two models' files.
    """
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        n = sum(1 for _ in out.iterdir())
        raise BadInput(f"--out {out}: folder is not empty ({n} entries); choose a new folder or add --force to replace its contents")


def copy_variant(build: VariantBuild, out: Path, replace: bool = False) -> Path:
    """Copy a built variant's files (not its manifest) into `out`, a loadable model folder.

    With `replace`, whatever `out` held before is removed first, so no file of another model stays.
    """
    check_out_folder(out, force=replace)
    if replace and out.is_dir():
        for f in out.iterdir():
            shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for f in build.path.iterdir():
        if f.is_file() and f.name != "manifest.json":
            shutil.copy2(f, out / f.name)
    return out
