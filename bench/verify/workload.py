"""The prompts verify sends: the run's own workload, rebuilt from run.json with the run's seed."""
from __future__ import annotations

from llmbench.errors import BadInput
from llmbench.verify.spec import VerifySpec
from llmbench.workload import Prompt, build_prompts


def run_prompts(spec: VerifySpec, tokenizer) -> list[Prompt]:
    """The run's requests (the same lengths, and for a synthetic workload the same tokens) as measured."""
    from llmbench.config import Workload

    config = spec.meta.get("config") or {}
    if not config.get("workload"):
        raise BadInput(f"{spec.run_dir / 'run.json'}: no workload in the run's config: give --load TRACE to send a trace instead")
    try:
        workload = Workload.model_validate(config["workload"])
    except ValueError as exc:
        raise BadInput(f"{spec.run_dir / 'run.json'}: the run's workload does not read ({str(exc).splitlines()[0]})") from None
    prompts = build_prompts(workload, tokenizer, int(config.get("seed") or 0))
    if not prompts:
        raise BadInput(f"{spec.run_dir / 'run.json'}: the run's workload has no requests")
    return prompts
