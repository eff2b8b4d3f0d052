"""What a variant name means: `onnx-fp32`, `onnx-int8`, `onnx-int4[-b<block>]`, `torch-int8`.

A recipe is plain data. Its `identity()` is part of the variant cache key, so changing any knob
(or RECIPE_VERSION, when the code that applies a recipe changes meaning) builds a new entry.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from llmbench.errors import BadInput

# Bump when a recipe's code changes what it writes: old cache entries then stop matching.
RECIPE_VERSION = 5  # 5: int8's embeddings knob is applied and keyed; opcount reports tables

DEFAULT_BLOCK_SIZE = 32
ONNX_PRECISIONS = ("fp32", "int8", "int4")
_INT4 = re.compile(r"^int4(?:-b(\d+))?$")


@dataclass(frozen=True)
class Recipe:
    """How to build one ONNX variant from a source model.

    precision: fp32 (plain export), int8 (dynamic: int8 weights, activations quantized per call),
    int4 (weight-only MatMulNBits). block_size/symmetric/accuracy_level only matter for int4;
    accuracy_level 4 lets onnxruntime compute in int8 on CPUs with VNNI (faster, same weights).
    embeddings (int8 and int4) also quantizes the input embedding table, which is a quarter or
    more of a small model's bytes on disk but is read one row per token: int4 stores it in blocks
    along the hidden axis (GatherBlockQuantized), int8 as uint8 with one scale for the whole table
    (onnxruntime's dynamic Gather quantizer). opcount reports how the table was stored.
    """

    precision: str
    block_size: int = DEFAULT_BLOCK_SIZE
    symmetric: bool = True
    accuracy_level: int = 4
    embeddings: bool = True
    per_channel: bool = False
    fuse: bool = True  # fp32 export: fuse norms and rotary embeddings (see fuse.py); variants inherit it

    @property
    def variant(self) -> str:
        if self.precision == "int4" and self.block_size != DEFAULT_BLOCK_SIZE:
            return f"onnx-int4-b{self.block_size}"
        return f"onnx-{self.precision}"

    @property
    def parent(self) -> "Recipe | None":
        """The variant this one is made from (quantized variants start from the fp32 export)."""
        return None if self.precision == "fp32" else Recipe("fp32", fuse=self.fuse)

    def identity(self) -> dict:
        """What goes into the cache key: every knob that changes the files, plus the code version."""
        keep = {"precision": self.precision, "recipe_version": RECIPE_VERSION, "fuse": self.fuse}
        if self.precision == "int4":
            keep.update(block_size=self.block_size, symmetric=self.symmetric, accuracy_level=self.accuracy_level,
                        embeddings=self.embeddings)
        if self.precision == "int8":
            keep.update(per_channel=self.per_channel, embeddings=self.embeddings)
        return keep

    def describe(self) -> dict:
        return asdict(self) | {"variant": self.variant}


def check_block_size(block_size: int, where: str = "block size") -> int:
    """MatMulNBits takes power-of-two blocks of at least 16 (onnxruntime's kernels)."""
    if block_size < 16 or block_size & (block_size - 1):
        raise BadInput(f"{where}: {block_size} is not a power of two >= 16 (e.g. 32, 64, 128)")
    return block_size


def onnx_recipe(variant: str, block_size: int | None = None, embeddings: bool | None = None) -> Recipe:
    """The recipe of an `onnx-*` variant name; `block_size` overrides the int4 default.

    `onnx-int4-b128` names the block size inside the variant, so a run config can compare sizes.
    `embeddings` (None: the default, quantized) chooses whether int8/int4 quantize the embedding table.
    """
    recipe = _named_recipe(variant, block_size)
    if embeddings is None or embeddings == recipe.embeddings:
        return recipe
    if recipe.precision == "fp32":
        raise BadInput(f"variant {variant!r}: the embeddings choice applies to int8 and int4 only")
    return replace(recipe, embeddings=embeddings)


def _named_recipe(variant: str, block_size: int | None) -> Recipe:
    if not variant.startswith("onnx-"):
        raise BadInput(f"variant {variant!r} is not an ONNX variant")
    precision = variant[len("onnx-"):]
    m = _INT4.match(precision)
    if m:
        size = block_size or (int(m.group(1)) if m.group(1) else DEFAULT_BLOCK_SIZE)
        return Recipe("int4", block_size=check_block_size(size, f"variant {variant!r}"))
    if precision not in ONNX_PRECISIONS:
        raise BadInput(f"variant {variant!r}: unknown ONNX precision {precision!r} (known: fp32, int8, int4, int4-b<N>)")
    return Recipe(precision)
