"""The results folder: atomic writes, the append-only request log, and what a resume may skip."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from llmbench.errors import BadInput
from llmbench.records import RequestRecord


def write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a reader (or a killed run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")


def flatten(row: dict, prefix: str = "") -> dict:
    """Nested summary rows as flat CSV columns: ttft_ms.p95 -> ttft_ms_p95."""
    flat: dict = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}_"))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def write_csv(path: Path, rows: list[dict]) -> None:
    flat = [flatten(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flat)
    write_atomic(path, buf.getvalue())


class RunDir:
    """One run's folder (DESIGN.md's results layout)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def requests_path(self) -> Path:
        return self.path / "requests.jsonl"

    def read_json(self, name: str) -> dict:
        f = self.path / name
        if not f.is_file():
            raise BadInput(f"{self.path}: no {name} (is this a results folder of `llmbench run`?)")
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise BadInput(f"{f}: not valid JSON ({exc.msg}, line {exc.lineno})") from None

    def records(self) -> list[RequestRecord]:
        """Every complete line of requests.jsonl (a line cut by a kill is skipped)."""
        if not self.requests_path.is_file():
            return []
        out = []
        for line in self.requests_path.read_text().splitlines():
            try:
                out.append(RequestRecord.model_validate_json(line))
            except ValueError:
                continue
        return out

    def keep_only(self, cells: set[tuple]) -> None:
        """Drop records of cells that did not complete (a resume measures those again)."""
        kept = [r for r in self.records() if r.cell in cells]
        write_atomic(self.requests_path, "".join(r.model_dump_json() + "\n" for r in kept))


class RequestLog:
    """Appends each record as it completes; flushed per line so a kill keeps what was measured."""

    def __init__(self, path: Path):
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, records: Iterable[RequestRecord]) -> None:
        for r in records:
            self.fh.write(r.model_dump_json() + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
