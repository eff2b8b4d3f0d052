"""What a group of cells asks of a Ray node, and the check that some node can give it before anything is submitted."""
from __future__ import annotations

from llmbench.distributed.cluster import hw_resource
from llmbench.errors import BadInput


def group_needs(device: str, profile_name: str, cpus: float = 1) -> dict[str, float]:
    """Resources one variant's group of cells takes on its node (Ray's names: CPU, GPU, custom ones)."""
    needs = {"CPU": float(cpus), hw_resource(profile_name): 1.0}
    if device.startswith("cuda"):
        needs["GPU"] = 1.0
    return needs


def fitting_nodes(needs: dict[str, float], nodes: list[dict]) -> list[dict]:
    """The alive nodes (ray.nodes() entries) whose total resources cover every need."""
    return [n for n in nodes if n.get("Alive") and all(n.get("Resources", {}).get(k, 0) >= v for k, v in needs.items())]


def _short(resources: dict) -> str:
    shown = {k: v for k, v in sorted(resources.items()) if not k.startswith(("node:", "object_store", "memory"))}
    return ", ".join(f"{k}={v:g}" for k, v in shown.items()) or "nothing"


def check_placeable(cells: list[str], needs: dict[str, float]) -> None:
    """BadInput (exit 2) naming the first cell and the missing resource when no node can ever run the group.

    A task asking for a resource no node has would wait forever in Ray's queue: it is refused here.
    """
    import ray

    total = ray.cluster_resources()
    nodes = ray.nodes()
    if fitting_nodes(needs, nodes):
        return
    missing = [f"{k}={v:g}" for k, v in needs.items() if total.get(k, 0) < v]
    if not missing:  # the cluster has each resource, but no single node has all of them together
        missing = [f"{' + '.join(f'{k}={v:g}' for k, v in needs.items())} on one node"]
    raise BadInput(f"cell {cells[0]}: no Ray node can place it: missing {', '.join(missing)} "
                   f"(the cluster has {_short(total)})")


def check_generators(candidates) -> None:
    """BadInput when an endpoint candidate asks for more load generators than the cluster has nodes
    with a CPU to spare (they go one per node: a placement group that can never be placed would wait forever)."""
    import ray

    nodes = fitting_nodes({"CPU": 1.0}, ray.nodes())
    for cand in candidates:
        k = cand.endpoint.generators if cand.endpoint is not None else 1
        if k > len(nodes):
            raise BadInput(f"candidate {cand.label}: endpoint generators: {k} needs {k} Ray nodes with a CPU each, "
                           f"the cluster has {len(nodes)}")
