"""gateway/litellm.yaml: a LiteLLM proxy config (model_list, router_settings, litellm_settings).

Self-hosted options are reached as `openai/<served name>` on the OpenAI-compatible servers the start
scripts in deploy/ run (llama.cpp's llama-server, or vLLM on a GPU), one entry per replica and port;
API keys are only ever `os.environ/NAME` references, never values. The semantic cache is llmbench's
own, inside the proxy (optimizers/cache/litellm_plugin.py), unless the run's config asks for
LiteLLM's qdrant-semantic cache with a vector-store URL (cache.gateway: qdrant, cache.qdrant_url).
Either way the proxy writes the interaction log (monitor/gateway_log.py), one request record per request.
"""
from __future__ import annotations

from llmbench.export.servers import servers
from llmbench.export.yamlio import dump
from llmbench.monitor.gateway_names import CALLBACK as LOG_CALLBACK, SETTINGS_KEY as LOG_SETTINGS_KEY, default_settings
from llmbench.optimizers.cache.gateway_names import CALL_TYPES as PLUGIN_CALL_TYPES, PLUGIN, SETTINGS_KEY

EMBEDDING_ALIAS = "llmbench-embedding"
EMBEDDING_PORT = 8090
# The cache simulation embeds with all-MiniLM-L6-v2 (384-d); the gateway must embed the same way
# for the measured threshold to mean the same thing.
EMBEDDING_MODEL, EMBEDDING_DIM = "all-MiniLM-L6-v2", 384
UNMEASURED_THRESHOLD = 0.95  # conservative: few false hits, used only when no simulation ran
RATE_LIMIT_CHECK = "enforce_model_rate_limits"  # LiteLLM's pre-call check that enforces each entry's rpm/tpm
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"


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
        # The interaction log's names for the deployment (the run's candidate and variant): drift
        # compares a logged request with the run's requests of the same pair.
        info["llmbench_model"] = s["model"]
        if s.get("variant"):
            info["llmbench_variant"] = s["variant"]
        if s.get("replicas") is not None:
            info["replicas"] = s["replicas"]
        if i < len(ports):
            info.update(replica=i + 1, port=ports[i])
        out.append({"model_name": alias, "litellm_params": params, "model_info": info})
    return out


def _gateway_cache(rec: dict) -> dict | None:
    # The figures of the rule the gateway deploys (cache.json's deploy entry): the +cache options were
    # priced on these. On Qdrant that is plain cosine (LiteLLM compares cosines only).
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


def cache_store(rec: dict) -> str:
    """Which semantic cache the gateway runs: 'llmbench' (in the proxy, the default) or 'qdrant'."""
    return ((rec.get("cache") or {}).get("deploy") or {}).get("gateway") or "llmbench"


def plugin_settings(rec: dict) -> dict:
    """The plug-in's rule, from cache.json's deploy entry (the rule the options were priced on): the
    fitted verifier or plain cosine, its threshold, and the cache profile (a file's absolute path, so
    that the proxy runs the user's profile); plain cosine at the conservative default when unmeasured."""
    deploy = (rec.get("cache") or {}).get("deploy") or {}
    if deploy.get("threshold") is None:
        return {"verifier": "cosine", "threshold": UNMEASURED_THRESHOLD, "profile": "default"}
    out = {"verifier": str(deploy.get("verifier") or "cosine"), "threshold": float(deploy["threshold"]),
           "profile": str(deploy.get("profile") or "default")}
    if deploy.get("candidates"):
        out["candidates"] = int(deploy["candidates"])
    return out


def _cache_settings(rec: dict) -> tuple[dict, dict | None]:
    """(litellm_settings, callback_settings or None)."""
    cache = _gateway_cache(rec)
    measured = bool(cache and cache.get("threshold") is not None)
    # The block is always there to switch on; it is on only when the chosen option has the cache.
    on = measured and cache_chosen(rec)
    if cache_store(rec) == "llmbench":
        # LiteLLM's own cache machinery (hits replayed as streams, streamed misses stored) over
        # llmbench's storage, which the callback installs when the proxy imports it.
        return ({"cache": on, "cache_params": {"type": "local", "supported_call_types": PLUGIN_CALL_TYPES},
                 "callbacks": [PLUGIN]}, {SETTINGS_KEY: plugin_settings(rec)})
    deploy = (rec.get("cache") or {}).get("deploy") or {}
    threshold = float(cache["threshold"]) if measured else UNMEASURED_THRESHOLD
    return {
        "cache": on,
        "cache_params": {
            "type": "qdrant-semantic",
            "qdrant_api_base": deploy.get("qdrant_url"),
            "qdrant_api_key": f"os.environ/{deploy.get('qdrant_api_key_env') or 'QDRANT_API_KEY'}",
            "similarity_threshold": threshold,
            "qdrant_semantic_cache_embedding_model": EMBEDDING_ALIAS,
            "qdrant_semantic_cache_vector_size": EMBEDDING_DIM,
            "qdrant_collection_name": "llmbench-semantic-cache",
            "qdrant_quantization_config": "binary",
        },
    }, None


