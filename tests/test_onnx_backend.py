"""The onnxruntime decode loop: torch's greedy output in fp32, one timestamp per token, every variant."""
from __future__ import annotations

import pytest
import torch
from tiny_models import ARCHS, tiny_sources

from llmbench.backends.onnx_backend import OnnxBackend, left_pad_np, positions, providers_for
from llmbench.backends.registry import backend_for
from llmbench.backends.torch_backend import TorchBackend

# Different lengths, so that the batch is left-padded.
PROMPTS = [list(range(10, 40)), list(range(100, 112)), [7, 8, 9]]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return tiny_sources(tmp_path_factory)


@pytest.fixture(scope="module")
def torch_ref(sources):
    out = {}
    for arch in ARCHS:
        b = TorchBackend(sources[arch], "torch-fp32", "cpu", "float32")
        b.load()
        out[arch] = (b.generate(PROMPTS, 8).output_ids, b.next_token_logits(PROMPTS))
        b.close()
    return out


def _onnx(source, variant: str) -> OnnxBackend:
    b = OnnxBackend(source, variant, "cpu", "float32")
    b.load()
    return b


def test_registry_knows_onnx():
    from llmbench.errors import BadInput

    assert backend_for("onnx-int4") is OnnxBackend
    OnnxBackend.check_variant("onnx-int4-b64")
    with pytest.raises(BadInput, match="onnx-int5"):
        OnnxBackend.check_variant("onnx-int5")


def test_padding_and_positions():
    ids, mask = left_pad_np([[5, 6, 7], [9]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [1, 1, 9]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions(mask).tolist() == [[0, 1, 2], [0, 0, 0]]


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_greedy_equals_torch(sources, torch_ref, arch):
    b = _onnx(sources[arch], "onnx-fp32")
    gen = b.generate(PROMPTS, 8)
    ref_ids, ref_logits = torch_ref[arch]
    assert gen.output_ids == ref_ids
    # Batched and alone give the same tokens (left padding and position ids are right).
    assert [b.generate([p], 8).output_ids[0] for p in PROMPTS] == ref_ids
    logits = b.next_token_logits(PROMPTS)
    assert logits.dtype == torch.float32 and logits.shape == ref_logits.shape
    _, mask = left_pad_np(PROMPTS, 1)
    valid = torch.from_numpy(mask.astype(bool))
    assert torch.allclose(logits[valid], ref_logits[valid], atol=1e-4)


@pytest.mark.parametrize("variant", ["onnx-fp32", "onnx-int8", "onnx-int4"])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_variant_generates_with_one_timestamp_per_token(sources, arch, variant):
    b = _onnx(sources[arch], variant)
    gen = b.generate(PROMPTS, 6)
    assert len(gen.token_times) == 6 and gen.token_times == sorted(gen.token_times) and gen.start < gen.token_times[0]
    assert [len(o) for o in gen.output_ids] == [6, 6, 6] and gen.prompt_tokens == [30, 12, 3]
    assert all(0 <= t < 4096 for row in gen.output_ids for t in row)
    untimed = b.generate(PROMPTS, 6, timed=False)
    assert len(untimed.token_times) == 1 and untimed.output_ids == gen.output_ids
    one = b.generate([PROMPTS[0]], 1)
    assert len(one.token_times) == 1 and len(one.output_ids[0]) == 1
    info = b.info
    assert info.size_bytes > 0 and info.parameters > 0 and info.extra["cache_hit"] in (True, False)
    assert info.extra["provider"] == "CPUExecutionProvider"
    if variant != "onnx-fp32":
        assert info.extra["quantized_ops"].get("MatMulNBits", info.extra["quantized_ops"].get("MatMulInteger")) == 15
    b.close()


def test_quantized_variants_stay_close_to_fp32(sources, torch_ref):
    """Weights quantized, not broken: next-token logits within a small distance of the fp32 ones."""
    ref = torch_ref["llama"][1]
    for variant, tol in (("onnx-int8", 0.2), ("onnx-int4", 0.5)):
        logits = _onnx(sources["llama"], variant).next_token_logits(PROMPTS)
        diff = (logits[0] - ref[0]).abs().max().item()
        assert 0 < diff < tol, (variant, diff)


def test_cuda_without_onnxruntime_gpu_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        providers_for("cuda")
    assert providers_for("cpu") == ["CPUExecutionProvider"]



def test_prefill_computes_only_the_last_logits(sources):
    """The exported graph's logits_start input: the prefill skips the output layer for earlier positions."""
    import numpy as np

    b = _onnx(sources["llama"], "onnx-fp32")
    ids, mask = left_pad_np(PROMPTS, 1)
    full, _ = b.decoder.forward(ids, mask, positions(mask))
    last, _ = b.decoder.forward(ids, mask, positions(mask), last_only=True)
    assert b.decoder.has_logits_start and full.shape[1] == ids.shape[1] and last.shape[1] == 1
    assert np.allclose(last[:, 0], full[:, -1], atol=1e-5)
