"""Write every export of a recommendation into a folder (atomically, like every results file)."""
from __future__ import annotations

from pathlib import Path

from llmbench.export.deployment import deployment_yaml
from llmbench.export.litellm import litellm_yaml
from llmbench.results import write_atomic, write_json


def write_exports(rec: dict, out: Path) -> list[Path]:
    """recommendation.json, deployment.yaml and gateway/litellm.yaml under out; their paths."""
    out = Path(out)
    paths = [out / "recommendation.json", out / "deployment.yaml", out / "gateway" / "litellm.yaml"]
    write_json(paths[0], rec)
    if not rec["options"]:
        # Nothing to deploy: a gateway or deployment file left from an earlier decision would
        # describe something this run does not support.
        for p in paths[1:]:
            p.unlink(missing_ok=True)
        return paths[:1]
    write_atomic(paths[1], deployment_yaml(rec))
    write_atomic(paths[2], litellm_yaml(rec))
    return paths
