"""Which measurements come from a served engine, and the slots each was measured with.

A served option (llama.cpp's `gguf-*` variants on a managed llama-server, or an `http` endpoint)
batches continuously over its `--parallel` slots: the planner models it with continuous.py, not
with the static batches of the in-process concurrency scenario. Its concurrency cells are not
queueing measurements to be checked against, but the step times at 1, 2, 4 ... busy slots: the
closed-loop cells (single-stream, clients=N, a sweep's sync and max) are fitted on, its open-loop
rate points are what the prediction is checked against (validate.py).
"""
from __future__ import annotations

from typing import Iterable

SERVED_VARIANT_PREFIXES = ("gguf-",)
SERVED_VARIANTS = ("http",)
# usage_source of requests measured over HTTP (the server's usage, or counted by the client).
SERVED_SOURCES = ("server", "tokenizer", "chunks")
# Closed-loop points whose concurrency is known and whose requests never wait for a slot.
_CLOSED_PREFIXES = ("clients=",)
SERVED_NOTE = ("served engine: planned as continuous batching over --parallel slots (a request takes a free slot at "
               "the next step, its prompt shares a step with the slots decoding), with the step time fitted at each "
               "measured slot count on the closed-loop cells; the machine's speed, measured on the same cells, varies "
               "from epoch to epoch in the simulation (no separate after-idle slowdown)")
_CLOSED_POINTS = ("single", "sweep=sync", "sweep=max")


def served_variant(variant: str | None) -> bool:
    """Whether a variant name is served through an OpenAI-compatible server."""
    v = str(variant or "")
    return v in SERVED_VARIANTS or v.startswith(SERVED_VARIANT_PREFIXES)


def served_row(row: dict) -> bool:
    """A summary row measured through a server: its variant, or the server facts of its cell."""
    return served_variant(row.get("variant")) or row.get("server_parallel") is not None


def served_records(records: Iterable) -> bool:
    """Whether an option's requests were measured through a server (llama.cpp, an endpoint)."""
    return any(served_variant(getattr(r, "variant", None)) or getattr(r, "usage_source", None) in SERVED_SOURCES
               for r in records)


def point_slots(point: str | None) -> int | None:
    """Requests a closed-loop point keeps in flight ('single' 1, 'clients=N' and 'batch=N' N); None for others."""
    p = str(point or "")
    if p == "single" or p == "sweep=sync":
        return 1
    if p.startswith(("clients=", "batch=")):
        try:
            return max(1, int(p.split("=", 1)[1]))
        except ValueError:
            return None
    return None


def row_slots(row: dict) -> int:
    """The slots a served row was measured with: the most of its server's --parallel (the cell's facts),
    its clients and its batch size (its requests carry batch_size 1; a rate point's --parallel is its
    scenario's max_batch)."""
    return max(int(row.get("server_parallel") or 0), point_slots(row.get("point")) or 0, int(row.get("batch_size") or 1), 1)


def closed_loop(record) -> bool:
    """A served request of a closed-loop cell (fitted on); rate points are left to check against."""
    p = str(record.point)
    return p in _CLOSED_POINTS or p.startswith(_CLOSED_PREFIXES)


def fit_records(records: Iterable) -> list:
    """The successful closed-loop requests a served option's model is fitted on."""
    return [r for r in records if r.ok and r.ttft_ms is not None and r.e2el_ms is not None and closed_loop(r)]


def served_fit_rows(rows: list[dict]) -> list[dict]:
    """A served option's rows to fit on: the closed-loop ones without error, else every row without error."""
    good = [r for r in rows if not r.get("error")]
    closed = [r for r in good if str(r.get("point")) in _CLOSED_POINTS or str(r.get("point")).startswith(_CLOSED_PREFIXES)]
    return closed or good
