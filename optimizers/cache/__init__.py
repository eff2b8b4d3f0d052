"""A semantic cache: embed prompts, find the nearest cached prompt, and decide whether to serve it.

Modules, one job each:
  embedder    texts to unit float32 vectors (MiniLM by default, pluggable) plus an on-disk store
  store       the growing vector index on the Numba kernels
  policy      eviction: LRU by entries and by bytes, TTL
  decision    decision rules: plain cosine, or the verifier
  cache       the cache itself (exact repeats first, then the rule), with statistics
  features    pair features for the verifier
  verifier    a logistic model over pair features, stored as plain numbers
  chooser     the setting with the most hits under a target false-hit rate
  profile     the shipped default (profiles/cache/default.json)
  logs        read labelled pairs, prompt logs and requests.jsonl
  prices      a per-token price from the shared price list or a profile
  simulate    replay a log through the cache (simulate_pairs, simulate_prompts, simulate_log, sweep_pairs)
  figures     per-request rates, units, the embedding time of one request, the gateway's block
  plot        the sweep as a PNG
  fit         refit the shipped default: `python -m llmbench.optimizers.cache.fit [--check]`
"""
