"""The genai-int4 backend: a graph from onnxruntime-genai's builder, decoded with a shared KV buffer.

The graph (see llmbench.optimizers.quantize.genai_build) has one GroupQueryAttention per layer.
GroupQueryAttention writes the new keys and values in place when the past and present tensors
are the same memory, so one buffer per layer of [batch, kv_heads, prompt + new tokens, head_dim]
is bound as both, once per generation: no step copies the cache (optimum's graph concatenates
the whole cache into a new tensor every step, the cost named in issue 10).

Rows are right-padded: GroupQueryAttention reads each row's length from the attention mask
(`seqlens_k`) and writes row b's next key at its own position, which is its native layout
(onnxruntime-genai's own Generator left-pads, and its batched greedy output then differs from
the same prompts one at a time). Prefill logits are taken at each row's last real token.
"""
from __future__ import annotations

import time

import numpy as np

from llmbench.backends.base import Backend, Generation
from llmbench.backends.onnx_backend import _NP_DTYPES, _parameters, make_session, spinning_default


def right_pad(prompts: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token lists as one right-padded int64 batch and its lengths."""
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    ids = np.full((len(prompts), int(lengths.max())), pad_id, dtype=np.int64)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = p
    return ids, lengths


class SharedKVDecoder:
    """Greedy decoding of a GroupQueryAttention graph with one key/value buffer per layer."""

    def __init__(self, session):
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        outputs = {o.name for o in session.get_outputs()}
        missing = [n for n in ["logits", *self.present_names] if n not in outputs]
        if missing or not self.past_names or "attention_mask" not in inputs:
            raise RuntimeError(f"not a GroupQueryAttention decoder graph (missing {missing or 'inputs'})")
        first = inputs[self.past_names[0]]
        self.kv_heads, self.head_dim = first.shape[1], first.shape[3]
        self.kv_dtype = _NP_DTYPES.get(first.type, np.float32)
        logits = next(o for o in session.get_outputs() if o.name == "logits")
        self.vocab = logits.shape[2] if isinstance(logits.shape[2], int) else None
        self.logits_dtype = _NP_DTYPES.get(logits.type, np.float32)

    def _run(self, binding, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        # Rebound each step (its shape changes); rebinding a name keeps its place: first (start).
        binding.bind_output("logits", "cpu")
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    def start(self, batch: int, capacity: int):
        """An IO binding whose past and present are the same buffers of `capacity` positions."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        binding.bind_output("logits", "cpu")  # allocated by onnxruntime at each step's shape
        shape = (batch, self.kv_heads, capacity, self.head_dim)
        for past, present in zip(self.past_names, self.present_names):
            buf = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=self.kv_dtype))
            binding.bind_ortvalue_input(past, buf)
            binding.bind_ortvalue_output(present, buf)
        return binding

    def prefill(self, binding, ids: np.ndarray, lengths: np.ndarray, every_position: bool = False) -> np.ndarray:
        """Logits [batch, vocab] after each row's prompt (right-padded `ids`, real `lengths`).

        `every_position`: all of them instead, [batch, width, vocab], re-aligned to the left-padded
        layout the other backends return (row b's logits end at the last column; padding is 0).
        """
        mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        logits = self._run(binding, ids, mask)
        if not every_position:
            return logits[np.arange(len(lengths)), lengths - 1, :]
        width = ids.shape[1]
        out = np.zeros_like(logits)
        for row, n in enumerate(lengths):
            out[row, width - n:] = logits[row, :n]
        return out

    def generate(self, prompts: list[list[int]], new_tokens: int, pad_id: int, timed: bool = True) -> Generation:
        """Greedy-decode `new_tokens` tokens per prompt, timing each step."""
        ids, lengths = right_pad(prompts, pad_id)
        batch, width = ids.shape
        steps = np.empty((batch, new_tokens), dtype=np.int64)
        # Row b's mask at step s: ones over its lengths[b] + s positions, width + s columns.
        full_mask = (np.arange(width + new_tokens)[None, :] < lengths[:, None]).astype(np.int64)
        times: list[float] = []
        clock = time.perf_counter
        start = clock()
        binding = self.start(batch, width + new_tokens)
        token = self.prefill(binding, ids, lengths).argmax(-1)
        steps[:, 0] = token
        if timed:
            times.append(clock())
        rows = np.arange(batch)
        step_logits = None
        if self.vocab:  # decode steps write their logits into one buffer: no allocation, no copy per step
            step_logits = np.empty((batch, 1, self.vocab), dtype=self.logits_dtype)
            binding.bind_output("logits", "cpu", 0, self.logits_dtype, list(step_logits.shape), step_logits.ctypes.data)
        for step in range(1, new_tokens):
            full_mask[rows, lengths + step - 1] = 1
            mask = np.ascontiguousarray(full_mask[:, : width + step])
            ids = token.reshape(batch, 1).astype(np.int64)
            if step_logits is None:
                logits = self._run(binding, ids, mask)
            else:
                binding.bind_cpu_input("input_ids", ids)
                binding.bind_cpu_input("attention_mask", mask)
                self.session.run_with_iobinding(binding)
                logits = step_logits
            token = logits[:, -1, :].argmax(-1)
            steps[:, step] = token
            if timed:
                times.append(clock())
        if not timed:
            times.append(clock())
        return Generation(start=start, token_times=times, prompt_tokens=[int(n) for n in lengths],
                          output_ids=steps.tolist())


