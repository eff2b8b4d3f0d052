"""Cheaper variants of a candidate model: ONNX export, int8 and int4 quantization, torch int8.

Modules, one job each:
  recipes     what each variant name means (engine, precision, block size) and its identity
  sources     the files behind a model source (local folder, hub snapshot, card) and their digest
  export      optimum-onnx export with past key values (the onnx-fp32 variant)
  fuse        onnxruntime's operator fusions on the export (norms, rotary embeddings)
  logits      an optional `logits_start` input, so a prefill computes the last logits only
  onnx_quant  onnxruntime int8 dynamic and int4 MatMulNBits weight-only quantization
  opcount     operator counts of an ONNX model, and whether a recipe quantized anything
  footprint   weight bytes read per decoded token (the numerator of a roofline)
  quiet       keeps the libraries' chatter off stdout
  store       the content-addressed variant cache with a checked manifest
  build       build (or reuse) one variant: the entry point of the backend and of `llmbench quantize`
  torch_int8  torch dynamic int8 quantization of Linear layers (the torch-int8 variant)
  genai_build onnxruntime-genai's model builder: the genai-int4 variant (GroupQueryAttention graph)

`build_variant` is imported lazily so that `import llmbench.optimizers.quantize` stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from llmbench.optimizers.quantize.build import VariantBuild, build_variant  # noqa: F401


def __getattr__(name: str):
    if name in ("build_variant", "VariantBuild"):
        from llmbench.optimizers.quantize import build

        return getattr(build, name)
    raise AttributeError(name)
