"""One set of K load-generator actors on K nodes (a STRICT_SPREAD placement group) and their clocks.

A set is started whole and ended whole: when one of its actors dies, the others are killed and its
placement group removed, so a cell's retry (or the next cell) gets a fresh set on the nodes still
alive (see loadgroup). Every wait here has a deadline.

Clock offset, NTP-style: the driver reads its clock (t_send), asks the actor for its clock (t_actor),
reads its clock again (t_recv); of several round trips, the one with the least RTT gives
offset = t_actor - (t_send + t_recv) / 2, which is right to within half that RTT.
"""
from __future__ import annotations

import time

OFFSET_SAMPLES = 16
READY_S = 120.0  # placing the actors, loading their backends (tokenizer, a probe of the endpoint)
REMOVED_S = 30.0  # a removed placement group's bundles given back (the next set needs those CPUs)


class TooFewNodes(RuntimeError):
    """Fewer alive nodes with a CPU than the set needs: no set can start, now or on a retry."""


def measure_offset(actor, samples: int = OFFSET_SAMPLES) -> dict:
    """The actor's clock minus the driver's, from the least-RTT round trip of `samples`; in seconds."""
    import ray

    from llmbench.distributed.loadgen import LoadGenerator

    clock = LoadGenerator.clock  # the driver's clock is the same function, read in this process
    best = None
    for _ in range(samples):
        sent = clock()
        theirs = ray.get(actor.clock.remote(), timeout=30)
        back = clock()
        if best is None or back - sent < best[0]:
            best = (back - sent, theirs - (sent + back) / 2)
    return {"offset_s": best[1], "rtt_s": best[0], "samples": samples}


def alive_cpu_nodes() -> int:
    """How many alive Ray nodes offer a CPU (a generator takes one, one generator per node)."""
    import ray

    from llmbench.distributed.placement import fitting_nodes

    return len(fitting_nodes({"CPU": 1.0}, ray.nodes()))


class GeneratorSet:
    """K LoadGenerator actors of one endpoint candidate, one per node, with their measured clock offsets."""

    def __init__(self, prep, ci: int, k: int, number: int):
        self.prep, self.ci, self.k, self.number = prep, ci, k, number
        self.pg = None
        self.actors: list = []
        self.gens: list[dict] = []  # per generator: index, node, offset, RTT (run.json's ray.generators)
        self.n_prompts = 0
        self.pg_state = ""  # the placement group's state once closed, as Ray's table says it

    def start(self) -> "GeneratorSet":
        """Place the actors (TooFewNodes when the cluster has lost too many), load them, measure their clocks."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from llmbench.distributed.loadgen import LoadGenerator

        alive = alive_cpu_nodes()
        if alive < self.k:  # a STRICT_SPREAD group that cannot be placed would only wait out READY_S
            raise TooFewNodes(f"{self.k} load generators need {self.k} alive Ray nodes with a CPU, "
                              f"{alive} left ({self.k - alive} missing)")
        self.pg = placement_group([{"CPU": 1.0}] * self.k, strategy="STRICT_SPREAD")
        ray.get(self.pg.ready(), timeout=READY_S)
        remote = ray.remote(LoadGenerator)
        self.actors = [remote.options(num_cpus=1, max_restarts=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
            self.pg, placement_group_bundle_index=i)).remote(i, self.prep, self.ci) for i in range(self.k)]
        nodes = ray.get([a.node.remote() for a in self.actors], timeout=READY_S)
        self.n_prompts = ray.get(self.actors[0].prompt_count.remote(), timeout=30)
        for i, (actor, node) in enumerate(zip(self.actors, nodes)):
            off = measure_offset(actor)
            self.gens.append({"index": i, "set": self.number, "ray_node_id": node["ray_node_id"],
                              "hostname": node["hostname"], "cpu_count": node["cpu_count"],
                              "offset_ms": round(off["offset_s"] * 1e3, 3), "rtt_ms": round(off["rtt_s"] * 1e3, 3),
                              "offset_samples": off["samples"]})
        return self

    def nodes(self) -> list[str]:
        """The Ray node ids the set's actors ran on (those that reported one)."""
        return [g["ray_node_id"] for g in self.gens]

    def close(self) -> None:
        """Kill the actors (a survivor would go on loading the endpoint) and remove the placement group."""
        import ray
        from ray.util.placement_group import placement_group_table, remove_placement_group

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already dead with its node: nothing left to end
                pass
        self.actors = []
        if self.pg is None:
            return
        remove_placement_group(self.pg)
        deadline = time.monotonic() + REMOVED_S
        while True:
            self.pg_state = placement_group_table(self.pg).get("state", "")
            if self.pg_state == "REMOVED" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.pg = None
