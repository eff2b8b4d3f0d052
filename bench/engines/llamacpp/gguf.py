"""GGUF variants of a local Llama/Qwen folder or card: llama.cpp's converter, then llama-quantize.

gguf-f16 is converted from the Hugging Face folder by the converter of the engine's own source
tree (its gguf-py, so the file format matches the binaries); the other types are quantized from
the cached gguf-f16 with `llama-quantize`. Entries live in the same content-addressed store as the
ONNX variants (llmbench.optimizers.quantize.store): keyed by the source's content, the type and
the engine's version; verified on every lookup and rebuilt when damaged.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmbench.engines.llamacpp.info import EngineInfo, find_engine
from llmbench.errors import BadInput, MeasurementFailed
from llmbench.models.source import ModelSource
from llmbench.optimizers.quantize.sources import folder_digest, model_folder, weights_bytes
from llmbench.optimizers.quantize.store import Entry, VariantStore, cache_key

GGUF_TYPES = {"gguf-f16": "F16", "gguf-q8_0": "Q8_0", "gguf-q4_k_m": "Q4_K_M", "gguf-q4_0": "Q4_0"}
MODEL_FILE = "model.gguf"
CONVERTER = Path(__file__).with_name("convert_main.py")
# Text generators of the pinned converter (llama-cpp-python 0.3.36's conversion/__init__.py), for
# when the engine is not built yet; a built engine's own list is read instead.
KNOWN_CONVERTIBLE = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                               "GPT2LMHeadModel"})


@dataclass
class GgufBuild:
    """A built GGUF variant: the file, its digest and size, and how it was had."""

    variant: str
    path: Path              # the .gguf file
    sha256: str
    size_bytes: int
    build_s: float          # this step (conversion, or quantizing from the cached f16)
    cache_hit: bool
    key: str = ""
    build_total_s: float = 0.0   # from the source folder: conversion plus quantizing
    source_bytes: int = 0        # weight files of the source

    def facts(self) -> dict:
        """Flat facts for run.json's per-variant record."""
        return {"variant_path": str(self.path), "sha256": self.sha256, "size_bytes": self.size_bytes,
                "cache_hit": self.cache_hit, "build_s": self.build_s, "build_total_s": self.build_total_s,
                "source_bytes": self.source_bytes}


_ARCH_CACHE: dict[str, frozenset[str]] = {}


def converter_architectures(source_dir: Path) -> frozenset[str]:
    """Architecture names the converter in `source_dir` registers (its TEXT_MODEL_MAP, read without importing it)."""
    init = Path(source_dir) / "conversion" / "__init__.py"
    if str(init) not in _ARCH_CACHE:
        tree = ast.parse(init.read_text())
        names: set[str] = set()
        for node in tree.body:
            target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and isinstance(node.value, ast.Dict):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        _ARCH_CACHE[str(init)] = frozenset(names)
    return _ARCH_CACHE[str(init)]


def _architectures(source: ModelSource, where: str) -> list[str]:
    if source.kind == "card":
        from llmbench.models.cards import card_config

        config = card_config(source.ref)
    else:
        path = model_folder(source) / "config.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            raise BadInput(f"{where}: {path} is not a readable config.json") from None
    archs = config.get("architectures") if isinstance(config, dict) else None
    if not archs or not isinstance(archs, list):
        raise BadInput(f"{where}: {source.name} has no 'architectures' in config.json; llama.cpp's converter needs it")
    return [str(a) for a in archs]


def check_convertible(source: ModelSource, where: str, engine: EngineInfo | None = None) -> None:
    """BadInput naming the architecture unless llama.cpp can convert `source` into a text generator."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = _architectures(source, where)[0]
    engine = engine or find_engine()
    known = converter_architectures(engine.source_dir) if engine else KNOWN_CONVERTIBLE
    if arch not in known:
        raise BadInput(f"{where}: llama.cpp's converter cannot convert architecture {arch} ({source.name}); "
                       "gguf-* variants need a Llama, Qwen or another architecture it supports")
    if arch not in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()):
        raise BadInput(f"{where}: architecture {arch} ({source.name}) is not a text-generation model; "
                       "llama-server cannot serve completions from it")


def _recipe(variant: str) -> dict:
    return {"format": "gguf", "variant": variant, "type": GGUF_TYPES[variant]}


def variant_key(folder: Path, variant: str, engine: EngineInfo) -> str:
    """The cache key: the source folder's content, the type, and the engine that converts and quantizes."""
    return cache_key(folder_digest(folder), _recipe(variant), {"llama.cpp": engine.version, "source": engine.source_version})


