"""The prompts verify sends: the run's own workload, rebuilt from run.json with the run's seed.

The run sent a llama-server a synthetic prompt as token ids; verify sends text (through the gateway),
and random ids decoded to text read back about 12% longer (lognormal prompts of median 160). Sent as
they were built, the servers processed more prompt than the plan was asked about, while the
prediction simulated the workload's lengths (BENCHMARKS.md: the routed plan's long-prompt class). So
a random-token prompt is sent as a text that reads back as its ids.
"""
from __future__ import annotations

import dataclasses

from llmbench.errors import BadInput
from llmbench.verify.spec import VerifySpec
from llmbench.workload import Prompt, build_prompts, text_reading_back


def run_prompts(spec: VerifySpec, tokenizer) -> list[Prompt]:
    """The run's requests as measured: the same texts, and for a synthetic workload the same tokens cut
    to a text the server reads back as them (at most the same lengths)."""
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
    return [_as_read_back(tokenizer, p) for p in prompts]


def _as_read_back(tokenizer, prompt: Prompt) -> Prompt:
    """A prompt of random token ids (a synthetic workload's, a log's without its text) as a text that
    reads back as its ids, cut where it reads longer; a prompt made from its text stays."""
    if prompt.text is None or tokenizer(prompt.text)["input_ids"] == prompt.ids:
        return prompt
    ids, text = text_reading_back(tokenizer, prompt.ids, len(prompt.ids))
    return dataclasses.replace(prompt, ids=ids, text=text)
