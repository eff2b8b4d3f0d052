"""llmbench's semantic cache inside the LiteLLM proxy: no vector store, no embedding server.

The emitted gateway/litellm.yaml turns LiteLLM's own response cache on with `type: local` and lists
`llmbench.optimizers.cache.litellm_plugin.semantic_cache` under `litellm_settings.callbacks`; when the
proxy imports that callback, it swaps the storage behind `litellm.cache` for `GatewaySemanticCache`.
LiteLLM keeps doing what it does for any cache (replaying a hit as a stream when the request
streams, assembling a streamed miss before storing it, skipping the model call on a hit); this
storage decides what a hit is: the prompt embedded with MiniLM (in this process), the nearest cached
prompts from the Numba kernels (store.py), then the fitted rule (the verifier, or plain cosine) at
the threshold written in `callback_settings.llmbench_cache`. Exact repeats (normalised text) are
served first, as in the simulation (cache.py).

Entries are kept per scope (model, sampling parameters, prompt or chat form), so a cached answer is
only served for a request that asked the same model the same way. Nothing is written to disk and
nothing is loaded but the shipped MiniLM weights and the cache profile's plain numbers (JSON).
A request opts out with `x-llmbench-cache: off` (verify's plan check sends its synthetic load so).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from litellm.caching.base_cache import BaseCache
from litellm.integrations.custom_logger import CustomLogger

from llmbench.optimizers.cache.cache import Lookup, SemanticCache
from llmbench.optimizers.cache.decision import CosineRule, DecisionRule, VerifierRule
from llmbench.optimizers.cache.policy import EvictionPolicy
from llmbench.optimizers.cache.profile import PLAIN_COSINE, CacheProfile, load_profile

from llmbench.optimizers.cache.gateway_names import CALL_TYPES, OPT_OUT_HEADER, SETTINGS_KEY  # noqa: E402
SCOPE_PARAMS = ("model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "seed",
                "ignore_eos", "min_tokens", "n_predict")
log = logging.getLogger("llmbench.cache.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    """What the proxy runs: the rule (`cosine` or a verifier of the profile), its threshold, and limits."""

    verifier: str
    threshold: float
    profile: str = "default"
    candidates: int | None = None
    max_entries: int | None = 100_000
    ttl_s: float | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "GatewaySettings":
        """Settings from callback_settings.llmbench_cache; ValueError naming the key that is wrong."""
        if not isinstance(d, dict) or "threshold" not in d or "verifier" not in d:
            raise ValueError(f"callback_settings.{SETTINGS_KEY} needs 'verifier' (a profile verifier or "
                             f"'{PLAIN_COSINE}') and 'threshold'")
        return cls(str(d["verifier"]), float(d["threshold"]), str(d.get("profile") or "default"),
                   int(d["candidates"]) if d.get("candidates") else None,
                   int(d["max_entries"]) if d.get("max_entries") else None,
                   float(d["ttl_s"]) if d.get("ttl_s") else None)

    def load(self) -> CacheProfile:
        """The cache profile (a shipped name, or a file's path); ValueError in one line when it is
        missing or not a cache profile."""
        try:
            return load_profile(self.profile)
        except FileNotFoundError:
            raise ValueError(f"callback_settings.{SETTINGS_KEY}.profile: {self.profile} does not exist (a cache profile "
                             "file written by python -m llmbench.optimizers.cache.fit, or a shipped name)") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"callback_settings.{SETTINGS_KEY}.profile: {self.profile} is not a readable cache profile "
                             f"({type(exc).__name__}: {exc})") from None

    def rule(self) -> tuple[DecisionRule, int]:
        """The decision rule and how many nearest entries it sees (the profile's, unless set)."""
        profile = self.load()
        if self.verifier == PLAIN_COSINE:
            rule: DecisionRule = CosineRule(self.threshold)
        elif self.verifier in profile.verifiers:
            rule = VerifierRule(profile.verifiers[self.verifier], self.threshold)
        else:
            raise ValueError(f"callback_settings.{SETTINGS_KEY}.verifier: {self.verifier!r} is not in cache profile "
                             f"{self.profile!r} (it has {', '.join(sorted(profile.verifiers))}, or '{PLAIN_COSINE}')")
        return rule, self.candidates or profile.candidates


def prompt_text(kwargs: dict) -> str | None:
    """The request's text as the simulation embeds it: a completion's prompt, or the chat's contents joined."""
    prompt = kwargs.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    msgs = kwargs.get("messages")
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in msgs):
        return "\n".join(m["content"] for m in msgs)
    return None  # token ids, images, tool content: not something the cache can compare


def _opted_out(kwargs: dict) -> bool:
    for holder in (kwargs.get("metadata"), kwargs.get("litellm_metadata"), (kwargs.get("litellm_params") or {}).get("metadata")):
        headers = (holder or {}).get("headers") if isinstance(holder, dict) else None
        if isinstance(headers, dict) and str(headers.get(OPT_OUT_HEADER, "")).lower() in ("off", "0", "false", "no"):
            return True
    return False


def scope_of(kwargs: dict) -> str:
    """Which requests may share answers: the same model and sampling parameters, the same API form."""
    form = "prompt" if kwargs.get("prompt") is not None else "messages"
    return json.dumps([form] + [kwargs.get(k) for k in SCOPE_PARAMS], default=str, sort_keys=True)


class GatewaySemanticCache(BaseCache):
    """LiteLLM cache storage whose lookups are llmbench's semantic cache, one SemanticCache per scope."""

    def __init__(self, settings: GatewaySettings, embedder=None) -> None:
        super().__init__()
        from llmbench.optimizers.cache.embedder import MiniLMEmbedder

        self.settings = settings
        self.rule, self.candidates = settings.rule()
        # The model itself, not the on-disk vector store the simulator uses: a gateway keeps no prompt on disk.
        self.embedder = embedder or MiniLMEmbedder(batch_size=1)
        self._caches: dict[str, SemanticCache] = {}
        self._lock = threading.Lock()  # one lookup or insert at a time: the index is not thread-safe
        self.lookups = self.hits = self.inserts = self.skipped = 0

    def _cache(self, scope: str) -> SemanticCache:
        if scope not in self._caches:
            policy = EvictionPolicy(max_entries=self.settings.max_entries, ttl_s=self.settings.ttl_s)
            self._caches[scope] = SemanticCache(self.embedder, self.rule, self.candidates, policy)
        return self._caches[scope]

    def lookup(self, text: str, scope: str) -> Lookup:
        """Embed and look up one prompt in its scope (counts in the statistics)."""
        with self._lock:
            res = self._cache(scope).lookup(text)
            self.lookups += 1
            self.hits += int(res.hit)
        return res

    def get_cache(self, key, **kwargs):
        """The stored entry (LiteLLM's {timestamp, response}) of a hit, else None."""
        text = prompt_text(kwargs)
        if text is None or _opted_out(kwargs):
            self.skipped += 1
            return None
        res = self.lookup(text, scope_of(kwargs))
        log.debug("llmbench cache %s (score %.4f, %.1f ms)", "hit" if res.hit else "miss", res.score, res.latency_ms)
        return res.response if res.hit else None

    async def async_get_cache(self, key, **kwargs):
        # Embedding is CPU work: off the event loop, so that other requests keep streaming meanwhile.
        return await asyncio.to_thread(self.get_cache, key, **kwargs)

    def set_cache(self, key, value, **kwargs):
        """Store a miss's response under its prompt (exact repeats of a cached prompt are not stored twice)."""
        text = prompt_text(kwargs)
        if text is None or _opted_out(kwargs):
            return
        with self._lock:
            cache = self._cache(scope_of(kwargs))
            if cache.exact_entry(text) is None:
                cache.insert(text, value)
                self.inserts += 1

    async def async_set_cache(self, key, value, **kwargs):
        await asyncio.to_thread(self.set_cache, key, value, **kwargs)

    async def async_set_cache_pipeline(self, cache_list, **kwargs):
        for key, value in cache_list:
            await self.async_set_cache(key, value, **kwargs)

    async def disconnect(self):
        return None

    def stats(self) -> dict:
        """Lookups, hits, inserts and requests skipped (no comparable text, or opted out)."""
        return {"lookups": self.lookups, "hits": self.hits, "inserts": self.inserts, "skipped": self.skipped,
                "entries": sum(len(c) for c in self._caches.values())}


def install(settings: dict | None = None) -> GatewaySemanticCache | None:
    """Put llmbench's storage behind `litellm.cache`; None (and a log line) when the config left LiteLLM's cache off."""
    import litellm

    if litellm.cache is None:
        log.warning("llmbench semantic cache not installed: litellm_settings.cache is off "
                    "(or listed after callbacks); requests go to the models uncached")
        return None
    backend = GatewaySemanticCache(GatewaySettings.from_dict(
        settings if settings is not None else (getattr(litellm, "callback_settings", None) or {}).get(SETTINGS_KEY)))
    litellm.cache.cache = backend
    litellm.cache.supported_call_types = list(CALL_TYPES)
    return backend


class SemanticCacheCallback(CustomLogger):
    """The object `litellm_settings.callbacks` names: importing it installs the cache, once."""

    def __init__(self) -> None:
        super().__init__()
        try:
            self.backend = install()
        except ValueError as exc:
            # A proxy that started without the cache it was configured with would serve every request
            # uncached and say nothing: stop it here, with one line and no traceback.
            sys.stderr.write(f"llmbench semantic cache: {exc}\n")
            sys.stderr.flush()
            os._exit(2)
        if self.backend is not None:
            self.backend.embedder.embed(["warm up"])  # the model loads now, not on the first request

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict):
        """A text completion's cached answer in text-completion chunks. (LiteLLM replays every cached
        answer as chat chunks, `delta.content`; a /v1/completions client reads `choices[].text`.)"""
        text_api = request_data.get("prompt") is not None and request_data.get("messages") is None
        async for item in response:
            yield as_text_chunk(item) if text_api else item

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):
        """The same for an unstreamed cached answer: its text in `choices[].text`, where LiteLLM leaves None."""
        for choice in getattr(response, "choices", None) or []:
            message = getattr(choice, "message", None)
            if getattr(choice, "text", "") is None and message is not None:
                content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
                choice.text = content or ""
        return response


def as_text_chunk(item: Any) -> Any:
    """A chat chunk rewritten as a text-completion chunk (same id, text, finish reason and usage); other items as they are."""
    doc = item.model_dump(exclude_none=True) if hasattr(item, "model_dump") else item
    if not isinstance(doc, dict) or doc.get("object") != "chat.completion.chunk":
        return item
    choices = [{"index": c.get("index", 0), "text": (c.get("delta") or {}).get("content") or "",
                "logprobs": None, "finish_reason": c.get("finish_reason")} for c in doc.get("choices") or []]
    out = {"id": doc.get("id"), "object": "text_completion", "created": doc.get("created"), "model": doc.get("model"),
           "choices": choices}
    if doc.get("usage"):
        out["usage"] = doc["usage"]
    from litellm.types.utils import TextCompletionResponse

    return TextCompletionResponse(**out)  # a model: the proxy writes it as JSON (a dict would go out as its repr)


semantic_cache = SemanticCacheCallback()
