"""The genai-int4 variant: onnxruntime-genai's model builder, cached like every other variant.

optimum's export (the onnx-* variants) spells attention as dozens of small operators and
concatenates each layer's whole key/value cache into a new tensor every step. onnxruntime-genai's
builder writes one GroupQueryAttention per layer (rotary embedding inside) that can read and write
a key/value buffer shared between past and present, so a decode step copies nothing; its int4
recipe quantizes every MatMul, lm_head included, to MatMulNBits (blocks of 32, int8 compute on
CPUs with VNNI), and here the embedding table too (GatherBlockQuantized), as onnx-int4 does.

The builder runs in a child process: it prints progress bars, and a crash in it must not take
the measuring process down.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from llmbench.models.source import ModelSource
from llmbench.optimizers.quantize.build import VariantBuild, _from_entry, check_causal_lm, reuse
from llmbench.optimizers.quantize.opcount import count_ops, describe
from llmbench.optimizers.quantize.sources import folder_digest, model_folder, weights_bytes
from llmbench.optimizers.quantize.store import VariantStore, cache_key, library_versions

# Bump when the build below changes what it writes.
GENAI_RECIPE_VERSION = 1
GENAI_VARIANTS = ("genai-int4",)


@dataclass(frozen=True)
class GenaiRecipe:
    """The builder's int4 options (each one is part of the cache key)."""

    block_size: int = 32
    accuracy_level: int = 4
    embeddings: bool = True

    variant = "genai-int4"

    def identity(self, genai_version: str) -> dict:
        return {"engine": "onnxruntime-genai", "precision": "int4", "block_size": self.block_size,
                "accuracy_level": self.accuracy_level, "embeddings": self.embeddings,
                "onnxruntime-genai": genai_version, "recipe_version": GENAI_RECIPE_VERSION}

    def describe(self) -> dict:
        return {"engine": "onnxruntime-genai", "precision": "int4", "block_size": self.block_size,
                "accuracy_level": self.accuracy_level, "embeddings": self.embeddings, "variant": self.variant}


def genai_version() -> str | None:
    """The installed onnxruntime-genai version (None when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError:
        return None


def builder_command(src, out, cache, recipe: GenaiRecipe, trust_remote_code: bool) -> list[str]:
    """The model builder's command line for an int4 CPU model of the folder `src`."""
    ops = "MatMul/Gather" if recipe.embeddings else "MatMul"
    return [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src), "-o", str(out),
            "-p", "int4", "-e", "cpu", "-c", str(cache), "--extra_options",
            f"int4_block_size={recipe.block_size}", f"int4_accuracy_level={recipe.accuracy_level}",
            f"int4_op_types_to_quantize={ops}", f"hf_remote={'true' if trust_remote_code else 'false'}"]


def build_genai_variant(
    source: ModelSource,
    trust_remote_code: bool = False,
    store: VariantStore | None = None,
    log: Callable[[str], None] | None = None,
    recipe: GenaiRecipe | None = None,
) -> VariantBuild:
    """The genai-int4 variant of `source`, built by onnxruntime-genai's model builder or reused."""
    version = genai_version()
    if version is None:
        raise RuntimeError("genai-int4 needs onnxruntime-genai (pip install onnxruntime-genai==0.14.1)")
    recipe = recipe or GenaiRecipe()
    store = store or VariantStore()
    log = log or (lambda s: None)
    folder = model_folder(source)
    key = cache_key(folder_digest(folder), recipe.identity(version), library_versions(), trust_remote_code)
    hit, problem = reuse(store, key, recipe.variant, log)
    if hit is not None:
        return hit
    check_causal_lm(folder, trust_remote_code)
    log(f"{recipe.variant}: building from {source.name} with onnxruntime-genai {version}")
    work = store.new_build_dir()
    try:
        t = time.perf_counter()
        cache = work / ".builder-cache"
        env = os.environ | {"HF_HUB_OFFLINE": "1"}  # a local folder: nothing to fetch
        proc = subprocess.run(builder_command(folder, work, cache, recipe, trust_remote_code),
                              capture_output=True, text=True, env=env)
        shutil.rmtree(cache, ignore_errors=True)
        if proc.returncode != 0 or not (work / "model.onnx").is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"onnxruntime-genai's builder failed on {source.name}: {last}")
        build_s = time.perf_counter() - t
        report = count_ops(work / "model.onnx")
        facts = {
            "variant": recipe.variant, "recipe": recipe.describe(), "source": {"kind": source.kind, "ref": source.ref},
            "versions": library_versions() | {"onnxruntime-genai": version}, "build_s": build_s,
            "build_total_s": build_s, "source_bytes": weights_bytes(folder), "ops": report.to_dict(),
            "note": describe("int4", report), "graph": {"attention": "GroupQueryAttention, shared key/value buffer"},
        }
        entry = store.put(key, work, facts)
    except BaseException:
        store.discard(work)
        raise
    return _from_entry(entry, hit=False, problem=problem)
