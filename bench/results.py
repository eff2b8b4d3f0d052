"""The results folder: atomic writes, the append-only request log, and what a resume may skip."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from llmbench.errors import BadInput
from llmbench.records import RequestRecord


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which would race with other threads' files.
_FILE_MODE = 0o666 & ~_umask()


def write_atomic(path: Path, text: str) -> None:
    """Write, fsync, then rename, so a reader (or a killed run, or a power cut) never sees half a file.

    The file gets the mode the umask gives any new file (mkstemp's 0600 would keep a proxy running
    as another user from reading its own config).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict(doc: Any) -> Any:
    """NaN and infinity as null: JSON has no such numbers and strict parsers refuse them."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: strict(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [strict(v) for v in doc]
    return doc


def write_json(path: Path, doc: Any) -> None:
    """Strict JSON (never NaN or Infinity), written atomically."""
    text = json.dumps(strict(doc), indent=2, default=str, allow_nan=False)
    write_atomic(path, text + "\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    # A text cell that a spreadsheet would run as a formula is written with a leading quote.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def flatten(row: dict, prefix: str = "") -> dict:
    """Nested summary rows as flat CSV columns: ttft_ms.p95 -> ttft_ms_p95."""
    flat: dict = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}_"))
        elif isinstance(value, list):
            flat[name] = json.dumps(strict(value))
        else:
            flat[name] = _cell(value)
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
            return json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInput(f"{f}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        except UnicodeDecodeError:
            raise BadInput(f"{f}: not UTF-8 text (a damaged file?)") from None

    def records(self) -> list[RequestRecord]:
        """Every complete line of requests.jsonl (a line cut by a kill is skipped)."""
        if not self.requests_path.is_file():
            return []
        out = []
        # A line cut by a kill can end inside a multi-byte character: decode leniently, and the
        # damaged line fails validation below like any other cut line.
        for line in self.requests_path.read_bytes().decode("utf-8", errors="replace").splitlines():
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


class FolderLock:
    """An exclusive lock on a results folder for as long as one run writes it.

    Two runs into one folder would interleave their records and overwrite each other's summary;
    the second is refused instead. The lock is the kernel's (flock), so a killed run never leaves
    a stale one behind.
    """

    NAME = ".lock"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fh = None

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise BadInput naming the folder when another run holds it."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        fh = open(self.path / self.NAME, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            raise BadInput(f"results folder {str(self.path)!r} is in use by another llmbench run"
                           f"{f' (pid {holder})' if holder else ''}; wait for it or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self.fh = fh
        return self

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
