"""How each self-hosted deployment is started: its engine, ports and, per replica, the exact command.

llama.cpp deployments get the `llama-server` command llmbench measured with (the engine's own
`server_argv`, so the flags cannot drift from the measurement), with `--parallel` set to the planned
slots per replica and the context sized per slot as measured. A GPU torch option gets the
`vllm serve` line that corresponds, marked not measured here. An endpoint is its URL, as measured.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from llmbench.recommend.serving import ENDPOINT, LLAMA_CPP, VLLM

BASE_PORT = 8000  # the first replica's port; each deployment's replicas take the next ports in turn
MISSING_GGUF = "model.gguf"  # run.json named no GGUF (an older run): the script's GGUF variable must be set
HOST = "127.0.0.1"  # loopback: the gateway runs beside the servers (a start script's HOST overrides it)


def replica_count(server: dict) -> int:
    """Servers a start script runs: the plan's replicas (at least one: a deployment whose every
    request is a cache hit still needs a server for the misses of another load)."""
    return max(1, int(server.get("replicas") or 0))


def slots(server: dict, option: dict) -> int:
    """Requests one replica serves at once: the slots (a served option's planned --parallel) or batch
    its plan sized it with, else the option's plan's, else the batch size it was measured at."""
    plan = option.get("plan") or {}
    return max(1, int(server.get("plan_parallel") or server.get("plan_max_batch") or plan.get("parallel")
                      or plan.get("max_batch") or option.get("batch_size") or 1))


def _fallback_llama_argv(server: str, model: str, *, port: int, parallel: int, ctx_size: int, threads: int | None,
                         alias: str, host: str) -> list[str]:
    argv = [server, "-m", model, "--host", host, "--port", str(port), "--parallel", str(parallel), "--ctx-size", str(ctx_size)]
    if threads:
        argv += ["--threads", str(threads)]
    return argv + ["--alias", alias]


def _engine_info(facts: dict):
    """The EngineInfo the run measured with (run.json `engines`), or None when it cannot be rebuilt."""
    doc = facts.get("engine_info") or {}
    try:
        from dataclasses import fields

        from llmbench.engines.llamacpp import EngineInfo

        names = {f.name for f in fields(EngineInfo)}
        kw = {k: (Path(v) if k in ("bin_dir", "source_dir", "server", "quantize") and v else v) for k, v in doc.items() if k in names}
        return EngineInfo(**kw)
    except (ImportError, TypeError, ValueError):
        return None


# The flags a deployment sets differently from the measured cell, by every name llama-server takes.
_FLAG_NAMES = {"port": ("--port",), "parallel": ("--parallel", "-np"), "ctx_size": ("-c", "--ctx-size"),
               "threads": ("-t", "--threads"), "alias": ("--alias", "-a"), "host": ("--host",), "model": ("-m", "--model")}


def with_values(argv: list[str], values: dict) -> list[str]:
    """The measured argv with these flags' values replaced (a flag it lacks is appended; None leaves it)."""
    out = list(argv)
    for key, value in values.items():
        if value is None:
            continue
        names = _FLAG_NAMES[key]
        at = next((i for i, a in enumerate(out[:-1]) if a in names), None)
        if at is None:
            out += [names[0], str(value)]
        else:
            out[at + 1] = str(value)
    return out


def llama_argv(facts: dict, *, port: int, parallel: int, alias: str, host: str = HOST) -> list[str]:
    """The llama-server argv for one replica: the argv the run measured with (run.json's server_cmd,
    every flag kept) with this replica's port, slots, context and name; else the engine's own
    `server_argv`; else the same flags written here (an llmbench without the managed engine)."""
    server = facts.get("server") or "llama-server"
    model = Path(facts.get("gguf_path") or MISSING_GGUF)
    ctx = parallel * int(facts.get("ctx_per_slot") or 2048)
    kw = dict(port=port, parallel=parallel, ctx_size=ctx, threads=facts.get("threads"), alias=alias, host=host)
    measured = facts.get("measured_cmd")
    if isinstance(measured, list) and measured and facts.get("gguf_path"):
        return with_values([str(a) for a in measured], {**kw, "model": str(model)})
    try:
        from llmbench.engines.llamacpp.server import server_argv
    except ImportError:  # an llmbench without the managed engine: the same flags, written here
        return _fallback_llama_argv(server, str(model), **kw)
    info = _engine_info(facts)
    if info is None:
        return _fallback_llama_argv(server, str(model), **kw)
    return [str(a) for a in server_argv(info, model, **kw)]


def vllm_argv(facts: dict, *, port: int, max_num_seqs: int, alias: str, host: str = HOST) -> list[str]:
    """`vllm serve MODEL ...` for one replica: the same weights, as many sequences as the planned batch."""
    argv = ["vllm", "serve", str(facts.get("model")), "--host", host, "--port", str(port), "--max-num-seqs", str(max_num_seqs),
            "--served-model-name", alias]
    if facts.get("dtype"):
        argv += ["--dtype", facts["dtype"]]
    if facts.get("max_model_len"):
        argv += ["--max-model-len", str(facts["max_model_len"])]
    return argv


def launch(server: dict, option: dict, first_port: int) -> dict:
    """{engine, measured, ports, api_bases, commands[, gguf]} for a self-hosted server; an endpoint's
    URL; for an option no engine serves, {engine: None, reason}."""
    facts = option.get("engine") or {}
    name = facts.get("name")
    if name == ENDPOINT:
        return {"engine": ENDPOINT, "measured": True, "ports": [], "api_bases": [facts.get("url")], "commands": [],
                "endpoint": {k: facts.get(k) for k in ("url", "model", "api", "api_key_env")}}
    if name not in (LLAMA_CPP, VLLM):
        return {"engine": None, "measured": False, "ports": [], "api_bases": [], "commands": [],
                "reason": option.get("not_servable_reason") or "no engine serves this option"}
    ports = [first_port + i for i in range(replica_count(server))]
    n = slots(server, option)
    alias = server["served_name"]
    if name == LLAMA_CPP:
        cmds = [llama_argv(facts, port=p, parallel=n, alias=alias) for p in ports]
        extra = {"gguf": {"path": facts.get("gguf_path"), "sha256": facts.get("gguf_sha256")}, "version": facts.get("version"),
                 "model_file": str(Path(facts.get("gguf_path") or MISSING_GGUF)),
                 "parallel": n, "ctx_size": n * int(facts.get("ctx_per_slot") or 2048), "threads": facts.get("threads")}
    else:
        cmds = [vllm_argv(facts, port=p, max_num_seqs=n, alias=alias) for p in ports]
        extra = {"max_num_seqs": n, "note": facts.get("note")}
    return {"engine": name, "measured": bool(facts.get("measured")), "ports": ports,
            "api_bases": [f"http://{HOST}:{p}/v1" for p in ports], "commands": cmds, **extra}


def command_line(argv: list[str]) -> str:
    """One shell-quoted line (what deployment.yaml shows and a user pastes)."""
    return shlex.join(argv)
