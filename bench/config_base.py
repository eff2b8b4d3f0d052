"""What every config block shares: strict validation and the limits on sizes and ranges."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every config block: a misspelt key is an error, not a silent default."""

    # NaN and infinity are never a sensible setting, and would end up as invalid JSON in run.json.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Limits on sizes and ranges, checked at validation: a typo like `requests: 1e9` is refused with
# the limit in the message instead of running for days or exhausting memory.
MAX_TOKENS = 131_072
MAX_REQUESTS = 100_000
MAX_CLIENTS = 1024
MAX_BATCH = 1024
MIN_RATE = 0.01  # requests/s: a first gap of 100 s at most
MAX_RATE = 100_000.0
MAX_DURATION_S = 86_400.0
MAX_REPEATS = 1000
