"""Short, stable names for models and options (used in ids, gateway aliases and plots)."""
from __future__ import annotations

import re
from pathlib import PurePath


# A folder, hub id or card: no spaces or brackets. Anything else is a candidate's own `name:`, kept
# whole: 'tiny [/int4]' is a name, not a folder 'int4]' inside 'tiny ['.
_PATHLIKE = re.compile(r"[\w.~/-]+")


def _parts(model: str) -> list[str]:
    m = model[5:] if model.startswith("card:") else model
    if not _PATHLIKE.fullmatch(m):
        return [model]
    return [p for p in PurePath(m.rstrip("/")).parts if p not in ("/", ".", "..")] or [m]


def short_model(model: str) -> str:
    """'card:llama-5m' -> 'llama-5m'; '/models/my-llama' -> 'my-llama'; 'org/name' -> 'name';
    a candidate's own name ('tiny [/int4]') stays whole."""
    return _parts(model)[-1]


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes only (safe in a gateway alias or an env var name)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def env_name(text: str) -> str:
    """An environment variable name for an option's API key: LLMBENCH_<X>_API_KEY."""
    return f"LLMBENCH_{slug(text).replace('-', '_').upper()}_API_KEY"


def model_labels(models: list[str]) -> dict[str, str]:
    """A short label per distinct model, unique among them: './a/tiny' and './b/tiny' become
    'a-tiny' and 'b-tiny' (parent folders are added until the labels differ), so that option ids,
    served names and gateway aliases never point two candidates at one name."""
    distinct = list(dict.fromkeys(models))
    parts = {m: _parts(m) for m in distinct}
    depth = {m: 1 for m in distinct}
    while True:
        labels = {m: "-".join(parts[m][-depth[m]:]) for m in distinct}
        clash = {m for m in distinct if sum(labels[x] == labels[m] for x in distinct) > 1}
        grow = {m for m in clash if depth[m] < len(parts[m])}
        if not grow:
            break
        for m in grow:
            depth[m] += 1
    seen: dict[str, int] = {}
    for m in distinct:  # still equal after every folder (e.g. 'tiny' and './tiny'): number them
        n = seen[labels[m]] = seen.get(labels[m], 0) + 1
        if n > 1:
            labels[m] = f"{labels[m]}-{n}"
    return labels
