"""Where the llama.cpp engine lives, and whether a usable build is there (no building here).

A built engine is a folder `engine_root()/llama.cpp-<pin>/` holding `bin/` (llama-server,
llama-quantize and the shared libraries they load), `source/` (the converter:
convert_hf_to_gguf.py, conversion/, gguf-py/) and `engine.json`, written last, which lists every
file of `bin/` with its size: a folder without it, or with a file missing or of another size, is
not a build (an interrupted copy, a disk that filled up) and is built again.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The pin: llama.cpp's source comes from this llama-cpp-python source archive (constraints.txt
# points here). Changing it changes the engine folder's name, so a new pin builds afresh.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
ENGINE_NAME = "llama.cpp"
SOURCE_VERSION = f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}"
BINARIES = ("llama-server", "llama-quantize")
MANIFEST = "engine.json"
DEV_TREE_ENV = "LLMBENCH_LLAMA_CPP_DIR"  # a llama.cpp tree built by hand, with build/bin (development)


class EngineUnavailable(RuntimeError):
    """The engine is not built and cannot be built (or a development tree is unusable)."""


@dataclass
class EngineInfo:
    """A usable llama.cpp build: its version and the paths every caller needs."""

    name: str
    version: str
    source_version: str
    bin_dir: Path
    source_dir: Path
    server: Path
    quantize: Path

    def as_json(self) -> dict:
        """The facts run.json and `llmbench engines --json` record (paths as strings)."""
        return {"name": self.name, "version": self.version, "source_version": self.source_version,
                "bin_dir": str(self.bin_dir), "source_dir": str(self.source_dir),
                "server": str(self.server), "quantize": str(self.quantize)}

    def env(self) -> dict[str, str]:
        """The environment to run its binaries in: the libraries beside them come first.

        A build made here finds them without this ($ORIGIN run path); a development tree moved
        after its build would not.
        """
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.bin_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env


def engine_root() -> Path:
    """`$LLMBENCH_ENGINES`, else `<venv>/llmbench-engines` in a virtual environment, else cache_root()/engines.

    Inside the venv by default: `make test` points every cache at a fresh folder, and the engine
    (minutes to build) must survive that; `make clean` removes it with the venv.
    """
    if os.environ.get("LLMBENCH_ENGINES"):
        return Path(os.environ["LLMBENCH_ENGINES"]).expanduser()
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "llmbench-engines"
    from llmbench.paths import cache_root

    return cache_root() / "engines"


def engine_dir() -> Path:
    """The folder of the pinned build (it may not exist yet)."""
    return engine_root() / f"{ENGINE_NAME}-{LLAMA_CPP_PYTHON_VERSION}"


_VERSION_LINE = re.compile(r"^version:\s*(\S.*?)\s*$", re.M)
_VERSIONS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> version, asked once per binary


def server_version(server: Path, env: dict[str, str] | None = None) -> str:
    """What `llama-server --version` says, e.g. '0.5.0-dev (build 1, commit 0c1e570)'; EngineUnavailable if it does not run."""
    st = server.stat()
    key = (str(server), st.st_size, st.st_mtime_ns)
    if key in _VERSIONS:
        return _VERSIONS[key]
    try:
        out = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(f"{server} does not run: {exc}") from None
    text = out.stdout + out.stderr
    m = _VERSION_LINE.search(text)
    if out.returncode != 0 or not m:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise EngineUnavailable(f"{server} --version failed (exit {out.returncode}): {tail}")
    _VERSIONS[key] = m.group(1)
    return _VERSIONS[key]


def bin_files(bin_dir: Path) -> dict[str, int]:
    """{name: bytes} of the files a build keeps in bin/ (binaries and libraries)."""
    return {p.name: p.stat().st_size for p in sorted(bin_dir.iterdir()) if p.is_file()}


def _dev_engine(tree: Path) -> EngineInfo:
    bin_dir = tree / "build" / "bin"
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise EngineUnavailable(f"${DEV_TREE_ENV}={tree}: no {', '.join(missing)} in {bin_dir} (build them there first)")
    if not (tree / "convert_hf_to_gguf.py").is_file():
        raise EngineUnavailable(f"${DEV_TREE_ENV}={tree}: not a llama.cpp source tree (no convert_hf_to_gguf.py)")
    info = EngineInfo(ENGINE_NAME, "", SOURCE_VERSION, bin_dir, tree, bin_dir / BINARIES[0], bin_dir / BINARIES[1])
    info.version = server_version(info.server, info.env())
    return info


def built_problem(folder: Path) -> str | None:
    """None when `folder` is a whole build; else what is wrong with it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = {str(k): int(v) for k, v in manifest["files"].items()}
        version = str(manifest["version"])
    except FileNotFoundError:
        return "not built"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    if not version:
        return f"{MANIFEST} has no version"
    for name in (*BINARIES, *files):
        f = folder / "bin" / name
        if not f.is_file():
            return f"bin/{name} is missing"
        if name in files and f.stat().st_size != files[name]:
            return f"bin/{name} has {f.stat().st_size} bytes, {MANIFEST} says {files[name]}"
    if not (folder / "source" / "convert_hf_to_gguf.py").is_file():
        return "source/convert_hf_to_gguf.py is missing"
    return None


def find_engine() -> EngineInfo | None:
    """The usable engine, or None when it is not built (`$LLMBENCH_LLAMA_CPP_DIR` wins when set).

    A development tree that is set but unusable raises EngineUnavailable: building another
    engine behind the user's back would hide their mistake.
    """
    tree = os.environ.get(DEV_TREE_ENV)
    if tree:
        return _dev_engine(Path(tree).expanduser().resolve())
    folder = engine_dir()
    if built_problem(folder) is not None:
        return None
    manifest = json.loads((folder / MANIFEST).read_text())
    bin_dir = folder / "bin"
    return EngineInfo(ENGINE_NAME, manifest["version"], SOURCE_VERSION, bin_dir, folder / "source",
                      bin_dir / BINARIES[0], bin_dir / BINARIES[1])
