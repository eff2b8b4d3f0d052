"""The shipped default: fitted verifiers and, per target false-hit rate, the setting the chooser picked.

Written by `python -m llmbench.optimizers.cache.fit` to profiles/cache/default.json. The plain
cosine threshold chosen for the same target on the same pairs is kept beside each setting: it is
the baseline every simulation reports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmbench.optimizers.cache.decision import CosineRule, VerifierRule
from llmbench.optimizers.cache.verifier import Verifier

PROFILE_DIR = "cache"
PLAIN_COSINE = "cosine"  # a setting may name this instead of a verifier: plain cosine did best there


@dataclass(frozen=True)
class Setting:
    """What to run for one target false-hit rate."""

    target: float
    verifier: str
    threshold: float
    cosine_threshold: float
    dev: dict


@dataclass
class CacheProfile:
    """Verifiers by name, settings by target, and how many candidates the rule looks at."""

    verifiers: dict[str, Verifier]
    settings: list[Setting]
    candidates: int
    meta: dict

    def setting_for(self, target_false_hit: float) -> Setting:
        """The setting fitted for the largest target not above the one asked for (never looser)."""
        fitting = [s for s in self.settings if s.target <= target_false_hit + 1e-12]
        if not fitting:
            raise ValueError(f"target false-hit rate {target_false_hit} is below the smallest fitted "
                             f"({min(s.target for s in self.settings)})")
        return max(fitting, key=lambda s: s.target)

    def verifier_rule(self, target_false_hit: float) -> VerifierRule | CosineRule:
        """The shipped rule for a target: a verifier, or plain cosine where the chooser found it better."""
        s = self.setting_for(target_false_hit)
        if s.verifier == PLAIN_COSINE:
            return CosineRule(s.threshold)
        return VerifierRule(self.verifiers[s.verifier], s.threshold)

    def cosine_rule(self, target_false_hit: float) -> CosineRule:
        """Plain cosine with its threshold chosen for the same target on the same pairs (the baseline)."""
        return CosineRule(self.setting_for(target_false_hit).cosine_threshold)

    def to_dict(self) -> dict:
        return {"meta": self.meta, "candidates": self.candidates,
                "verifiers": {k: v.to_dict() for k, v in self.verifiers.items()},
                "settings": [{"target": s.target, "verifier": s.verifier, "threshold": s.threshold,
                              "cosine_threshold": s.cosine_threshold, "dev": s.dev} for s in self.settings]}

    @classmethod
    def from_dict(cls, d: dict) -> "CacheProfile":
        verifiers = {k: Verifier.from_dict(v) for k, v in d["verifiers"].items()}
        settings = [Setting(float(s["target"]), s["verifier"], float(s["threshold"]), float(s["cosine_threshold"]),
                            s.get("dev", {})) for s in d["settings"]]
        if not settings:
            raise ValueError("its 'settings' list is empty: no target false-hit rate has a setting")
        for s in settings:
            if s.verifier not in verifiers and s.verifier != PLAIN_COSINE:
                raise ValueError(f"setting for target {s.target} names unknown verifier {s.verifier}")
        return cls(verifiers, sorted(settings, key=lambda s: s.target), int(d.get("candidates", 3)), d.get("meta", {}))


def profile_path(name: str = "default") -> Path:
    """Where a named cache profile lives inside the installed package."""
    from importlib.resources import files

    return Path(str(files("llmbench.profiles"))) / PROFILE_DIR / f"{name}.json"


def load_profile(name_or_path: str = "default") -> CacheProfile:
    """Load a cache profile by name (shipped) or by path to a JSON file."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.exists()):
        path = profile_path(name_or_path)
    with open(path, encoding="utf-8") as fh:
        return CacheProfile.from_dict(json.load(fh))


def load_user_profile(path: str, where: str) -> CacheProfile:
    """A profile the user named (`where`: the option or config key); BadInput, one line, if it is not one."""
    from llmbench.errors import BadInput

    file = Path(path)
    if not file.is_file():
        # The name of a shipped profile is accepted too; anything else is a file the user meant.
        shipped = profile_path(path) if "/" not in path and "\\" not in path and not file.suffix else None
        if shipped is None or not shipped.is_file():
            raise BadInput(f"{where}: {path} does not exist (give a cache profile file written by "
                           "python -m llmbench.optimizers.cache.fit --out FILE)")
        file = shipped
    try:
        with open(file, encoding="utf-8") as fh:
            return CacheProfile.from_dict(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadInput(f"{where}: {path} is not a readable cache profile ({exc})") from None


def save_profile(profile: CacheProfile, path: Path) -> None:
    """Write a profile as JSON atomically (write then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
