"""Guardrails: checks run before (or after) the model, each a kind in one registry.

`spec` holds the typed config blocks (`guardrails: [{kind: embedding}, ...]`), `base` the Guard
interface and the registry, one module per kind (`rules`, `embedding`, `judge`), `evaluate` the
labelled-file report behind `llmbench guard eval`, `hook` the per-request hook of a run, and `fit`
the script that fits the shipped embedding guard. Nothing heavy is imported here.
"""
