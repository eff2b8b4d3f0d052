"""The lean decode loop is exactly greedy search, with one timestamp per token."""
import torch

from llmbench.backends.torch_backend import TorchBackend
from llmbench.models.source import resolve


def test_loop_matches_generate_and_times_each_token(tiny_llama):
    b = TorchBackend(resolve(str(tiny_llama)), "torch-fp32", "cpu", "float32")
    b.load()
    prompts = [list(range(10, 40)), list(range(100, 112))]
    gen = b.generate(prompts, 6)
    assert len(gen.token_times) == 6 and gen.token_times == sorted(gen.token_times) and gen.start < gen.token_times[0]
    for row, prompt in enumerate(prompts):
        ref = b.model.generate(torch.tensor([prompt]), max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=1)
        assert gen.output_ids[row] == ref[0, len(prompt):].tolist()
    untimed = b.generate(prompts, 6, timed=False)
    assert untimed.output_ids == gen.output_ids and len(untimed.token_times) == 1


def test_records_model_facts(tiny_llama):
    b = TorchBackend(resolve(str(tiny_llama)), "torch-fp32", "cpu", "float32")
    b.load()
    assert b.info.parameters > 0 and b.info.size_bytes > 0
