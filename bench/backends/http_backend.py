"""Any OpenAI-compatible server (vLLM, TGI, llama.cpp, SGLang, a LiteLLM proxy, a hosted API) as a variant.

The candidate's `endpoint:` says where; the only variant is "http". Requests stream through one
StreamClient per cell (llmbench.served.client); the scenario's served driver calls open_client()
and send(), and turns each StreamResult into a record with to_record(). LlamaCppBackend reuses all
of this and sets `endpoint` (its URL) per cell, so nothing here is fixed at construction.
"""
from __future__ import annotations

from typing import ClassVar

from llmbench.backends.base import Backend, LoadedInfo
from llmbench.errors import BadInput
from llmbench.served.client import StreamClient, StreamResult
from llmbench.served.endpoint import EndpointSpec
from llmbench.workload import Prompt

VARIANT = "http"


class EndpointUnavailable(RuntimeError):
    """The endpoint stopped answering after the run started (its cells fail; exit 1)."""


def load_tokenizer(ref: str | None):
    """The tokenizer that turns synthetic token ids into text and counts output without usage.

    None: the project's shipped tokenizer; `card:NAME`: a card's tokenizer (the shipped one);
    otherwise a local tokenizer folder (never fetched from a hub).
    """
    from llmbench.models.tokenizer import load_shipped_tokenizer

    if ref is None:
        return load_shipped_tokenizer()
    if ref.startswith("card:"):
        from llmbench.models.cards import card_config

        card_config(ref[len("card:"):].strip())  # BadInput for an unknown card
        return load_shipped_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ref, local_files_only=True)


class HttpBackend(Backend):
    """An OpenAI-compatible endpoint, measured over HTTP with streaming."""

    kind = "http"
    served: ClassVar[bool] = True
    endpoint: EndpointSpec | None = None  # set by the runner (endpoint candidates) or per cell (subclasses)

    @classmethod
    def check_variant(cls, variant: str, device: str) -> None:
        """An endpoint has one variant, the server as it is."""
        if variant != VARIANT:
            raise BadInput(f"variant {variant!r}: an endpoint candidate's only variant is {VARIANT!r}")

    def _spec(self) -> EndpointSpec:
        if self.endpoint is None:
            raise RuntimeError(f"{type(self).__name__}: no endpoint set (a candidate without `endpoint:`?)")
        return self.endpoint

    def load(self) -> None:
        """Tokenizer, and one check that the server still answers (it did at prepare time)."""
        from llmbench.served.probe import auth_headers, probe

        spec = self._spec()
        self.tokenizer = load_tokenizer(spec.tokenizer)
        problem = probe(spec, auth_headers(spec))
        if problem:
            raise EndpointUnavailable(f"the endpoint {spec.url} {problem}")
        self.info = LoadedInfo(device="endpoint", dtype="unknown",
                               extra={"endpoint_url": spec.url, "endpoint_api": spec.api, "endpoint_model": spec.model})

    def cell_facts(self) -> dict:
        """The model's memory is the server's, out of reach here: not this process's RSS."""
        return {"peak_rss_mb": None, "rss_baseline_mb": None, "peak_rss_delta_mb": None,
                "memory_method": "not measured (remote endpoint)"}

    def generate(self, prompts, new_tokens, timed=True):  # pragma: no cover - served backends stream
        raise NotImplementedError("an endpoint is measured through send(), not generate()")

    # ---- the served interface ------------------------------------------------------------------
    def open_client(self, concurrency: int) -> StreamClient:
        """One connection pool for a cell, with the key from the environment (never stored elsewhere)."""
        from llmbench.served.probe import auth_headers

        spec = self._spec()
        return StreamClient(concurrency, spec.timeout_s, headers=auth_headers(spec))

    def request_body(self, prompt: Prompt) -> dict:
        """The JSON body: streamed, with usage, greedy, its output length forced where the server allows."""
        spec = self._spec()
        n = prompt.output_tokens
        body: dict = {"model": spec.model, "stream": True, "stream_options": {"include_usage": True},
                      "max_tokens": n, "temperature": 0.0}
        text = self.prompt_text(prompt)
        if spec.api == "chat":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        if spec.force_output:
            # vLLM: ignore_eos + min_tokens; llama.cpp: ignore_eos + n_predict. Servers ignore the others.
            body.update(ignore_eos=True, min_tokens=n, n_predict=n)
        return body

    def prompt_text(self, prompt: Prompt) -> str:
        """What is sent: the prompt's text, or its token ids decoded with the candidate's tokenizer."""
        if prompt.text is not None:
            return prompt.text
        if self.tokenizer is None:
            raise RuntimeError("a prompt without text needs the tokenizer (load() first)")
        return self.tokenizer.decode(prompt.ids)

    def count_tokens(self, text: str) -> int:
        """Output tokens of a streamed text, for a server that sends no usage."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if self.tokenizer is not None else 0

    async def send(self, client: StreamClient, prompt: Prompt) -> StreamResult:
        """Stream one request; a failure comes back as a StreamResult with its error_kind, never raised."""
        spec = self._spec()
        return await client.stream(spec.request_url, self.request_body(prompt), chat=spec.api == "chat",
                                   asked=prompt.output_tokens, count_tokens=self.count_tokens)
