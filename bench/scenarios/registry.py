"""One registry of scenarios, keyed by the config's `kind`."""
from __future__ import annotations

from llmbench.scenarios.base import Scenario
from llmbench.scenarios.batch import BatchScenario
from llmbench.scenarios.concurrency import ConcurrencyScenario
from llmbench.scenarios.replay import ReplayScenario
from llmbench.scenarios.single_stream import SingleStreamScenario
from llmbench.scenarios.sweep import SweepScenario

SCENARIOS: dict[str, type[Scenario]] = {
    s.kind: s for s in (SingleStreamScenario, BatchScenario, ConcurrencyScenario, SweepScenario, ReplayScenario)}


def make_scenario(config, seed: int = 0) -> Scenario:
    """The scenario object for one config entry (those with arrivals take the run's seed)."""
    cls = SCENARIOS[config.kind]
    return cls(config, seed=seed) if issubclass(cls, ConcurrencyScenario) else cls(config)
