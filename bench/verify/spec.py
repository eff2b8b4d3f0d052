"""What `verify` starts and what it checks, read from a results folder's deployment outputs.

deployment.yaml is the source: each llama.cpp deployment's exact `llama-server` commands (one per
replica, on the ports its deploy/serve-<name>.sh uses), its predicted figures and planned load;
gateway/litellm.yaml is what the proxy loads (and each entry's per-token costs); recommendation.json
gives the request classes of a routed recommendation. Anything missing is a BadInput naming the file.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llmbench.errors import BadInput
from llmbench.export.servers import MAIN_ALIAS, class_alias

LLAMA_CPP = "llama.cpp"
_ENV_REF = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass
class Replica:
    """One server to start: its loopback port and the exact argv deployment.yaml gives it."""

    port: int
    argv: list[str]


@dataclass
class Deployment:
    """One deployment of deployment.yaml (a primary or a fallback standby)."""

    option: str
    role: str
    served_name: str
    aliases: list[str]
    engine: str | None
    replicas: list[Replica]
    predicted: dict | None
    load_rps: float | None
    cost_per_request: float | None
    model: str
    prices: dict = field(default_factory=dict)  # {input_cost_per_token, output_cost_per_token} in the gateway
    gguf_sha256: str | None = None
    variant: str | None = None
    cache_share: float = 0.0  # the share of its requests the plan has the semantic cache serve

    def _flag(self, *names: str) -> str | None:
        argv = self.replicas[0].argv if self.replicas else []
        for i, a in enumerate(argv[:-1]):
            if a in names:
                return argv[i + 1]
        return None

    @property
    def threads(self) -> int | None:
        """Threads one replica computes with (-t), None when its command leaves it to llama-server."""
        t = self._flag("--threads", "-t")
        return int(t) if t and t.isdigit() else None

    @property
    def parallel(self) -> int:
        """Requests one replica serves at once (its --parallel)."""
        n = self._flag("--parallel", "-np")
        return int(n) if n and n.isdigit() else 1

    @property
    def slot_tokens(self) -> int | None:
        """Context per slot (--ctx-size / --parallel): the longest prompt + output a request may have."""
        c = self._flag("--ctx-size", "-c")
        return int(c) // self.parallel if c and c.isdigit() else None

    @property
    def startable(self) -> bool:
        return self.engine == LLAMA_CPP and bool(self.replicas)


@dataclass
class RouteClass:
    """A request class of a routed recommendation: prompts of lo..hi tokens go to `alias`."""

    alias: str
    lo: int
    hi: int | None
    share: float
    option: str

    def holds(self, prompt_tokens: int) -> bool:
        return prompt_tokens >= self.lo and (self.hi is None or prompt_tokens <= self.hi)


@dataclass
class VerifySpec:
    """Everything verify needs from a results folder."""

    run_dir: Path
    run_id: str
    mode: str
    target_rps: float | None
    strategy: str | None
    deployments: list[Deployment]
    classes: list[RouteClass]
    fallbacks: dict[str, list[str]]
    gateway: Path
    gateway_cfg: dict
    meta: dict
    slo: list

    def by_alias(self, alias: str) -> Deployment:
        return next(d for d in self.deployments if alias in d.aliases)

    @property
    def primaries(self) -> list[Deployment]:
        return [d for d in self.deployments if d.role != "fallback"]

    def route(self, prompt_tokens: int) -> str:
        """The gateway alias a request of this prompt length is sent to."""
        for c in self.classes:
            if c.holds(prompt_tokens):
                return c.alias
        return MAIN_ALIAS

    def model_ref(self, dep: "Deployment") -> str:
        """What a deployment's model was loaded from (a folder, hub id or card): the run config's
        candidate whose name or model it is; a named candidate's results carry only its name."""
        for c in (self.meta.get("config") or {}).get("candidates") or []:
            if dep.model in (c.get("name"), c.get("model")):
                return str(c.get("model"))
        return dep.model

    def key_envs(self) -> list[str]:
        """The environment variables the gateway config reads API keys from."""
        names = []
        for m in self.gateway_cfg.get("model_list") or []:
            hit = _ENV_REF.match(str((m.get("litellm_params") or {}).get("api_key") or ""))
            if hit and hit.group(1) not in names:
                names.append(hit.group(1))
        return names


