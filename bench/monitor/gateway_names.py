"""Names shared by the gateway's interaction log (gateway_log.py) and the exporter, in a module that
imports nothing: the exporter must not import LiteLLM (nor start the log writer) to use them."""
from __future__ import annotations

CALLBACK = "llmbench.monitor.gateway_log.interaction_log"  # litellm_settings.callbacks entry
SETTINGS_KEY = "llmbench_gateway_log"  # callback_settings.<this>: where and how the log is written
PATH_ENV = "LLMBENCH_GATEWAY_LOG"  # overrides callback_settings' path
DEFAULT_PATH = "gateway-log/requests.jsonl"  # relative: next to where the proxy runs (its working directory)
DEFAULT_MAX_BYTES = 64 * 2**20
DEFAULT_BACKUPS = 10
# The names every line carries in place of a run's: drift and `workload: {log:}` tell gateway records by them.
RUN_ID = SCENARIO = "gateway"
UNKNOWN_VARIANT = "unknown"  # an entry llmbench did not write says no variant


def default_settings() -> dict:
    """The block the exporter writes under callback_settings (the writer's defaults, spelled out)."""
    return {"path": DEFAULT_PATH, "max_bytes": DEFAULT_MAX_BYTES, "backups": DEFAULT_BACKUPS, "record_prompts": False}
