"""The transformers backend: a lean greedy decode loop with one timestamp per generated token.

`generate()` spends more time in its own Python than in a small model's forward (STACK.md: a
manual loop over `past_key_values` was 1.3x faster), and a measuring harness should time the
model, not the harness. The loop below is exactly greedy search with a KV cache, checked against
`model.generate` in the tests.
"""
from __future__ import annotations

import inspect
import time

from llmbench.backends.base import Backend, Generation
from llmbench.optimizers.quantize.footprint import torch_weight_bytes

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def left_pad(prompts: list[list[int]], pad_id: int):
    """Batch token lists with left padding (decoder-only models continue from the right edge)."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids, mask


class TorchBackend(Backend):
    """transformers AutoModelForCausalLM in fp32/fp16/bf16 (int8 through optimizers.quantize)."""

    kind = "torch"

    @classmethod
    def check_variant(cls, variant: str, device: str) -> None:
        from llmbench.errors import BadInput

        precision = variant.split("-", 1)[1] if "-" in variant else "fp32"
        if precision not in (*_DTYPES, "int8"):
            raise BadInput(f"variant {variant!r}: torch variants are torch-fp32, torch-fp16, torch-bf16 and torch-int8")
        if precision == "int8" and device != "cpu":
            raise BadInput(f"variant {variant!r}: dynamic int8 quantization runs on the CPU only (device is {device})")
        if precision == "fp16" and device == "cpu":
            raise BadInput(f"variant {variant!r}: float16 matmuls are not supported on the CPU; use torch-bf16 or a GPU")

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        precision = self.variant.split("-", 1)[1] if "-" in self.variant else "fp32"
        dtype = _DTYPES.get(precision, self.dtype)
        path = self.source.path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(dtype), trust_remote_code=self.trust_remote_code, use_safetensors=None
        )
        # Counted before quantizing: quantized Linear layers keep their weights outside .parameters().
        self.info.parameters = sum(p.numel() for p in model.parameters())
        if precision == "int8":
            from llmbench.optimizers.quantize.torch_int8 import quantize_torch_int8

            model = quantize_torch_int8(model)
        self.model = model.to(self.device).eval()
        self._keep_arg = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # The variant's own weights as held in memory (int8 Linear layers for torch-int8, two bytes
        # per weight for bf16), not the size of the file they were loaded from.
        self.info.size_bytes = torch_weight_bytes(self.model)
        self.info.dtype = "int8" if precision == "int8" else dtype

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def _forward(self, ids, mask, pos, cache):
        extra = {"logits_to_keep": 1} if self._keep_arg else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True, **extra)
        return out.logits[:, -1, :], out.past_key_values

    def generate(self, prompts: list[list[int]], new_tokens: int, timed: bool = True) -> Generation:
        import torch
        from transformers import DynamicCache

        ids, mask = left_pad(prompts, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        ones = torch.ones((len(prompts), 1), dtype=mask.dtype, device=self.device)
        steps: list = []
        times: list[float] = []
        sync = self.synchronize
        with torch.inference_mode():
            self.synchronize()
            start = time.perf_counter()
            logits, cache = self._forward(ids, mask, pos, DynamicCache())
            token = logits.argmax(-1, keepdim=True)
            steps.append(token)
            if timed:
                sync()
                times.append(time.perf_counter())
            for _ in range(new_tokens - 1):
                mask = torch.cat([mask, ones], dim=1)
                pos = pos[:, -1:] + 1
                logits, cache = self._forward(token, mask, pos, cache)
                token = logits.argmax(-1, keepdim=True)
                steps.append(token)
                if timed:
                    sync()
                    times.append(time.perf_counter())
            if not timed:
                sync()
                times.append(time.perf_counter())
        out = torch.cat(steps, dim=1).tolist()
        return Generation(start=start, token_times=times, prompt_tokens=[len(p) for p in prompts], output_ids=out)

    def next_token_logits(self, prompts: list[list[int]]):
        import torch

        ids, mask = left_pad(prompts, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos)
        return out.logits.float().cpu()

    def close(self) -> None:
        self.model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
