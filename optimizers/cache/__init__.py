"""A semantic cache: embed prompts, find the nearest cached prompt, and decide whether to serve it.

Modules, one job each:
  embedder    turn texts into L2-normalised float32 vectors (MiniLM by default, pluggable)
  store       the growing vector index on the Numba kernels
  policy      eviction (LRU by entries and bytes, TTL)
  cache       the cache itself: decision rule, statistics
  features    pair features for the verifier
  verifier    a calibrated model that decides a hit from more than the cosine
  chooser     pick the setting with the most hits under a target false-hit rate
  simulate    replay a log or labelled pairs through the cache
  fit         refit the shipped default verifier and setting (`python -m llmbench.optimizers.cache.fit`)
"""
