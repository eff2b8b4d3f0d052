"""The `guardrails:` config blocks: one typed block per guard kind, chosen by `kind`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmbench.served.endpoint import EndpointSpec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    stage: Literal["pre", "post"] = Field("pre", description="pre: checks the prompt before the model; "
                                          "post: checks the prompt again after it (the answer is not kept)")


class RulesSpec(_Spec):
    """Regex patterns from a versioned rules file (default: the shipped profiles/guard/rules.yaml)."""

    kind: Literal["rules"] = "rules"
    file: Path | None = None

    @model_validator(mode="after")
    def _readable(self) -> "RulesSpec":
        # Compiled here so that a bad pattern is refused with the config, before any model loads.
        from llmbench.errors import BadInput
        from llmbench.optimizers.guard.rules import load_rules, shipped_rules

        try:
            load_rules(self.file or shipped_rules())
        except BadInput as exc:
            raise ValueError(str(exc)) from None
        return self


class EmbeddingSpec(_Spec):
    """MiniLM embeddings + character n-grams into a logistic model (default: the shipped fit)."""

    kind: Literal["embedding"] = "embedding"
    model: Path | None = Field(None, description="a fit written by python -m llmbench.optimizers.guard.fit --out")
    threshold: float | None = Field(None, description="override the fit's decision threshold (a logit)")

    @model_validator(mode="after")
    def _fit_exists(self) -> "EmbeddingSpec":
        if self.model is not None and not Path(self.model).with_suffix(".json").is_file():
            raise ValueError(f"guard model {self.model}: no such fit (.json with its .npz beside it)")
        return self


class JudgeSpec(_Spec):
    """An LLM asked for a verdict: a local model folder (`candidate`) or an OpenAI-compatible endpoint."""

    kind: Literal["judge"] = "judge"
    candidate: str | None = Field(None, description="a local transformers model folder")
    endpoint: EndpointSpec | None = None
    max_new_tokens: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _one_source(self) -> "JudgeSpec":
        if (self.candidate is None) == (self.endpoint is None):
            raise ValueError("a judge guard needs exactly one of 'candidate' (a model folder) or 'endpoint'")
        if self.candidate is not None and not Path(self.candidate).is_dir():
            raise ValueError(f"judge candidate {self.candidate}: not a model folder")
        return self


GuardSpec = Annotated[Union[RulesSpec, EmbeddingSpec, JudgeSpec], Field(discriminator="kind")]
KINDS = ("rules", "embedding", "judge")
