"""Prices for `cache simulate --profile NAME`: an API model of the shared price list, or a price file.

Both are the cost model's (`llmbench.prices`): NAME is a model of profiles/prices/api_models.yaml,
or the path of a price file of the same shape (`{models: [{name, input_usd_per_1m,
output_usd_per_1m, price_date, price_source}]}`) holding one model. That module parses and checks
it, so a wrong key or value is reported the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path

from llmbench.errors import BadInput
from llmbench.prices import ApiModelPrice, load_api_prices


def price_of(name: str) -> ApiModelPrice:
    """The one model of price file NAME, else the shipped model called NAME; BadInput when neither."""
    path = Path(name)
    if path.is_file():
        models = load_api_prices(path, include_shipped=False)
        if len(models) != 1:
            # Several models would leave the price to a guess; a model name picks one from the list.
            raise BadInput(f"{path}: a price profile holds one model, this one holds {len(models)} "
                           f"({', '.join(m.name for m in models)})")
        return models[0]
    listed = {m.name: m for m in load_api_prices()}
    if name not in listed:
        raise BadInput(f"--profile {name}: neither an API model in the price list ({', '.join(sorted(listed))}) "
                       "nor a price file")
    return listed[name]


def input_output_per_million(name: str) -> tuple[float, float]:
    """(input, output) USD per 1M tokens of `price_of(name)`."""
    model = price_of(name)
    return model.input_usd_per_1m, model.output_usd_per_1m
