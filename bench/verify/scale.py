"""The plan scaled to this machine.

A plan's replicas are machines of its hardware profile, each computing with all of its cores but
the one its client and gateway use (as the run measured them). This machine holds as many replicas
as its cores less that one allow. Those cores are shared out equally among the primary deployments
verify starts (a routed plan has two); each deployment starts as many replicas as its part holds
((cores - 1) // primaries // threads per replica, at least one) and sends that share of its load:
with random balancing each replica of the full deployment sees a Poisson stream of load / replicas,
which is what each started replica gets here, so the plan's latency percentiles stand as they are
and its throughput scales by the same share. (Under least-busy balancing the per-replica stream is
smoother than Poisson: the scaled check is then slightly pessimistic.)

When even one replica of each primary is more than the serving cores hold (a routed plan on 2
cores), the deployments would compute on the same cores, which the plan gives each its own: the load
then runs `in_turn`, each deployment's part of the schedule alone (run.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from llmbench.engines.llamacpp.server import CLIENT_CORES, usable_cores
from llmbench.verify.spec import VerifySpec


@dataclass
class Scale:
    """How many replicas of each deployment run here, and the share of its load they take."""

    cores: int
    started: dict[str, int]
    planned: dict[str, int]
    in_turn: bool = False  # the primaries' servers together need more cores than serve here

    def share(self, option: str) -> float:
        return self.started[option] / self.planned[option] if self.planned.get(option) else 1.0

    @property
    def scaled(self) -> bool:
        return any(self.started[o] < self.planned[o] for o in self.planned)

    def apply(self, spec: VerifySpec) -> VerifySpec:
        """The spec with only the replicas started here (the first ones, on the first ports)."""
        deps = [dataclasses.replace(d, replicas=d.replicas[:self.started[d.option]]) if d.option in self.started else d
                for d in spec.deployments]
        return dataclasses.replace(spec, deployments=deps)

    def dropped_ports(self, spec: VerifySpec) -> set[int]:
        """Ports of the replicas not started here (the gateway must not send to them)."""
        return {r.port for d in spec.deployments if d.option in self.started for r in d.replicas[self.started[d.option]:]}

    def describe(self) -> dict:
        return {"cores_here": self.cores, "in_turn": self.in_turn,
                "deployments": {o: {"planned_replicas": self.planned[o], "started": self.started[o],
                                    "load_share": self.share(o)} for o in self.planned},
                "rule": "replicas here = min(planned, (cores - 1 for the client and the gateway) // primaries // threads per "
                        "replica, at least 1); each deployment's "
                        "load is sent at the same share, so every started replica gets what one replica of the "
                        "full deployment would"}


def scale_to_machine(spec: VerifySpec, cores: int | None = None) -> Scale:
    """The replicas of each startable deployment this machine can run side by side."""
    cores = cores or usable_cores()
    startable = [d for d in spec.deployments if d.startable]
    # The servers get the cores but the client's and the gateway's (as the run measured them: its
    # servers' default threads keep that core free too). Two primaries each given every core would
    # compute on the same cores: each gets its share. Standbys take load only in the fallback
    # drill, when the primary they stand in for is down.
    serving = max(1, cores - CLIENT_CORES)
    each = max(1, serving // max(1, sum(d.role != "fallback" for d in startable)))
    started, planned = {}, {}
    for d in startable:
        planned[d.option] = len(d.replicas)
        started[d.option] = min(len(d.replicas), max(1, each // (d.threads or serving)))
    primaries = [d for d in startable if d.role != "fallback"]
    threads = sum(started[d.option] * (d.threads or serving) for d in primaries)
    return Scale(cores, started, planned, in_turn=len(primaries) > 1 and threads > serving)
