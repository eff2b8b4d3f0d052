"""What `llmbench compress` reads as PROMPTS (issue 13 item 11): a JSON array or a CSV is not one plain prompt."""
import pytest

from llmbench.commands.compress import read_prompts
from llmbench.errors import BadInput


@pytest.mark.parametrize("name, text, expected", [
    ("a.json", '["first prompt", {"prompt": "second", "question": "why?"}]', ["first prompt", "second\n\nwhy?"]),
    ("b.json", '{\n  "prompt": "one object,\\n pretty-printed"\n}\n', ["one object,\n pretty-printed"]),
    ("c.jsonl", '{"prompt": "x"}\n{"text": "y"}\n', ["x", "y"]),
    ("d.txt", "[INST] plain text that starts with a bracket [/INST]\n", ["[INST] plain text that starts with a bracket [/INST]\n"]),
    ("e.txt", "just text,\nwith, commas\n", ["just text,\nwith, commas\n"]),
])
def test_each_prompt_file_form_reads_as_its_prompts(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert [p.text() for p in read_prompts(tmp_path / name)] == expected


@pytest.mark.parametrize("name, text, needle", [
    ("p.csv", "prompt,label\nhello,1\n", "table is not read as prompts"),
    ("p.json", "[1, 2]", "p.json[0]: each prompt must be"),
    ("p.json", "[]", "array is empty"),
    ("p.json", "[\"unclosed\"", "not valid JSON"),
])
def test_a_table_or_a_bad_json_file_is_refused(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(BadInput, match=__import__("re").escape(needle)):
        read_prompts(tmp_path / name)
