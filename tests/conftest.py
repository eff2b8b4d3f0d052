"""Shared fixtures: tiny models made here (nothing is downloaded), and a CLI runner."""
from __future__ import annotations

import os

# Nothing in the suite may reach a model hub; this makes any attempt fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Under pytest-xdist (`make test TEST_WORKERS=2`) each worker gets its own llmbench cache: two
# workers building the same GGUF into one cache would race, and each test's "no llama-server of
# ours is left" check counts only servers whose command line names its own cache.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and os.environ.get("LLMBENCH_CACHE"):
    os.environ["LLMBENCH_CACHE"] = str(Path(os.environ["LLMBENCH_CACHE"]) / _WORKER)

# Both Ray files start multi-node clusters in one temporary folder: never at the same time.
_XDIST_GROUPS = {"test_ray_run.py": "ray", "test_ray_loadgen.py": "ray"}
# Under xdist the longest files (minutes each on 2 cores) go to the workers first, so that no worker
# is left with one of them while the other has finished; the rest keep pytest-randomly's order (as
# does a one-process run, whole).
_LONGEST_FIRST = ("test_ray_run.py", "test_ray_loadgen.py", "test_default_run.py", "test_verify.py", "test_input_cli.py")


def make_tiny_llama(out: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A tiny random-weight Llama with the shipped tokenizer, saved with save_pretrained."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmbench.models.tokenizer import load_shipped_tokenizer

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=4096, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(cfg).save_pretrained(out)
    load_shipped_tokenizer().save_pretrained(out)
    return out


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group each test with its file (the Ray files together) for `--dist loadgroup`, longest first."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_XDIST_GROUPS.get(item.path.name, item.path.name)))
    if not _WORKER:
        return
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Card weights and variants go to a per-session cache unless the caller chose one.
    if "LLMBENCH_CACHE" not in os.environ:
        os.environ["LLMBENCH_CACHE"] = str(tmp_path_factory.mktemp("llmbench-cache"))
    yield


@pytest.fixture
def shared_data() -> Path:
    return SHARED / "data"


@pytest.fixture(scope="session")
def engine():
    """The llama.cpp engine (llama-server, llama-quantize, the converter), built once if missing.

    `make test` builds it before the tests (into the venv, which outlives make test's fresh
    caches); `$LLMBENCH_LLAMA_CPP_DIR` points at a tree built by hand instead.
    """
    from llmbench.engines.llamacpp import ensure_engine

    return ensure_engine(progress=lambda line: print(line, flush=True))
