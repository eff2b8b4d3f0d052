"""The onnxruntime backend: ONNX variants (onnx-fp32, onnx-int8, onnx-int4) through a lean decode loop.

optimum's `ORTModelForCausalLM.generate()` reached about a third of int4's roofline on an 82M
Llama card (issue 3): at this size its per-token Python is a large share of a step. This loop
drives an `InferenceSession` directly: the present key/values a step returns stay onnxruntime
values and are bound as the next step's past through IO binding (no copy to numpy and back); the
prefill asks the graph for the last position's logits only (`logits_start`, added at export), and
only logits come back to numpy for the argmax. One timestamp per generated token, left padding
and position ids from the mask, as in the torch backend, so every scenario runs through it
unchanged. BENCHMARKS.md has the figures.
"""
from __future__ import annotations

import os
import time

import numpy as np

from llmbench.backends.base import Backend, Generation

_NP_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def left_pad_np(prompts: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token lists as one left-padded int64 batch and its attention mask."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = p
        mask[row, width - len(p):] = 1
    return ids, mask


def positions(mask: np.ndarray) -> np.ndarray:
    """Position ids from a left-padded mask (padding gets 0), as the torch backend computes them."""
    return np.maximum(mask.cumsum(-1) - 1, 0).astype(np.int64)


def providers_for(device: str) -> list:
    """onnxruntime execution providers for a device; CUDA needs the `gpu` extra (onnxruntime-gpu)."""
    import onnxruntime as ort

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("device cuda: onnxruntime has no CUDAExecutionProvider here; install llmbench[gpu] (onnxruntime-gpu)")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def spinning_default() -> bool:
    """Whether onnxruntime's idle threads spin between operators: yes (its default) unless LLMBENCH_ORT_SPINNING=0.

    A decode step is hundreds of short operators, and waking a sleeping thread for each parallel
    one costs more than the operator: llama-110m int4 decoded at 278 tok/s spinning and 189 not
    on this 2-core machine with a load average of 4. On a heavily shared machine it turns around
    (40 against 80 tok/s at a load of 8), because spinning threads take the cores the working
    ones need. Deployments run with the default, so measurements do too; 0 is for shared machines.
    """
    return os.environ.get("LLMBENCH_ORT_SPINNING", "1") != "0"


def make_session(model_file: str, device: str, spinning: bool | None = None):
    """An InferenceSession with every graph optimization (fusions cut the per-token operator count)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: warnings would interleave with the progress display
    spin = spinning_default() if spinning is None else spinning
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(model_file, opts, providers=providers_for(device))


class KVDecoder:
    """Greedy decoding of an optimum-exported causal LM graph, with the KV cache kept in onnxruntime."""

    def __init__(self, session, device: str = "cpu"):
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.output_names = [o.name for o in session.get_outputs()]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        missing = [n for n in ["logits", *self.present_names] if n not in self.output_names]
        if missing or "input_ids" not in inputs or not self.past_names:
            raise RuntimeError(f"not a causal LM graph with past key values (missing {missing or 'inputs'})")
        self.has_positions = "position_ids" in inputs
        # Graphs from llmbench's export can skip the output layer for all but the last positions.
        self.has_logits_start = "logits_start" in inputs
        first = inputs[self.past_names[0]]
        self.kv_heads, self.head_dim = first.shape[1], first.shape[3]
        self.kv_dtype = _NP_DTYPES.get(first.type, np.float32)
        # Present values stay where the model runs; logits come to host memory for the argmax.
        self.kv_device = "cuda" if device.startswith("cuda") else "cpu"
        self.device_id = int(device.split(":", 1)[1]) if ":" in device else 0

    def _bind(self, binding, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past, logits_start: int) -> None:
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self.has_positions:
            binding.bind_cpu_input("position_ids", pos)
        if self.has_logits_start:
            binding.bind_cpu_input("logits_start", np.array([logits_start], dtype=np.int64))
        for name, value in zip(self.past_names, past):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self.present_names:
            binding.bind_output(name, self.kv_device, self.device_id)

    def forward(self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past=None, last_only: bool = False):
        """One step: (logits as numpy [batch, seq, vocab], present values for the next step).

        `last_only`: logits of the last position only ([batch, 1, vocab]) where the graph allows it.
        """
        if past is None:
            empty = np.zeros((ids.shape[0], self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)
            past = [empty] * len(self.past_names)
        binding = self.session.io_binding()
        self._bind(binding, ids, mask, pos, past, ids.shape[1] - 1 if last_only else 0)
        self.session.run_with_iobinding(binding)
        outs = dict(zip(self.output_names, binding.get_outputs()))
        return outs["logits"].numpy(), [outs[n] for n in self.present_names]

    def generate(self, ids: np.ndarray, mask: np.ndarray, new_tokens: int, timed: bool = True) -> Generation:
        """Greedy-decode `new_tokens` tokens per row of a left-padded batch, timing each step."""
        batch, width = ids.shape
        full_mask = np.ones((batch, width + new_tokens), dtype=np.int64)
        full_mask[:, :width] = mask
        pos = positions(mask)
        steps = np.empty((batch, new_tokens), dtype=np.int64)
        times: list[float] = []
        clock = time.perf_counter
        start = clock()
        logits, past = self.forward(ids, mask, pos, last_only=True)
        token = logits[:, -1, :].argmax(-1)
        steps[:, 0] = token
        if timed:
            times.append(clock())
        pos = pos[:, -1:]
        for step in range(1, new_tokens):
            pos = pos + 1
            # A slice of the mask is contiguous only at batch 1; onnxruntime binds raw buffers.
            step_mask = np.ascontiguousarray(full_mask[:, : width + step])
            logits, past = self.forward(token.reshape(batch, 1), step_mask, pos, past)
            token = logits[:, -1, :].argmax(-1)
            steps[:, step] = token
            if timed:
                times.append(clock())
        if not timed:
            times.append(clock())
        return Generation(start=start, token_times=times, prompt_tokens=[int(n) for n in mask.sum(-1)],
                          output_ids=steps.tolist())


class OnnxBackend(Backend):
    """An ONNX variant, built (or reused) by llmbench.optimizers.quantize, run by onnxruntime."""

    kind = "onnx"

    @classmethod
    def check_variant(cls, variant: str, device: str = "cpu") -> None:
        """BadInput for a variant name no recipe builds (onnx-int5), before anything is measured."""
        from llmbench.optimizers.quantize.recipes import onnx_recipe

        onnx_recipe(variant)

    def load(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from llmbench.optimizers.quantize import build_variant

        build = build_variant(self.source, self.variant, trust_remote_code=self.trust_remote_code)
        t = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(build.path), trust_remote_code=self.trust_remote_code)
        self.session = make_session(str(build.model_file), self.device)
        self.decoder = KVDecoder(self.session, self.device)
        session_s = time.perf_counter() - t
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        config = AutoConfig.from_pretrained(str(build.path), trust_remote_code=self.trust_remote_code)
        self.info.parameters = _parameters(config)
        self.info.size_bytes = build.size_bytes
        self.info.dtype = {"fp32": "float32", "int8": "int8", "int4": "int4"}.get(build.recipe.get("precision"), "float32")
        self.info.extra = build.facts() | {"session_load_s": round(session_s, 3),
                                           "provider": self.session.get_providers()[0],
                                           "ort_spinning": spinning_default()}
        self.build = build

    def generate(self, prompts: list[list[int]], new_tokens: int, timed: bool = True) -> Generation:
        ids, mask = left_pad_np(prompts, self.pad_id)
        return self.decoder.generate(ids, mask, new_tokens, timed)

    def next_token_logits(self, prompts: list[list[int]]):
        import torch

        ids, mask = left_pad_np(prompts, self.pad_id)
        logits, _ = self.decoder.forward(ids, mask, positions(mask))
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))

    def close(self) -> None:
        self.decoder = None
        self.session = None


def _parameters(config) -> int | None:
    """Parameters of the source architecture (quantized graphs hide them in packed blocks)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # a custom architecture without a meta-device path: leave it unknown
        return None
