"""Names shared by the proxy plug-in (litellm_plugin.py), the exporter and verify, in a module that
imports nothing: the exporter and verify must not import LiteLLM (nor start the plug-in) to use them."""
from __future__ import annotations

PLUGIN = "llmbench.optimizers.cache.litellm_plugin.semantic_cache"  # litellm_settings.callbacks entry
SETTINGS_KEY = "llmbench_cache"  # callback_settings.<this>: the rule and threshold the plug-in runs
OPT_OUT_HEADER = "x-llmbench-cache"  # a request with this header set to "off" bypasses the cache
CALL_TYPES = ["atext_completion", "text_completion", "acompletion", "completion"]
