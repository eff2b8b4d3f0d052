"""The variant cache and the card cache under damage: keys, killed builds, missing facts, broken cards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tiny_models import tiny_sources

from llmbench.errors import BadInput
from llmbench.optimizers.quantize.build import build_variant
from llmbench.optimizers.quantize.store import VariantStore, cache_key


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return tiny_sources(tmp_path_factory)


def test_key_depends_on_trust_remote_code(sources, tmp_path):
    """A graph built with the model's own code is never served to a user who declined it."""
    assert cache_key("abc", {"precision": "fp32"}, {}, True) != cache_key("abc", {"precision": "fp32"}, {}, False)
    store = VariantStore(tmp_path / "variants")
    declined = build_variant(sources["llama"], "onnx-fp32", store=store)
    trusted = build_variant(sources["llama"], "onnx-fp32", store=store, trust_remote_code=True)
    assert not trusted.cache_hit and trusted.key != declined.key and trusted.path != declined.path
    assert build_variant(sources["llama"], "onnx-fp32", store=store).path == declined.path


def _killed_build(root, what: str) -> None:
    """Start a build folder in a child process, then kill it with SIGKILL (no clean-up runs)."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        f"root = Path({str(root)!r})\n"
        f"if {what!r} == 'variant':\n"
        "    from llmbench.optimizers.quantize.store import VariantStore\n"
        "    d = VariantStore(root).new_build_dir()\n"
        "else:\n"
        "    from llmbench.models.scratch import scratch_dir\n"
        "    d = scratch_dir(root, '.build-')\n"
        "(d / 'model.onnx').write_bytes(b'half written')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_killed_build_does_not_stay_for_ever(sources, tmp_path):
    root = tmp_path / "variants"
    _killed_build(root, "variant")
    left = [p for p in root.iterdir() if p.name.startswith(".build-")]
    assert len(left) == 1  # what the old code left behind for good
    # A folder of an unknown owner (the old naming) is removed once it is old, kept while recent.
    old = root / ".build-abc123"
    old.mkdir()
    recent = root / ".build-def456"
    recent.mkdir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    build_variant(sources["qwen2"], "onnx-fp32", store=VariantStore(root))
    remaining = sorted(p.name for p in root.iterdir() if p.name.startswith(".build-"))
    assert remaining == [".build-def456"]


def test_a_live_build_is_left_alone(tmp_path):
    from llmbench.models.scratch import scratch_dir, sweep_scratch

    mine = scratch_dir(tmp_path, ".build-")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = tmp_path / f".build-{mine.name.split('-')[1]}-{child.pid}-xyz"
        theirs.mkdir()
        assert sweep_scratch(tmp_path, ".build-") == []
        assert mine.is_dir() and theirs.is_dir()
    finally:
        child.kill()
        child.wait()
    assert sweep_scratch(tmp_path, ".build-") == [theirs]


@pytest.mark.parametrize("fact", ["build_s", "variant", "recipe"])
def test_a_manifest_missing_a_fact_is_corrupt_and_rebuilt(sources, tmp_path, fact):
    store = VariantStore(tmp_path / "variants")
    first = build_variant(sources["qwen2"], "onnx-int8", store=store)
    manifest_file = first.path / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest[fact]
    manifest_file.write_text(json.dumps(manifest))
    lines: list[str] = []
    again = build_variant(sources["qwen2"], "onnx-int8", store=store, log=lines.append)
    assert not again.cache_hit and f"manifest has no {fact!r}" in again.rebuilt_corrupt
    assert again.build_s >= 0 and json.loads(manifest_file.read_text())[fact] is not None
    assert build_variant(sources["qwen2"], "onnx-int8", store=store).cache_hit


@pytest.fixture
def card_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "cards"


@pytest.mark.parametrize("damage", ["truncate-weights", "drop-tokenizer", "drop-weights"])
def test_a_damaged_card_repairs_itself(card_cache, damage):
    from safetensors.torch import load_file

    from llmbench.models.cards import card_dir

    folder = card_dir("llama-5m")
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    if damage == "truncate-weights":
        weights.write_bytes(whole[: len(whole) // 2])
    elif damage == "drop-tokenizer":
        (folder / "tokenizer.json").unlink()
    else:
        weights.unlink()
    lines: list[str] = []
    again = card_dir("llama-5m", log=lines.append)
    assert again == folder and len(lines) == 1 and "damaged" in lines[0]
    assert weights.read_bytes() == whole  # seeded: the same card again, byte for byte
    assert (folder / "tokenizer.json").is_file() and load_file(weights)
    assert card_dir("llama-5m", log=lines.append) == folder and len(lines) == 1  # whole now: no rebuild


def test_a_card_built_before_manifests_is_adopted_not_rebuilt(card_cache):
    from llmbench.models.cards import CARD_MANIFEST, card_dir

    folder = card_dir("llama-5m")
    (folder / CARD_MANIFEST).unlink()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    lines: list[str] = []
    assert card_dir("llama-5m", log=lines.append) == folder and lines == []
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp and (folder / CARD_MANIFEST).is_file()


def test_a_killed_card_build_is_swept(card_cache):
    from llmbench.models.cards import card_dir

    _killed_build(card_cache, "card")
    assert len([p for p in card_cache.iterdir() if p.name.startswith(".build-")]) == 1
    card_dir("llama-5m")
    assert [p for p in card_cache.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["../models/llama-5m", "./llama-5m", ""])
def test_a_card_name_cannot_leave_the_cards_folder(name):
    from llmbench.models.cards import card_config

    with pytest.raises(BadInput, match="unknown model card"):
        card_config(name)
