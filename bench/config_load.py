"""Reading a run config: YAML to RunConfig, every fault named at once, every path made absolute."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from llmbench.errors import BadInput


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    # The config blocks an annotation can hold: list[Candidate], Annotated[LengthDist, ...], unions.
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _keys_at(loc: tuple) -> list[str]:
    """The keys allowed where an unknown key sits (for a 'did you mean' hint)."""
    from llmbench.config import RunConfig

    models: list[type[BaseModel]] = [RunConfig]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        inner = [m2 for m in models if part in m.model_fields for m2 in _models_in(m.model_fields[part].annotation)]
        # a scenario's location names its kind ('batch') between the index and the key
        tagged = [m for m in models if "kind" in m.model_fields and m.model_fields["kind"].default == part]
        models = inner or tagged or models
    return sorted({k for m in models for k in m.model_fields})


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-", "tagged-union"))) or "(top level)"


def _describe(err: dict) -> str:
    where = _where(err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        near = difflib.get_close_matches(key, _keys_at(err["loc"]), n=1, cutoff=0.6)
        return f"{where}: unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
    msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{where}: {msg}"


def parse_config(data: Any, source: str) -> "RunConfig":  # noqa: F821 - defined in llmbench.config
    """Validate a mapping as a RunConfig; BadInput names the file and every faulty key on failure."""
    from llmbench.config import RunConfig

    if not isinstance(data, dict):
        raise BadInput(f"{source}: the config must be a mapping of keys, got {type(data).__name__}")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(e) for e in exc.errors()))
        if len(problems) == 1:
            raise BadInput(f"{source}: {problems[0]}") from None
        raise BadInput(f"{source}: {len(problems)} problems: " + "; ".join(problems)) from None
    # The embedded default's paths (the shipped reference model, its golden set) are relative to
    # the folder it ships in, like any config's: it must run from any directory, installed or not.
    base = Path(source).resolve().parent if source != "<default>" else _profiles_dir()
    _resolve_paths(config, base, source)
    from llmbench.judge.setup import check_judge

    check_judge(config, base, source)  # the judge's rubric, labels and model: read before anything loads
    if config.cache is not None and config.cache.verifier is not None:
        from llmbench.optimizers.cache.profile import load_user_profile

        # Read now: a bad profile found at the cache stage would come after the measurements.
        load_user_profile(str(config.cache.verifier), f"{source}: cache.verifier")
    return config


def _profiles_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("llmbench.profiles")))


def _absolute(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(os.path.abspath(base / p))


def _resolve_paths(config, base: Path, source: str) -> None:
    # Every path in a config is relative to the config's folder, as users expect, and is stored
    # absolute in run.json so that a resume works from any directory. A missing file is bad input
    # now, not a failed stage after the measurements.
    wl = config.workload
    holders = [("workload.dataset.path", wl.dataset, "path"), ("workload.templates.file", wl.templates, "file"),
               ("workload.templates.variables", wl.templates, "variables"), ("workload.log", wl, "log"),
               ("quality.golden_set", config.quality, "golden_set"), ("compression.prompts", config.compression, "prompts"),
               ("cache.log", config.cache, "log"), ("cache.verifier", config.cache, "verifier"),
               ("plan.trace", config.plan, "trace")]
    for key, block, attr in holders:
        value = getattr(block, attr, None) if block is not None else None
        if value is None:
            continue
        value = _absolute(base, value)
        setattr(block, attr, value)
        if not value.is_file():
            raise BadInput(f"{source}: {key}: {value} does not exist or is not a file")
    if isinstance(config.hardware, str) and (config.hardware.endswith((".yaml", ".yml")) or "/" in config.hardware):
        hw = _absolute(base, config.hardware)
        if not hw.is_file():
            raise BadInput(f"{source}: hardware: {hw} does not exist or is not a file")
        config.hardware = str(hw)
    for cand in config.candidates:
        if cand.endpoint is not None:  # no weights here; a tokenizer folder is relative to the config
            tok = cand.endpoint.tokenizer
            if tok and not tok.startswith("card:"):
                cand.endpoint = cand.endpoint.model_copy(update={"tokenizer": str(_absolute(base, tok))})
            continue
        model = str(cand.model)
        if model.startswith("card:"):
            continue
        # `./m`, `../m`, `~/m` and absolute paths are folders; a bare `models/llama` is a folder
        # when one exists beside the config, and a hub id otherwise.
        local = _absolute(base, model)
        if model.startswith(("./", "../", "~", "/")) or local.exists():
            cand.model = str(local)


def load_config(path: str | Path | None) -> tuple["RunConfig", str]:  # noqa: F821
    """Read and validate a YAML config (None: the embedded default). Returns (config, its text)."""
    from llmbench.yamlsafe import load_yaml

    if path is None:
        from importlib import resources

        text = (resources.files("llmbench.profiles") / "default.yaml").read_text()
        source = "<default>"
    else:
        from llmbench.files import read_input_text

        text = read_input_text(path, "config")
        source = str(path)
    return parse_config(load_yaml(text, source), source), text
