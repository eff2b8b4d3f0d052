"""A Ray session for one `llmbench run --ray`: connected and checked before the results folder is written."""
from __future__ import annotations

import contextlib
import time

from llmbench.distributed.cluster import connected
from llmbench.distributed.placement import check_generators, check_placeable, group_needs
from llmbench.run_setup import Prepared


class RaySession:
    """Holds the connection (and a local cluster started for it) until close(); at exit at the latest."""

    def __init__(self, address: str, prep: Prepared):
        self.address = address
        self.prep = prep
        self.needs = group_needs(prep.device, prep.hardware.name)
        self._stack = contextlib.ExitStack()
        self.info: dict = {}

    def open(self) -> "RaySession":
        """Connect (or start local:N), then refuse an unplaceable matrix (BadInput) before anything is submitted."""
        started = time.monotonic()
        try:
            self.info = self._stack.enter_context(connected(self.address, self.prep.hardware.name, gpus=self._gpus()))
            self.info["connect_s"] = round(time.monotonic() - started, 3)  # a local cluster's start-up, mostly
            check_placeable(self._cells(), self.needs)
            check_generators(self.prep.config.candidates)
        except BaseException:
            self.close()
            raise
        return self

    def _gpus(self) -> int:
        if not self.prep.device.startswith("cuda"):
            return 0
        import torch

        return torch.cuda.device_count()

    def _cells(self) -> list[str]:
        # Every cell of a run asks for the same resources (one device, one hardware profile): the
        # message names the first, and how many more share its fate.
        cfg = self.prep.config
        names = [f"{c.label} {v} {s.kind}" for c in cfg.candidates for v in c.variants for s in cfg.scenarios]
        return [names[0] + (f" (and {len(names) - 1} more cells)" if len(names) > 1 else "")]

    def nodes(self) -> dict[str, dict]:
        """The cluster's alive nodes by Ray node id: host, CPUs, GPUs, custom resources."""
        import ray

        return {n["NodeID"]: {"host": n.get("NodeManagerHostname"), "resources": n.get("Resources", {})}
                for n in ray.nodes() if n.get("Alive")}

    def runner(self, prep, run_dir, meta, console):
        """The runner that measures through this session."""
        from llmbench.distributed.driver import RayRunner

        return RayRunner(prep, run_dir, meta, console, self)

    def close(self) -> None:
        """Disconnect; a local cluster started here is stopped (its processes end with it)."""
        self._stack.close()


def open_session(address: str, prep: Prepared) -> RaySession:
    """Connected to Ray at ADDRESS (auto, HOST:PORT, local:N) with the matrix's resources checked."""
    return RaySession(address, prep).open()
