"""What every backend does: load a model variant, and generate with one timestamp per token."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from llmbench.models.source import ModelSource


@dataclass
class Generation:
    """Timing of one static batch: all rows are sent at `start` and emit a token at each step.

    Times are `time.perf_counter()` seconds; `token_times[i]` is when step i's tokens existed
    (on CUDA, after a synchronise).
    """

    start: float
    token_times: list[float]
    prompt_tokens: list[int]
    output_ids: list[list[int]] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.token_times[-1] if self.token_times else self.start


@dataclass
class LoadedInfo:
    """Facts about a loaded variant for the summary."""

    parameters: int | None = None
    size_bytes: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)


class Backend(ABC):
    """A model variant behind one interface, so that scenarios never see which engine runs it."""

    kind: ClassVar[str]
    # A served backend streams requests over HTTP (send/open_client) instead of generate().
    served: ClassVar[bool] = False
    # A managed engine's identity (EngineInfo.as_json(), set by load()): copied to run.json `engines`.
    engine_info: dict | None = None

    def __init__(self, source: ModelSource, variant: str, device: str, dtype: str, trust_remote_code: bool = False):
        self.source = source
        self.variant = variant
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.tokenizer = None
        self.info = LoadedInfo(device=device, dtype=dtype)

    @classmethod
    def check_variant(cls, variant: str, device: str) -> None:
        """Raise BadInput for a variant this backend cannot build or run on `device` (before measuring)."""

    @abstractmethod
    def load(self) -> None:
        """Load weights and tokenizer; raise on failure (the runner records it as a failed cell)."""

    @abstractmethod
    def generate(self, prompts: list[list[int]], new_tokens: int, timed: bool = True) -> Generation:
        """Greedy-decode exactly `new_tokens` tokens for each prompt (token ids), as one batch.

        `timed=False` skips the per-token timestamps (for measuring their overhead).
        """

    def next_token_logits(self, prompts: list[list[int]]):  # pragma: no cover - optional
        """Logits of the next token after each prompt (for the quality gate), as a float32 tensor."""
        raise NotImplementedError

    def begin_cell(self, point, prompts, run_dir) -> None:
        """Before a cell's warm-up: e.g. start a server sized to `point` (raise: that cell fails)."""

    def end_cell(self) -> None:
        """After a cell, measured or failed: undo begin_cell."""

    def cell_facts(self) -> dict:
        """Facts about the cell just ended for run.json `cells` (override the runner's own, e.g. a
        server's memory); asked after end_cell, for failed cells too."""
        return {}

    def synchronize(self) -> None:
        """Wait for the device (no-op on the CPU)."""

    def close(self) -> None:
        """Free what load() took."""
