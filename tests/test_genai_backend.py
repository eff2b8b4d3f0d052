"""genai-int4: onnxruntime-genai's builder graph, decoded with one shared key/value buffer per layer."""
from __future__ import annotations

import numpy as np
import pytest
from tiny_models import tiny_sources

from llmbench.backends.genai_backend import GenaiBackend, right_pad
from llmbench.backends.registry import backend_for
from llmbench.errors import BadInput

PROMPTS = [list(range(10, 40)), list(range(100, 112)), [7, 8, 9]]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = GenaiBackend(tiny_sources(tmp_path_factory)["llama"], "genai-int4", "cpu", "float32")
    b.load()
    yield b
    b.close()


def test_registry_and_bad_names():
    assert backend_for("genai-int4") is GenaiBackend
    for bad, device in (("genai-int8", "cpu"), ("genai-int4", "cuda")):
        with pytest.raises(BadInput):
            GenaiBackend.check_variant(bad, device)


def test_right_pad():
    ids, lengths = right_pad([[5, 6, 7], [8]], 1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and lengths.tolist() == [3, 1]


def test_the_graph_is_int4_with_group_query_attention(backend):
    ops = backend.build.ops
    # 2 layers x (qkv, o, gate, up, down) + lm_head, every one int4; the embedding table in int4 blocks.
    assert ops["quantized"] == {"MatMulNBits": 2 * 5 + 1, "GatherBlockQuantized": 1}
    assert ops["ops"]["GroupQueryAttention"] == 2 and ops["float_weight_layers"] == {}
    assert backend.info.dtype == "int4" and backend.info.size_bytes < backend.build.source_bytes


def test_greedy_output_is_onnxruntime_genai_s_own(backend):
    """At batch 1 the loop gives exactly what onnxruntime-genai's Generator gives on the same graph."""
    import onnxruntime_genai as og

    model = og.Model(str(backend.build.path))
    for prompt in PROMPTS:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + 8, min_length=len(prompt) + 8, do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens(np.array([prompt], dtype=np.int32))
        want = []
        for _ in range(8):
            gen.generate_next_token()
            want.append(int(gen.get_next_tokens()[0]))
        assert backend.generate([prompt], 8).output_ids[0] == want


def test_a_padded_batch_equals_its_rows_one_at_a_time(backend):
    rows = [backend.generate([p], 8).output_ids[0] for p in PROMPTS]
    gen = backend.generate(PROMPTS, 8)
    assert gen.output_ids == rows
    assert len(gen.token_times) == 8 and gen.token_times == sorted(gen.token_times) and gen.start < gen.token_times[0]
    assert gen.prompt_tokens == [30, 12, 3]


def test_teacher_forced_logits_are_left_aligned_like_the_other_backends(backend):
    """The quality gate reads [batch, width, vocab] with each row's logits ending at the last column."""
    logits = backend.next_token_logits(PROMPTS)
    first = [row[0] for row in backend.generate(PROMPTS, 1).output_ids]
    assert logits.shape == (3, 30, 4096) and logits[:, -1].argmax(-1).tolist() == first
    for row, prompt in enumerate(PROMPTS):
        alone = backend.next_token_logits([prompt])[0]
        pad = 30 - len(prompt)
        assert np.allclose(logits[row, pad:].numpy(), alone.numpy(), atol=1e-4)
        assert not logits[row, :pad].any()


def test_weights_per_token_are_the_graph_s_initializers(backend):
    """Every initializer once, except the embedding table, of which one row (with its scales) is read."""
    import onnx

    from llmbench.optimizers.quantize.footprint import _tensor_bytes

    model = onnx.load(str(backend.build.model_file), load_external_data=False)
    sizes = {i.name: _tensor_bytes(i) for i in model.graph.initializer}
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    table = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"][0]
    # The table and its scales, and the rotary cos/sin caches that attention reads at one position.
    looked_up = {table.input[0], table.input[2], "cos_cache", "sin_cache"}
    assert looked_up <= set(sizes)
    streamed = sum(v for k, v in sizes.items() if k not in looked_up)
    rows = sum(sizes[k] // dims[k][0] for k in looked_up)
    assert backend.weight_bytes_per_token() == streamed + rows


def test_a_second_load_is_a_cache_hit(backend):
    again = GenaiBackend(backend.source, "genai-int4", "cpu", "float32")
    again.load()
    assert again.build.cache_hit and again.build.path == backend.build.path
