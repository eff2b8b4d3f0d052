"""Before anything is measured: does the endpoint answer, is its key there, can its tokenizer load?

Standard library only (urllib): one short synchronous check per endpoint candidate, no event loop.
Environment proxies are not used, as by the streaming client (aiohttp's default).
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.served.endpoint import EndpointSpec

PROBE_TIMEOUT_S = 5.0


def auth_headers(spec: EndpointSpec, where: str = "endpoint") -> dict[str, str]:
    """The Authorization header from the variable named by api_key_env (BadInput naming the variable)."""
    if not spec.api_key_env:
        return {}
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise BadInput(f"{where}.api_key_env: the environment variable {spec.api_key_env} is not set "
                       f"(it must hold the API key for {spec.url})")
    return {"Authorization": f"Bearer {key}"}


def check_tokenizer(spec: EndpointSpec, where: str = "endpoint") -> None:
    """A tokenizer folder must exist and a card must be known (the tokenizer loads at measuring time)."""
    ref = spec.tokenizer
    if ref is None:
        return
    if ref.startswith("card:"):
        from llmbench.models.cards import card_config

        try:
            card_config(ref[len("card:"):].strip())
        except BadInput as exc:
            raise BadInput(f"{where}.tokenizer: {exc}") from None
        return
    path = Path(ref).expanduser()
    if not path.is_dir() or not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise BadInput(f"{where}.tokenizer: {ref!r} is not a tokenizer folder (no tokenizer.json or tokenizer_config.json)")


def _get(url: str, headers: dict[str, str]) -> int:
    """HTTP status of a GET (any answer, errors included); OSError when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with opener.open(request, timeout=PROBE_TIMEOUT_S) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def probe(spec: EndpointSpec, headers: dict[str, str]) -> str | None:
    """None when the server answers; otherwise why not (never mentioning the key)."""
    try:
        status = _get(f"{spec.url}/models", headers)
    except (OSError, ValueError) as exc:  # refused, reset, unresolvable, timed out
        reason = getattr(exc, "reason", exc)
        return f"does not answer ({type(reason).__name__}: {str(reason)[:120]})" if str(reason) else "does not answer"
    if status in (401, 403):
        who = f"the key in ${spec.api_key_env}" if spec.api_key_env else "a request without a key (set api_key_env)"
        return f"refused {who} (HTTP {status} on /models)"
    if 200 <= status < 300:
        return None
    # No /models (some servers): the server still answers if its health route or root does.
    for path in ("/health", "/"):
        try:
            if _get(spec.root + path, headers) < 500:
                return None
        except (OSError, ValueError):
            break
    return f"answers HTTP {status} on /models and has no working /health or /"


def check_endpoint(spec: EndpointSpec, where: str = "endpoint") -> None:
    """BadInput (one line naming the URL or the variable) unless the endpoint can be measured."""
    headers = auth_headers(spec, where)
    check_tokenizer(spec, where)
    problem = probe(spec, headers)
    if problem:
        raise BadInput(f"{where}.url: the endpoint {spec.url} {problem}")
