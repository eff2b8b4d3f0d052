"""Write every export of a recommendation into a folder (atomically, like every results file)."""
from __future__ import annotations

import os
from pathlib import Path

from llmbench.export.deployment import deployment_yaml
from llmbench.export.litellm import litellm_yaml
from llmbench.export.scripts import deploy_scripts
from llmbench.export.servers import servers
from llmbench.results import write_atomic, write_json

DEPLOY_DIR = "deploy"


def _clear_scripts(folder: Path, keep: set[str]) -> None:
    # Scripts of an earlier decision would start servers this one does not deploy; an autoscaler
    # (hpa-*.yaml) belongs to deployment.yaml's autoscaling block, which a rewrite drops
    # (`llmbench plan --trace FILE --autoscale` writes both again).
    for p in [*folder.glob("serve-*.sh"), *folder.glob("hpa-*.yaml")] if folder.is_dir() else []:
        if p.name not in keep:
            p.unlink(missing_ok=True)


def write_exports(rec: dict, out: Path) -> list[Path]:
    """recommendation.json, deployment.yaml, gateway/litellm.yaml and deploy/serve-<name>.sh under
    out; their paths. Nothing deployable (no option, or none an engine serves and no API model):
    no gateway and no scripts, and deployment.yaml says why."""
    out = Path(out)
    rec_path, dep_path, gw_path = out / "recommendation.json", out / "deployment.yaml", out / "gateway" / "litellm.yaml"
    write_json(rec_path, rec)
    if not rec["options"]:
        # Nothing to deploy: a gateway or deployment file left from an earlier decision would
        # describe something this run does not support.
        for p in (dep_path, gw_path):
            p.unlink(missing_ok=True)
        _clear_scripts(out / DEPLOY_DIR, set())
        return [rec_path]
    srv, _ = servers(rec)
    write_atomic(dep_path, deployment_yaml(rec))
    paths = [rec_path, dep_path]
    if srv:
        write_atomic(gw_path, litellm_yaml(rec))
        paths.append(gw_path)
    else:
        gw_path.unlink(missing_ok=True)
    scripts = deploy_scripts(srv, rec["run_id"])
    _clear_scripts(out / DEPLOY_DIR, set(scripts))
    for name, text in scripts.items():
        p = out / DEPLOY_DIR / name
        write_atomic(p, text)
        os.chmod(p, os.stat(p).st_mode | 0o111)  # executable by whoever may read it
        paths.append(p)
    return paths