def _read(path: Path, what: str, loader) -> dict:
    if not path.is_file():
        raise BadInput(f"{path}: no {what} (run `llmbench recommend {path.parent}` first)")
    try:
        doc = loader(path.read_text())
    except (ValueError, yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: unreadable {what} ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: {what} is not a mapping")
    return doc


def _replicas(d: dict, where: str) -> list[Replica]:
    serving = d.get("serving") or {}
    commands = (serving.get("start") or {}).get("commands") or []
    ports = serving.get("ports") or []
    out = []
    for i, line in enumerate(commands):
        argv = shlex.split(str(line))
        port = next((argv[j + 1] for j in range(len(argv) - 1) if argv[j] == "--port"), None)
        if port is None or not str(port).isdigit():
            raise BadInput(f"{where}: serving.start.commands[{i}] has no --port")
        if i < len(ports) and int(ports[i]) != int(port):
            raise BadInput(f"{where}: serving.start.commands[{i}] serves on port {port}, serving.ports says {ports[i]}")
        out.append(Replica(int(port), argv))
    return out


def _prices(cfg: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for m in cfg.get("model_list") or []:
        opt = (m.get("model_info") or {}).get("llmbench_option")
        p = m.get("litellm_params") or {}
        if opt and opt not in out:
            out[opt] = {k: float(p[k]) for k in ("input_cost_per_token", "output_cost_per_token") if p.get(k) is not None}
    return out


def read_spec(run_dir: str | Path) -> VerifySpec:
    """The deployments of a results folder; BadInput when nothing there can be started here."""
    run = Path(run_dir)
    if not run.is_dir():
        raise BadInput(f"{run}: no such results folder")
    rec = _read(run / "recommendation.json", "recommendation.json", json.loads)
    dep = _read(run / "deployment.yaml", "deployment.yaml", yaml.safe_load)
    if not dep.get("deployments"):
        why = "; ".join(f"{n.get('option')}: {n.get('reason')}" for n in dep.get("not_deployable") or []) or "no option was recommended"
        raise BadInput(f"{run}: nothing deployable in deployment.yaml ({why})")
    gateway = run / "gateway" / "litellm.yaml"
    cfg = _read(gateway, "gateway/litellm.yaml", yaml.safe_load)
    prices = _prices(cfg)
    options = {o.get("id"): o for o in rec.get("options") or []}
    deps = []
    for i, d in enumerate(dep["deployments"]):
        if d.get("kind") == "sidecar":
            continue
        where = f"{run / 'deployment.yaml'}: deployments[{i}] ({d.get('option')})"
        serving = d.get("serving") or {}
        deps.append(Deployment(
            option=str(d.get("option")), role=str(d.get("role")), served_name=str(d.get("served_name")),
            aliases=list(d.get("aliases") or []), engine=serving.get("engine"),
            replicas=_replicas(d, where) if serving.get("engine") == LLAMA_CPP else [],
            predicted=d.get("predicted"), load_rps=d.get("load_rps"), cost_per_request=d.get("cost_per_request_usd"),
            model=str(d.get("model")), prices=prices.get(str(d.get("option")), {}),
            gguf_sha256=(serving.get("gguf") or {}).get("sha256"), variant=d.get("variant"),
            cache_share=float(((options.get(d.get("option")) or {}).get("cache") or {}).get("served_from_cache_rate") or 0.0)))
        script = (serving.get("start") or {}).get("script")
        if deps[-1].startable and (not script or not (run / script).is_file()):
            raise BadInput(f"{where}: its start script {script or 'deploy/serve-*.sh'} is missing from {run}")
    primaries = [d for d in deps if d.role != "fallback"]
    if not any(d.startable for d in primaries):
        what = ", ".join(f"{d.option} ({d.engine or 'no engine'})" for d in primaries) or "no primary deployment"
        raise BadInput(f"{run}: nothing verify can start here: it starts llama.cpp deployments, and the primaries are {what}")
    meta = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    classes = []
    if rec.get("mode") == "routing":
        for e in (rec.get("routing") or {}).get("classes") or []:
            if e.get("option"):
                c = e["class"]
                classes.append(RouteClass(class_alias(c), int(c.get("lo") or 0), c.get("hi"), float(c.get("share") or 0), e["option"]))
    return VerifySpec(run_dir=run, run_id=str(dep.get("run_id") or rec.get("run_id")), mode=str(rec.get("mode")),
                      target_rps=dep.get("target_rps"), strategy=(dep.get("load_balancing") or {}).get("gateway_strategy"),
                      deployments=deps, classes=classes, fallbacks=dict(dep.get("fallbacks") or {}), gateway=gateway,
                      gateway_cfg=cfg, meta=meta, slo=list(dep.get("slo") or []))
