"""Connecting to a Ray cluster for `run --ray ADDRESS`, or starting a local one (`local:N`) and stopping it."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

from llmbench.distributed import watchdog
from llmbench.errors import BadInput

# A small object store per node: records are small, and Ray's default claims 30% of RAM per node.
OBJECT_STORE_BYTES = 96 * 1024 * 1024
_LOCAL = re.compile(r"local:(\d+)")
_CONNECT = re.compile(r"(ray://)?[\w.\-\[\]:]+:\d+")


def hw_resource(profile_name: str) -> str:
    """The custom resource that names a hardware profile: a node offering it measures that profile's cells."""
    return f"hw:{profile_name}"


def parse_address(address: str) -> tuple[str, int]:
    """('local', N) for `local:N`, else ('connect', 0) for `auto` or a cluster address; BadInput otherwise."""
    m = _LOCAL.fullmatch(address.strip())
    if m:
        n = int(m.group(1))
        if not 1 <= n <= 16:
            raise BadInput(f"--ray {address}: local:N takes 1 to 16 nodes")
        return "local", n
    if address.strip().startswith("local"):
        raise BadInput(f"--ray {address}: write local:N (N nodes on this machine), auto, or a cluster address")
    if address.strip() != "auto" and not _CONNECT.fullmatch(address.strip()):
        raise BadInput(f"--ray {address!r}: write auto, local:N (N nodes on this machine) or HOST:PORT")
    return "connect", 0


def _quiet_env() -> None:
    # Ray's usage report would try to reach the internet; nothing here may.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def local_gpus(nodes: int, gpus: int) -> list[int]:
    """GPUs each local node offers: every GPU of this machine on the head, none elsewhere.

    Local nodes all see the same devices: giving each node the GPU would let cells share it.
    """
    return [gpus] + [0] * (nodes - 1)


@contextlib.contextmanager
def connected(address: str, profile_name: str, cpus_per_node: int = 1, gpus: int = 0) -> Iterator[dict]:
    """Be connected to Ray for the block; a local cluster started here is stopped on the way out.

    Each local node offers the profile's custom resource with capacity 1: one group of cells per
    node at a time, so cells on one node never share its cores (timings would disturb each other).
    """
    import ray

    kind, n = parse_address(address)
    _quiet_env()
    cluster = dog = None
    temp = None
    try:
        if kind == "local":
            from ray.cluster_utils import Cluster

            # Its own session folder, removed at the end. Ray's socket paths under it must fit AF_UNIX's
            # 107 bytes: a long $TMPDIR (make test's fresh one) would not leave room, so then /tmp.
            base = None if len(tempfile.gettempdir()) <= 24 else "/tmp"
            temp = tempfile.mkdtemp(prefix="llmb-ray-", dir=base)
            # The head writes its address to $TMPDIR/ray/ray_current_cluster (what `--ray auto` reads)
            # whatever temp_dir says, and fails where that folder does not exist yet.
            os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)
            dog = watchdog.start(temp)  # the cluster's processes die with this one, even by SIGKILL
            # Loopback named outright: otherwise Ray probes a public DNS server to find this host's address.
            node_args = dict(num_cpus=cpus_per_node, resources={hw_resource(profile_name): 1},
                             object_store_memory=OBJECT_STORE_BYTES, node_ip_address="127.0.0.1", temp_dir=temp)
            per_node = local_gpus(n, gpus)
            cluster = Cluster(initialize_head=True,
                              head_node_args=dict(include_dashboard=False, num_gpus=per_node[0], **node_args))
            for node_gpus in per_node[1:]:
                cluster.add_node(num_gpus=node_gpus, **node_args)
            cluster.wait_for_nodes(timeout=120)
            ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False,
                     _node_ip_address="127.0.0.1")
        else:
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, ValueError) as exc:
                raise BadInput(f"--ray {address}: no Ray cluster there ({str(exc).splitlines()[0][:200]})") from None
        yield {"address": address, "kind": kind, "nodes_started": n}
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        if dog is not None:
            dog.terminate()
            dog.wait(timeout=10)
