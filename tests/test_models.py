"""Where models come from: folders, hub ids (real from_pretrained path, offline here), cards."""
import pytest

from llmbench.errors import BadInput
from llmbench.models.cards import card_dir, card_names, card_parameters
from llmbench.models.source import resolve


def test_missing_folder_and_non_model_folder(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    with pytest.raises(BadInput, match="no config.json"):
        resolve(str(tmp_path))


def test_hub_id_offline_fails_with_a_clear_message():
    with pytest.raises(BadInput, match="cannot load hub model 'someorg/some-model-that-is-not-cached'"):
        resolve("someorg/some-model-that-is-not-cached")


def test_unknown_card():
    with pytest.raises(BadInput, match="unknown model card"):
        resolve("card:gpt-17")


def test_cards_are_loadable_folders_of_the_stated_size():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {"llama-5m", "llama-50m", "llama-3.2-1b"} <= set(card_names())
    assert 4e6 < card_parameters("llama-5m") < 6e6 and 45e6 < card_parameters("llama-50m") < 60e6
    assert 1.0e9 < card_parameters("llama-3.2-1b") < 1.5e9
    src = resolve("card:llama-5m")
    assert src.random_weights and src.kind == "card"
    folder = card_dir("llama-5m")
    files = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()}
    assert "config.json" in files and any(n.endswith(".safetensors") for n in files)
    # built once: the second call returns the same folder with the very same files, not a rebuilt copy
    assert card_dir("llama-5m") == folder
    assert {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()} == files
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.hidden_size == 256 and "token_type_ids" not in tok("hello")