def _embedding_entry() -> dict:
    return {"model_name": EMBEDDING_ALIAS,
            "litellm_params": {"model": f"openai/{EMBEDDING_MODEL}", "api_base": f"http://localhost:{EMBEDDING_PORT}/v1",
                               "api_key": "os.environ/LLMBENCH_EMBEDDING_API_KEY",
                               "input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
            "model_info": {"id": EMBEDDING_ALIAS, "mode": "embedding", "llmbench_role": "semantic-cache embedder"}}


def litellm_config(rec: dict) -> dict:
    """The config as plain data (what LiteLLM's proxy reads from YAML)."""
    srv, fallbacks = servers(rec)
    strategy = (rec.get("gateway_routing") or {}).get("litellm_strategy") or "simple-shuffle"
    model_list = [e for s in srv for alias in s["aliases"] for e in _entries(alias, s)]
    settings, callback_settings = _cache_settings(rec)
    if callback_settings is None:  # LiteLLM's qdrant cache embeds through a model entry
        model_list.append(_embedding_entry())
    # Every request through the proxy is logged as a request record (llmbench.monitor.gateway_log).
    settings["callbacks"] = [*settings.get("callbacks", []), LOG_CALLBACK]
    callback_settings = {**(callback_settings or {}), LOG_SETTINGS_KEY: default_settings()}
    doc = {
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
        "litellm_settings": settings,
        # The proxy refuses to start without a master key (clients send it as their bearer token):
        # read from the environment like every other secret.
        "general_settings": {"master_key": f"os.environ/{MASTER_KEY_ENV}"},
    }
    if any(k in e["litellm_params"] for e in model_list for k in ("rpm", "tpm")):
        # Without this check LiteLLM only weighs its picks by rpm/tpm; with it a request that picks a
        # deployment past its budget (this minute's requests or tokens, per UTC minute) goes to the
        # fallbacks (the deployment cools down), or is refused with 429 (tests/test_gateway_proxy.py).
        doc["router_settings"]["optional_pre_call_checks"] = [RATE_LIMIT_CHECK]
    doc["callback_settings"] = callback_settings
    return doc


def _cache_line(rec: dict) -> str:
    cache = _gateway_cache(rec)
    llmbench = cache_store(rec) == "llmbench"
    if not cache or cache.get("threshold") is None:
        rule = (f"llmbench's cache would run plain cosine >= {UNMEASURED_THRESHOLD}" if llmbench
                else f"{UNMEASURED_THRESHOLD} is a conservative default")
        return f"semantic cache: not measured in this run, left off; {rule}"
    served, wrong = cache.get("served_from_cache_rate"), cache.get("wrong_answer_rate")
    figs = (f"{served:.1%} of requests served from cache, {wrong:.1%} answered wrongly" if served is not None and wrong is not None
            else "share of requests served or answered wrongly not measured")
    state = ("ON: the chosen option includes it. LiteLLM prices a cache hit at $0, so its spend figures leave out\n"
             "the servers' fixed cost and the embedder; read the monthly cost from deployment.yaml"
             if cache_chosen(rec) else "OFF: the chosen option does not include it (cache: true switches it on)")
    if llmbench:
        p = plugin_settings(rec)
        rule = "plain cosine" if p["verifier"] == "cosine" else f"verifier {p['verifier']} (cache profile {p['profile']}) probability"
        return (f"semantic cache {state}.\nllmbench's cache runs inside the proxy (callbacks: {PLUGIN}; no extra server):\n"
                f"MiniLM embeddings, the Numba index, exact repeats first, then {rule} >= {p['threshold']}, the run's fitted\n"
                f"setting (callback_settings.{SETTINGS_KEY}). The plan priced this same rule's figures ({figs}; "
                f"{cache.get('traffic') or 'traffic not stated'}); `llmbench verify` measures it through the proxy")
    return (f"semantic cache {state}.\nThe gateway's rule: plain cosine >= {cache['threshold']} from the cache simulation ({figs}; "
            f"{cache.get('traffic') or 'traffic not stated'}); qdrant-semantic stores vectors at the URL given, its key read from\n"
            "the variable named in qdrant_api_key, and embeds through the llmbench-embedding entry")


def litellm_yaml(rec: dict) -> str:
    """The config as YAML with a header that says what it deploys and how to run it."""
    header = f"""LiteLLM proxy config written by llmbench for run {rec['run_id']} (mode: {rec['mode']}).
{rec['choice']['answer']}
Aliases: 'llmbench' takes any request; in routing mode 'llmbench-<class>' take each request class
(route by prompt length in the client or a pre-call hook); 'llmbench-fallback-*' are fallback targets.
Each self-hosted replica is one entry (same model_name: LiteLLM balances over them) whose api_base is
the port its start script deploy/serve-<name>.sh runs it on; an endpoint candidate keeps its measured
URL. Keys are read from the environment only (os.environ/NAME); set LLMBENCH_*_API_KEY to your
servers' keys (any value if they need none).
Self-hosted per-token costs split each request's measured cost between prefill and decode time.
Budgets: an entry's rpm/tpm is what its replica carries at the SLO, counted per UTC minute; the proxy
enforces them (optional_pre_call_checks): a request that picks an entry past them goes to the fallbacks, else 429.
{_cache_line(rec)}.
Every request through the proxy is appended to gateway-log/requests.jsonl (relative to where the proxy
runs; callback_settings.{LOG_SETTINGS_KEY}, or $LLMBENCH_GATEWAY_LOG for the path), one llmbench request
record a line, rotated by size, prompts hashed unless record_prompts: true. Feed it back with
`llmbench drift gateway-log/requests.jsonl --against RUN_DIR`, or as a run's `workload: {{log: FILE}}`.
Set LITELLM_MASTER_KEY (sk-..., long and random): clients send it as their bearer token.
Run: litellm --config gateway/litellm.yaml"""
    return dump(litellm_config(rec), header)
