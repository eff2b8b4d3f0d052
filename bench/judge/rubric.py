"""Judge rubrics: versioned prompt files (name, version, mode, text with {name} fields)."""
from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.files import read_input_text
from llmbench.workload import fill
from llmbench.yamlsafe import load_yaml

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The fields a rubric of each mode must use (and the only ones it may use).
REQUIRED = {"reference": {"answer", "reference"}, "pairwise": {"answer_a", "answer_b"}}
ALLOWED = {"reference": {"question", "answer", "reference"}, "pairwise": {"question", "reference", "answer_a", "answer_b"}}
DEFAULT = {"reference": "reference_v1", "pairwise": "pairwise_v1"}


@dataclass(frozen=True)
class Rubric:
    """One rubric prompt; `identity()` goes with every verdict it produced."""

    name: str
    version: str
    mode: str
    text: str
    path: str
    sha256: str

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "mode": self.mode, "sha256": self.sha256, "path": self.path}

    def render(self, **values: str) -> str:
        """The prompt for one judgement (plain {name} substitution, as templates are filled)."""
        return fill(self.text, values, f"rubric {self.tag}")


def shipped_rubric(name: str) -> Path:
    """profiles/rubrics/NAME.yaml."""
    return Path(str(resources.files("llmbench.profiles") / "rubrics" / f"{name}.yaml"))


def is_path(ref: str) -> bool:
    """Whether a `rubric:` value names a file (else a shipped rubric's name)."""
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def load_rubric(ref: str | Path | None, mode: str) -> Rubric:
    """A rubric by file path or shipped name (None: the mode's default); BadInput on any fault."""
    ref = ref or DEFAULT[mode]
    if isinstance(ref, str) and not is_path(ref):
        if not _NAME.match(ref) or not shipped_rubric(ref).is_file():
            shipped = sorted(p.stem for p in shipped_rubric("x").parent.glob("*.yaml"))
            raise BadInput(f"rubric {ref!r}: no such shipped rubric (shipped: {', '.join(shipped)}; or give a file)")
        ref = shipped_rubric(ref)
    path = Path(ref)
    raw = read_input_text(path, "rubric")
    doc = load_yaml(raw, f"rubric {path}")
    where = f"rubric {path}"
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) and doc.get(k) for k in ("name", "mode", "text")):
        raise BadInput(f"{where}: needs name, version, mode and text")
    version = str(doc.get("version", ""))
    if not _SEMVER.match(version):
        raise BadInput(f"{where}: version must look like 1.0.0, got {version!r}")
    if doc["mode"] != mode:
        raise BadInput(f"{where}: a {doc['mode']!r} rubric, but the judge's mode is {mode!r}")
    extra = set(doc) - {"name", "version", "mode", "text", "about"}
    if extra:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(doc["text"]) if f is not None}
    except ValueError as exc:
        raise BadInput(f"{where}: {exc} (write a literal brace as {{{{ or }}}})") from None
    if not REQUIRED[mode] <= fields:
        raise BadInput(f"{where}: a {mode} rubric's text must use " + " ".join(f"{{{f}}}" for f in sorted(REQUIRED[mode])))
    if fields - ALLOWED[mode]:
        raise BadInput(f"{where}: unknown field(s) " + " ".join(f"{{{f}}}" for f in sorted(fields - ALLOWED[mode])))
    rubric = Rubric(doc["name"], version, mode, doc["text"], str(path), hashlib.sha256(raw.encode()).hexdigest())
    rubric.render(**{f: "" for f in ALLOWED[mode]})  # a bad field shape is found now, not per judgement
    return rubric
