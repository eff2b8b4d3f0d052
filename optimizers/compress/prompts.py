"""Reading the prompts to compress: one text file (one prompt) or a JSONL of prompts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmbench.errors import BadInput

_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_TEXT_KEYS = ("context", "prompt", "text")


@dataclass(frozen=True)
class Prompt:
    """A prompt in LLMLingua's three parts.

    Only `context` is compressed; `instruction` (before it) and `question` (after it) are kept
    as they are, and the whole prompt is the three joined by blank lines.
    """

    context: str
    instruction: str = ""
    question: str = ""

    def text(self) -> str:
        """The prompt as the target model receives it."""
        return "\n\n".join(part for part in (self.instruction, self.context, self.question) if part)


def as_prompt(prompt: "Prompt | str") -> Prompt:
    """A plain string is all context."""
    return prompt if isinstance(prompt, Prompt) else Prompt(context=prompt)


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read PROMPTS; BadInput (one line naming the file, and the line for JSONL) when it cannot be used."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise BadInput(f"prompts file {str(path)!r} is a directory") from None
    except OSError as exc:
        raise BadInput(f"cannot read prompts file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"prompts file {str(path)!r} is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise BadInput(f"prompts file {str(path)!r} is empty")
    if path.suffix.lower() in _JSONL_SUFFIXES or _looks_like_jsonl(text):
        return _jsonl_prompts(text, path)
    return [Prompt(context=text)]


def _looks_like_jsonl(text: str) -> bool:
    # A .txt file whose first line is a JSON object with a prompt key is a JSONL under another name.
    first = text.lstrip().split("\n", 1)[0]
    try:
        obj = json.loads(first)
    except ValueError:
        return False
    return isinstance(obj, dict) and any(k in obj for k in _TEXT_KEYS)


def _jsonl_prompts(text: str, path: Path) -> list[Prompt]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise BadInput(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise BadInput(f"{where}: expected a JSON object with \"prompt\" or \"text\"")
        prompts.append(_prompt_from(obj, where))
    if not prompts:
        raise BadInput(f"prompts file {str(path)!r} has no prompts")
    return prompts


def _prompt_from(obj: dict, where: str) -> Prompt:
    key = next((k for k in _TEXT_KEYS if k in obj), None)
    if key is None:
        raise BadInput(f"{where}: no \"prompt\", \"text\" or \"context\" key")
    context = obj[key]
    if isinstance(context, list) and all(isinstance(c, str) for c in context):
        context = "\n\n".join(context)
    parts = {"instruction": obj.get("instruction", ""), "question": obj.get("question", "")}
    for name, value in [(key, context), *parts.items()]:
        if not isinstance(value, str):
            raise BadInput(f"{where}: \"{name}\" must be a string")
    if not context.strip():
        raise BadInput(f"{where}: \"{key}\" is empty")
    return Prompt(context=context, **parts)
