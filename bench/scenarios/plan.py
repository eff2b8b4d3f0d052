"""The runner's plan of cells where served variants meet scenarios: what is skipped, what is replayed."""
from __future__ import annotations

from typing import Callable

from llmbench.errors import BadInput
from llmbench.metrics import group_cells
from llmbench.records import RequestRecord


def served_of(config, backend_for: Callable) -> dict[str, bool]:
    """Whether each variant of the run is served (streams over HTTP) rather than in-process."""
    return {v: bool(getattr(backend_for(v), "served", False)) for cand in config.candidates for v in cand.variants}


def check_unserved(config, served: dict[str, bool]) -> None:
    """BadInput when a run of served variants only asks for a scenario no server can run (batch)."""
    if not served or not all(served.values()):
        return
    for i, sc in enumerate(config.scenarios):
        if sc.kind == "batch":
            raise BadInput(f"scenarios[{i}]: batch (static batches) has no meaning for a served endpoint, "
                           "and every variant of this run is served; use concurrency or sweep")


def drop_unserved(plan: list[tuple], scenarios: list, served: dict[str, bool], say: Callable[[str], None]) -> list[tuple]:
    """The plan without the cells of points a server cannot run (static batches on a served variant).

    Says so in one line when any are dropped.
    """
    keep, dropped = [], set()
    for cell in plan:
        _, variant, si, point = cell
        if served.get(variant) and scenarios[si].served_load(point) is None:
            dropped.add((scenarios[si].kind, variant))
        else:
            keep.append(cell)
    if dropped:
        kinds = sorted({k for k, _ in dropped})
        variants = sorted({v for _, v in dropped})
        say(f"{', '.join(kinds)}: skipped on served variants ({', '.join(variants)}): a server batches "
            "continuously, so static batches have no meaning for it")
    return keep


def replay(scenarios: list, plan: list[tuple], label_of: Callable[[int], str], done: set[tuple],
           records: list[RequestRecord]) -> None:
    """Tell each scenario the logged records of its completed cells, in plan order (resume)."""
    if not done:
        return
    cells = group_cells(records)
    for ci, variant, si, point in plan:
        sc = scenarios[si]
        key = (label_of(ci), variant, sc.kind, point.label)
        if key in done:
            sc.observe(point, cells.get(key, []))
