"""The `endpoint:` block of a candidate: an OpenAI-compatible server measured over HTTP."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EndpointSpec(BaseModel):
    """Where and how to reach the server; the API key is read from `api_key_env` at send time only."""

    # frozen: a ModelSource holding it stays hashable; extra=forbid: a misspelt key is an error.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    url: str = Field(description="base URL up to /v1, e.g. http://127.0.0.1:8080/v1")
    model: str = Field(min_length=1, max_length=256, description="the model name the server expects")
    api: Literal["chat", "completions"] = "completions"
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    tokenizer: str | None = Field(None, description="a tokenizer folder or card:NAME; default: the shipped tokenizer")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="per request, from send to the last byte")
    force_output: bool = Field(True, description="send ignore_eos/min_tokens/n_predict so that every request "
                                                 "produces its full output length; turn off for a server that "
                                                 "refuses unknown fields")
    generators: int = Field(1, ge=1, le=64, description="`run --ray` only: split each point's clients or rate "
                                                        "across this many load-generating Ray actors, one per node "
                                                        "(a local run always uses one)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlparse

        text = value.strip().rstrip("/")
        parts = urlparse(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint url {value[:120]!r} must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise ValueError("endpoint url must not carry credentials; put the key in the variable named by api_key_env")
        return text

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            # The value is not echoed: a key pasted here by mistake must not reach a terminal or log.
            raise ValueError("api_key_env is not an environment variable name (it takes the variable's NAME, "
                             "never the key itself)")
        return value

    @property
    def root(self) -> str:
        """The server's root URL (scheme://host:port), where /health lives."""
        from urllib.parse import urlparse

        parts = urlparse(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def request_url(self) -> str:
        """Where a request of this API goes."""
        return f"{self.url}/chat/completions" if self.api == "chat" else f"{self.url}/completions"
