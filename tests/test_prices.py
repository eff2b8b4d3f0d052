"""A user's price file is read as safely as a config: duplicate keys and alias bombs are bad input."""
from __future__ import annotations

import pytest

from llmbench.errors import BadInput
from llmbench.prices import load_api_prices

ENTRY = "  - {name: mine, input_usd_per_1m: 1.0, output_usd_per_1m: 2.0, price_date: '2026-11-30', price_source: contract}\n"


def test_own_price_overrides_and_is_read(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("models:\n" + ENTRY)
    mine = [m for m in load_api_prices(f) if m.name == "mine"]
    assert len(mine) == 1 and (mine[0].input_usd_per_1m, mine[0].output_usd_per_1m) == (1.0, 2.0)


def test_duplicate_keys_in_a_price_file_are_refused(tmp_path):
    f = tmp_path / "p.yaml"
    # (plain safe_load keeps the last `models` silently: the empty list would be lost without a word)
    f.write_text("models: []\nmodels:\n" + ENTRY)
    with pytest.raises(BadInput, match="p.yaml"):
        load_api_prices(f)


def test_an_alias_bomb_in_a_price_file_is_refused(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
              f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
    f = tmp_path / "p.yaml"
    f.write_text("\n".join(lines) + "\nmodels: *i\n")
    with pytest.raises(BadInput, match="p.yaml"):
        load_api_prices(f)
