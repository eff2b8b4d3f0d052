"""The onnx-fp32 variant: optimum-onnx's export of a causal LM with past key values.

The graph takes input_ids, attention_mask, position_ids and past_key_values.<i>.key/value, and
returns logits and present.<i>.key/value: exactly what a manual KV-cache decode loop needs. Two
edits follow the export: operator fusion (fuse.py) and a `logits_start` input (logits.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from llmbench.optimizers.quantize.quiet import quiet

TASK = "text-generation-with-past"


def export_onnx(src: Path, out: Path, trust_remote_code: bool = False, fuse: bool = True) -> dict:
    """Export the model folder `src` to `out/model.onnx` (with config and tokenizer files).

    Then, in one load and save: fuse small operators (fuse.py, when `fuse`) and add the
    `logits_start` input (logits.py). Returns what was done, for the manifest.
    """
    import onnx
    from optimum.exporters.onnx import main_export

    from llmbench.optimizers.quantize.fuse import fuse_graph
    from llmbench.optimizers.quantize.logits import add_logits_start

    with quiet():
        # Validation runs both engines on dummy inputs and costs as much as the export; the
        # backend's tests compare ONNX and torch greedy outputs instead.
        main_export(str(src), output=str(out), task=TASK, device="cpu", trust_remote_code=trust_remote_code,
                    do_validation=False, local_files_only=True)
    path = out / "model.onnx"
    if not path.is_file():
        raise RuntimeError(f"optimum export of {src} wrote no model.onnx (files: {sorted(p.name for p in out.iterdir())})")
    weights = [p for p in out.iterdir() if p.name != "model.onnx" and p.name.startswith("model.onnx")]
    model = onnx.load(str(path))
    done: dict = {}
    if fuse:
        model, done["fusion"] = fuse_graph(model, max_positions=_max_positions(out))
    done["logits_start"] = add_logits_start(model)
    for p in weights:  # rewritten below, as one file beside the graph
        p.unlink()
    with quiet():
        onnx.save(model, str(path), save_as_external_data=bool(weights), all_tensors_to_one_file=True,
                  location="model.onnx_data")
    return done


def _max_positions(folder: Path) -> int | None:
    try:
        value = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
