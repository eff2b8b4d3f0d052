"""gateway/litellm.yaml: a LiteLLM proxy config (model_list, router_settings, litellm_settings).

Self-hosted options are reached as `openai/<served name>` on the OpenAI-compatible servers the start
scripts in deploy/ run (llama.cpp's llama-server, or vLLM on a GPU), one entry per replica and port;
API keys are only ever `os.environ/NAME` references, never values.
"""
from __future__ import annotations

from llmbench.export.servers import servers
from llmbench.export.yamlio import dump

EMBEDDING_ALIAS = "llmbench-embedding"
EMBEDDING_PORT = 8090
# The cache simulation embeds with all-MiniLM-L6-v2 (384-d); the gateway must embed the same way
# for the measured threshold to mean the same thing.
EMBEDDING_MODEL, EMBEDDING_DIM = "all-MiniLM-L6-v2", 384
UNMEASURED_THRESHOLD = 0.95
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # conservative: few false hits, used only when no simulation ran


def _entries(alias: str, s: dict) -> list[dict]:
    """One model_list entry per replica (its own api_base, one shared model_name), so that LiteLLM
    balances the alias over exactly the servers the start script runs; an API model is one entry."""
    bases = (s.get("launch") or {}).get("api_bases") or [None]
    ports = (s.get("launch") or {}).get("ports") or []
    out = []
    for i, base in enumerate(bases):
        params: dict = {"model": s["litellm_model"]}
        if base:
            params["api_base"] = base
        if s.get("api_key_env"):
            params["api_key"] = f"os.environ/{s['api_key_env']}"
        # Limits are per entry, so per replica: the deployment's capacity split evenly.
        if s.get("rpm"):
            params["rpm"] = max(1, s["rpm"] // len(bases))
        if s.get("tpm"):
            params["tpm"] = max(1, s["tpm"] // len(bases))
        # Six significant digits: a price, not a measurement artefact.
        params["input_cost_per_token"] = float(f"{s['input_cost_per_token']:.6g}")
        params["output_cost_per_token"] = float(f"{s['output_cost_per_token']:.6g}")
        info = {"id": f"{alias}/{s['option']}" + (f"/replica-{i + 1}" if len(bases) > 1 else ""),
                "llmbench_option": s["option"], "llmbench_role": s["role"]}
        if s.get("replicas") is not None:
            info["replicas"] = s["replicas"]
        if i < len(ports):
            info.update(replica=i + 1, port=ports[i])
        out.append({"model_name": alias, "litellm_params": params, "model_info": info})
    return out


def _gateway_cache(rec: dict) -> dict | None:
    # LiteLLM's semantic cache compares cosines only: the plain-cosine setting, never the verifier's
    # probability threshold.
    return (rec.get("cache") or {}).get("gateway")


def deployed_options(rec: dict) -> list[dict]:
    """The options the gateway sends traffic to: the routed classes' options, else the chosen one."""
    opts = {o["id"]: o for o in rec["options"]}
    if rec["mode"] == "routing":
        ids = [e["option"] for e in rec["routing"]["classes"] if e.get("option")]
    else:
        ids = [rec["choice"].get("chosen") or rec["choice"].get("closest")]
    return [opts[i] for i in ids if i in opts]


def cache_chosen(rec: dict) -> bool:
    """Whether the deployed option(s) include the semantic cache: the gateway carries exactly the
    chosen option's parts, so the cache is on only then (all of the traffic goes through one proxy)."""
    deployed = deployed_options(rec)
    return bool(deployed) and all(o.get("cache") for o in deployed)


def _cache_settings(rec: dict) -> dict:
    cache = _gateway_cache(rec)
    measured = bool(cache and cache.get("threshold") is not None)
    threshold = float(cache["threshold"]) if measured else UNMEASURED_THRESHOLD
    # The block is always there to switch on; it is on only when the chosen option has the cache.
    on = measured and cache_chosen(rec)
    return {
        "cache": on,
        "cache_params": {
            "type": "qdrant-semantic",
            "similarity_threshold": threshold,
            "qdrant_semantic_cache_embedding_model": EMBEDDING_ALIAS,
            "qdrant_semantic_cache_vector_size": EMBEDDING_DIM,
            "qdrant_collection_name": "llmbench-semantic-cache",
            "qdrant_quantization_config": "binary",
        },
    }


def litellm_config(rec: dict) -> dict:
    """The config as plain data (what LiteLLM's proxy reads from YAML)."""
    srv, fallbacks = servers(rec)
    strategy = (rec.get("gateway_routing") or {}).get("litellm_strategy") or "simple-shuffle"
    model_list = [e for s in srv for alias in s["aliases"] for e in _entries(alias, s)]
    model_list.append({
        "model_name": EMBEDDING_ALIAS,
        "litellm_params": {"model": f"openai/{EMBEDDING_MODEL}", "api_base": f"http://localhost:{EMBEDDING_PORT}/v1",
                           "api_key": "os.environ/LLMBENCH_EMBEDDING_API_KEY",
                           "input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
        "model_info": {"id": EMBEDDING_ALIAS, "mode": "embedding", "llmbench_role": "semantic-cache embedder"},
    })
    return {
        "model_list": model_list,
        "router_settings": {
            # The strategy the replicas were planned with (deployment.yaml's load_balancing): random
            # picks are simple-shuffle, join-shortest-queue is least-busy.
            "routing_strategy": strategy,
            "num_retries": 2,
            "allowed_fails": 3,
            "cooldown_time": 30,
            "fallbacks": [{alias: fbs} for alias, fbs in fallbacks.items()],
        },
        "litellm_settings": _cache_settings(rec),
        # The proxy refuses to start without a master key (clients send it as their bearer token):
        # read from the environment like every other secret.
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
    }


def litellm_yaml(rec: dict) -> str:
    cache = _gateway_cache(rec)
    if not cache or cache.get("threshold") is None:
        cache_line = f"semantic cache: not measured in this run, left off; {UNMEASURED_THRESHOLD} is a conservative default"
    else:
        served, wrong = cache.get("served_from_cache_rate"), cache.get("wrong_answer_rate")
        figs = (f"{served:.1%} of requests served from cache, {wrong:.1%} answered wrongly" if served is not None and wrong is not None
                else "share of requests served or answered wrongly not measured")
        state = ("ON: the chosen option includes it. LiteLLM prices a cache hit at $0, so its spend figures leave out\n"
                 "the servers' fixed cost and the embedder; read the monthly cost from deployment.yaml"
                 if cache_chosen(rec) else "OFF: the chosen option does not include it (cache: true switches it on)")
        cache_line = (f"semantic cache {state}.\nThe gateway's rule: plain cosine >= {cache['threshold']} from the cache simulation ({figs}; "
                      f"{cache.get('traffic') or 'traffic not stated'})")
    header = f"""LiteLLM proxy config written by llmbench for run {rec['run_id']} (mode: {rec['mode']}).
{rec['choice']['answer']}
Aliases: 'llmbench' takes any request; in routing mode 'llmbench-<class>' take each request class
(route by prompt length in the client or a pre-call hook); 'llmbench-fallback-*' are fallback targets.
Each self-hosted replica is one entry (same model_name: LiteLLM balances over them) whose api_base is
the port its start script deploy/serve-<name>.sh runs it on; an endpoint candidate keeps its measured
URL. Keys are read from the environment only (os.environ/NAME); set LLMBENCH_*_API_KEY to your
servers' keys (any value if they need none).
Self-hosted per-token costs split each request's measured cost between prefill and decode time.
{cache_line}; qdrant-semantic reads QDRANT_API_BASE / QDRANT_API_KEY from the environment.
Set LITELLM_MASTER_KEY (sk-..., long and random): clients send it as their bearer token.
Run: litellm --config gateway/litellm.yaml"""
    return dump(litellm_config(rec), header)