class GenaiBackend(Backend):
    """genai-int4: onnxruntime-genai's int4 graph, built and cached by llmbench, run by onnxruntime."""

    kind = "genai"

    @classmethod
    def check_variant(cls, variant: str, device: str = "cpu") -> None:
        from llmbench.errors import BadInput
        from llmbench.optimizers.quantize.genai_build import GENAI_VARIANTS, genai_version

        if variant not in GENAI_VARIANTS:
            raise BadInput(f"variant {variant!r}: onnxruntime-genai variants are {', '.join(GENAI_VARIANTS)}")
        if device != "cpu":
            raise BadInput(f"variant {variant!r}: built for the CPU here (device is {device})")
        if genai_version() is None:
            raise BadInput(f"variant {variant!r} needs onnxruntime-genai (pip install onnxruntime-genai==0.14.1)")

    def load(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from llmbench.optimizers.quantize.genai_build import build_genai_variant

        build = build_genai_variant(self.source, trust_remote_code=self.trust_remote_code)
        t = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(str(build.path), trust_remote_code=self.trust_remote_code)
        self.session = make_session(str(build.model_file), self.device)
        self.decoder = SharedKVDecoder(self.session)
        session_s = time.perf_counter() - t
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        config = AutoConfig.from_pretrained(self.source.path(), trust_remote_code=self.trust_remote_code)
        self.info.parameters = _parameters(config)
        self.info.size_bytes = build.size_bytes
        self.info.dtype = "int4"
        self.info.extra = build.facts() | {"session_load_s": round(session_s, 3),
                                           "provider": self.session.get_providers()[0],
                                           "ort_spinning": spinning_default()}
        self.build = build

    def weight_bytes_per_token(self) -> int:
        """What the graph reads per decoded token (its own initializers; the embedding table one row)."""
        from llmbench.optimizers.quantize.footprint import onnx_bytes_per_token

        return onnx_bytes_per_token(self.build.model_file)

    def generate(self, prompts: list[list[int]], new_tokens: int, timed: bool = True) -> Generation:
        return self.decoder.generate(prompts, new_tokens, self.pad_id, timed)

    def next_token_logits(self, prompts: list[list[int]]):
        import torch

        ids, lengths = right_pad(prompts, self.pad_id)
        binding = self.decoder.start(len(prompts), ids.shape[1])
        # Teacher-forced logits at every position, left-aligned like torch's and onnx's (quality gate).
        logits = self.decoder.prefill(binding, ids, lengths, every_position=True)
        return torch.from_numpy(np.asarray(logits, dtype=np.float32))

    def close(self) -> None:
        self.decoder = None
        self.session = None
