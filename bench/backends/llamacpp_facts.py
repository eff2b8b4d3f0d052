"""Facts about a llama.cpp variant that the summary needs: GGUF weight bytes per token, server memory.

Both are read from outside the server: the GGUF file's tensor table (llama.cpp's own `gguf` reader,
from the engine's source tree) and the server process's /proc status.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# The tensor llama.cpp reads one row of per token (a lookup), and the output projection that, when
# missing from the file, makes llama.cpp use the embedding table as the LM head (read whole).
TOKEN_EMBD = "token_embd.weight"
OUTPUT = "output.weight"


def _reader(gguf_py: Path | None):
    """llama.cpp's GGUFReader: the installed `gguf` package, else the engine source's gguf-py."""
    try:
        from gguf import GGUFReader  # type: ignore[import-not-found]
    except ImportError:
        if gguf_py is None:
            raise
        if str(gguf_py) not in sys.path:
            sys.path.insert(0, str(gguf_py))
        from gguf import GGUFReader  # type: ignore[import-not-found]
    return GGUFReader


def gguf_parameters(path: Path, gguf_py: Path | None = None) -> int:
    """Number of weights in a GGUF model (every tensor's elements)."""
    return sum(int(t.n_elements) for t in _reader(gguf_py)(str(path)).tensors)


def gguf_bytes_per_token(path: Path, gguf_py: Path | None = None) -> int:
    """Weight bytes a batch-1 decode step reads from a GGUF model.

    Every tensor's bytes as stored (quantized blocks included), except the token embedding
    table, which counts as one row (a lookup), unless the file has no `output.weight`: then
    llama.cpp multiplies by the embedding table as the LM head, and it is read whole.
    """
    reader = _reader(gguf_py)(str(path))
    total, embd, rows = 0, 0, 1
    has_output = False
    for t in reader.tensors:
        total += int(t.n_bytes)
        if t.name == TOKEN_EMBD:
            # GGUF shapes list the fastest-varying dimension first: (hidden, vocab) for the table.
            embd, rows = int(t.n_bytes), int(t.shape[-1]) if len(t.shape) else 1
        elif t.name == OUTPUT:
            has_output = True
    if embd and has_output:
        total += embd // max(rows, 1) - embd
    return total


def _status_kb(pid: int, key: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def vm_hwm_mb(pid: int | None) -> float | None:
    """Peak resident memory (VmHWM) of a live process, in MB (None when it cannot be read)."""
    kb = _status_kb(pid, "VmHWM") if pid else None
    return kb / 1024.0 if kb is not None else None


def vm_rss_mb(pid: int | None) -> float | None:
    """Resident memory (VmRSS) of a live process, in MB."""
    kb = _status_kb(pid, "VmRSS") if pid else None
    return kb / 1024.0 if kb is not None else None


def reset_hwm(pid: int | None) -> bool:
    """Reset a process's VmHWM to its current RSS (clear_refs "5"), so a reused server's peak is
    the next cell's own; False when the kernel refuses (the peak then spans earlier cells too)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, all threads) a live process has used, in seconds."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            # The command name (field 2) may hold spaces: fields are counted after its closing paren.
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
