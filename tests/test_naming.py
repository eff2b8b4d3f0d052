"""Short names of models: folders and hub ids shortened, a candidate's own name kept whole."""
from __future__ import annotations

from llmbench.recommend.naming import model_labels, short_model, slug


def test_paths_cards_and_hub_ids_are_shortened():
    assert short_model("card:llama-5m") == "llama-5m"
    assert short_model("/models/my-llama/") == "my-llama"
    assert short_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen2.5-0.5B-Instruct"


def test_a_name_with_brackets_and_a_slash_is_kept_whole():
    # Issue 20 item 9: 'tiny [/int4]' became 'int4]' (split as if it were a folder).
    assert short_model("tiny [/int4]") == "tiny [/int4]"
    assert model_labels(["tiny [/int4]", "card:llama-5m"]) == {"tiny [/int4]": "tiny [/int4]", "card:llama-5m": "llama-5m"}
    assert slug(model_labels(["tiny [/int4]"])["tiny [/int4]"]) == "tiny-int4"


def test_folders_sharing_a_last_name_get_distinct_labels():
    assert model_labels(["./a/tiny", "./b/tiny"]) == {"./a/tiny": "a-tiny", "./b/tiny": "b-tiny"}