def build_gguf(source: ModelSource, variant: str, engine: EngineInfo, log: Callable[[str], None] | None = None,
               store: VariantStore | None = None) -> GgufBuild:
    """The GGUF variant `variant` of `source`, from the cache or built (f16 first, then quantized from it)."""
    if variant not in GGUF_TYPES:
        raise BadInput(f"variant {variant!r}: not a GGUF variant (one of {', '.join(GGUF_TYPES)})")
    say = log or (lambda line: None)
    store = store or VariantStore()
    folder = model_folder(source)
    recipe = _recipe(variant)
    key = variant_key(folder, variant, engine)
    entry = store.lookup(key)
    if store.last_problem:
        say(store.last_problem)
    if entry is not None:
        say(f"{variant}: reusing {entry.path}")
        return _from_entry(variant, entry, hit=True)
    if variant == "gguf-f16":
        check_convertible(source, "model", engine)
        return _publish(store, key, variant, recipe, folder, 0.0,
                        lambda out: _convert(folder, out, engine, source.name, say))
    f16 = build_gguf(source, "gguf-f16", engine, log, store)
    return _publish(store, key, variant, recipe, folder, f16.build_total_s,
                    lambda out: _quantize(f16.path, out, GGUF_TYPES[variant], engine, say))


def _publish(store: VariantStore, key: str, variant: str, recipe: dict, folder: Path, before_s: float,
             make: Callable[[Path], None]) -> GgufBuild:
    work = store.new_build_dir()
    try:
        start = time.perf_counter()
        make(work / MODEL_FILE)
        build_s = round(time.perf_counter() - start, 3)
        for extra in work.iterdir():  # only the model file belongs to the entry
            if extra.name != MODEL_FILE:
                extra.unlink()
        entry = store.put(key, work, {"variant": variant, "recipe": recipe, "build_s": build_s,
                                      "build_total_s": round(before_s + build_s, 3),
                                      "source_bytes": weights_bytes(folder)})
    except BaseException:
        store.discard(work)
        raise
    return _from_entry(variant, entry, hit=False)


def _from_entry(variant: str, entry: Entry, hit: bool) -> GgufBuild:
    m = entry.manifest
    f = m["files"][MODEL_FILE]
    return GgufBuild(variant=variant, path=entry.path / MODEL_FILE, sha256=f["sha256"], size_bytes=f["bytes"],
                     build_s=m["build_s"], cache_hit=hit, key=m["key"], build_total_s=m.get("build_total_s", m["build_s"]),
                     source_bytes=m.get("source_bytes", 0))


def _tail(text: str, n: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


def _convert(folder: Path, out: Path, engine: EngineInfo, name: str, say: Callable[[str], None]) -> None:
    say(f"gguf-f16: converting {name} with llama.cpp's converter ...")
    env = dict(os.environ)
    # The converter's own gguf-py (matching the binaries), never a `gguf` installed from the index.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(engine.source_dir / "gguf-py"), env.get("PYTHONPATH")) if p)
    env.pop("NO_LOCAL_GGUF", None)  # set, it would make the converter look for an installed gguf
    argv = [sys.executable, str(CONVERTER), str(engine.source_dir), str(folder), "--outtype", "f16", "--outfile", str(out)]
    res = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if res.returncode != 0 or not out.is_file():
        raise BadInput(f"model {name}: llama.cpp's converter failed (exit {res.returncode}): {_tail(res.stderr + res.stdout)}")


def _quantize(src: Path, out: Path, qtype: str, engine: EngineInfo, say: Callable[[str], None]) -> None:
    say(f"gguf: quantizing to {qtype} with llama-quantize ...")
    threads = str(len(os.sched_getaffinity(0)))
    res = subprocess.run([str(engine.quantize), str(src), str(out), qtype, threads], capture_output=True, text=True,
                         env=engine.env(), stdin=subprocess.DEVNULL)
    if res.returncode != 0 or not out.is_file():
        raise MeasurementFailed(f"llama-quantize {qtype} failed (exit {res.returncode}): {_tail(res.stderr + res.stdout)}")
