"""Build the pinned llama.cpp engine once: source archive from the package index, cmake, publish.

The llama-cpp-python source archive on the package index carries llama.cpp's source
(vendor/llama.cpp). Only the two tools llmbench runs are built (llama-server, llama-quantize), in
a scratch folder beside the final one, which then appears by an atomic rename. A file lock keeps
two processes from building at once: the second waits and then uses the first one's build.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from llmbench.engines.llamacpp.info import (
    BINARIES, ENGINE_NAME, LLAMA_CPP_PYTHON_VERSION, MANIFEST, SOURCE_VERSION, EngineInfo,
    EngineUnavailable, bin_files, built_problem, engine_dir, engine_root, find_engine, server_version,
)
from llmbench.engines.llamacpp.isa import native_flags_off
from llmbench.engines.llamacpp.server import usable_cores

SDIST_ENV = "LLMBENCH_LLAMA_CPP_SDIST"  # a local copy of the source archive (a machine without the index)
# As ../shared/STACK.md: no web UI (the prebuilt one would be downloaded), no curl, no tests or
# examples. $ORIGIN run paths let the binaries find their libraries after the folder is renamed.
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_CURL=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON")
# What the GGUF converter needs from the source tree (convert_hf_to_gguf.py finds them beside it).
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "models/templates", "LICENSE")
CORE_MINUTES = 10  # measured: 4 min 56 s on 2 cores (STACK.md)
BUILD_PREFIX = ".build-"
LOG_TAIL = 15

# A build that failed in this process is not tried again: every later ask gets the same error,
# marked as repeated so that it is printed once (issue 14: "reported once").
_FAILURE: EngineUnavailable | None = None


def ensure_engine(progress: Callable[[str], None] | None = None) -> EngineInfo:
    """The usable engine, built first when missing; EngineUnavailable when it cannot be had.

    `progress` receives one line per phase (a build takes minutes). A failed build is tried once
    per process: later calls raise the same message with `repeated = True`.
    """
    global _FAILURE
    found = find_engine()  # a development tree ($LLMBENCH_LLAMA_CPP_DIR) that is unusable raises here
    if found is not None:
        return found
    if _FAILURE is not None:
        again = EngineUnavailable(str(_FAILURE))
        again.repeated = True
        raise again
    say = progress or (lambda line: None)
    root = engine_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{ENGINE_NAME}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process that is building {ENGINE_NAME} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        found = find_engine()  # built by the process we waited for
        if found is not None:
            return found
        try:
            return _build(root, say)
        except EngineUnavailable as exc:
            exc.repeated = False
            _FAILURE = exc
            raise


def _build(root: Path, say: Callable[[str], None]) -> EngineInfo:
    from llmbench.models.scratch import scratch_dir, sweep_scratch

    sweep_scratch(root, BUILD_PREFIX)  # scratch folders of builds that were killed
    work = scratch_dir(root, BUILD_PREFIX)
    log = work / "cmake.log"
    start = time.perf_counter()
    try:
        archive = _source_archive(work, log, say)
        src, commit = _unpack(archive, work / "src")
        generator = "Ninja" if shutil.which("ninja") else "Unix Makefiles"
        cores = usable_cores()
        # No .git in the archive: without this the server's version says "commit unknown".
        flags = [*CMAKE_FLAGS, *([f"-DLLAMA_BUILD_COMMIT={commit}"] if commit else [])]
        off = native_flags_off(work / "probe")
        if off:
            say(f"this CPU lists AMX but does not run it: building without it ({' '.join(off)})")
            flags += [f"-DCMAKE_C_FLAGS={' '.join(off)}", f"-DCMAKE_CXX_FLAGS={' '.join(off)}"]
        say(f"configuring {ENGINE_NAME} with cmake ({generator}) ...")
        _run(["cmake", "-S", str(src), "-B", str(work / "build"), "-G", generator, *flags], log, "cmake configure")
        say(f"building {ENGINE_NAME} (about {max(1, round(CORE_MINUTES / cores))} minutes on {cores} cores) ...")
        _run(["cmake", "--build", str(work / "build"), "--target", *BINARIES, "-j", str(cores)], log, "cmake build")
        final = _assemble(src, work / "build" / "bin", work / "engine")
        version = server_version(final / "bin" / BINARIES[0], env={k: v for k, v in os.environ.items()
                                                                  if k != "LD_LIBRARY_PATH"})
        build_s = round(time.perf_counter() - start, 1)
        shutil.copy2(log, final / "build.log")
        facts = {"name": ENGINE_NAME, "version": version, "source_version": SOURCE_VERSION, "generator": generator,
                 "cmake_flags": flags, "llama_cpp_commit": commit, "cores": cores, "build_s": build_s,
                 "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": bin_files(final / "bin")}
        (final / MANIFEST).write_text(json.dumps(facts, indent=2))  # last: its presence marks a whole build
        target = engine_dir()
        if target.exists():  # a damaged build (find_engine refused it): we hold the lock
            shutil.rmtree(target)
        os.rename(final, target)
    except EngineUnavailable:
        raise
    except (OSError, tarfile.TarError, subprocess.SubprocessError) as exc:
        raise EngineUnavailable(f"{ENGINE_NAME}: build failed ({type(exc).__name__}: {exc})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    engine = find_engine()
    if engine is None:
        raise EngineUnavailable(f"{ENGINE_NAME}: built into {target} but it is not usable ({built_problem(target)})")
    say(f"built {ENGINE_NAME} {engine.version} in {build_s:.0f} s: {engine.bin_dir}")
    return engine


def _source_archive(work: Path, log: Path, say: Callable[[str], None]) -> Path:
    """The llama-cpp-python source archive: `$LLMBENCH_LLAMA_CPP_SDIST`, else pip downloads it."""
    given = os.environ.get(SDIST_ENV)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise EngineUnavailable(f"${SDIST_ENV}={given}: no such file")
        return path
    say(f"downloading the {SOURCE_VERSION} source archive (llama.cpp's source) ...")
    dl = work / "download"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
          f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(dl)], log, "pip download")
    found = sorted(dl.glob("*.tar.gz"))
    if not found:
        raise EngineUnavailable(f"pip download of llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} gave no source archive")
    return found[0]


def _unpack(archive: Path, dest: Path) -> tuple[Path, str | None]:
    """Extract only `<top>/vendor/llama.cpp/` of the archive into `dest` (safe members only).

    Also returns the llama.cpp commit the archive's CHANGELOG names for the pinned release, if any.
    """
    with tarfile.open(archive) as tar:
        members, changelog = [], None
        for m in tar.getmembers():
            parts = m.name.split("/")
            if len(parts) > 3 and parts[1:3] == ["vendor", "llama.cpp"]:
                m.name = "/".join(parts[3:])
                members.append(m)
            elif parts[1:] == ["CHANGELOG.md"] and m.isfile():
                changelog = tar.extractfile(m).read().decode(errors="replace")
        if not any(m.name == "CMakeLists.txt" for m in members):
            raise EngineUnavailable(f"{archive.name}: has no vendor/llama.cpp/CMakeLists.txt")
        tar.extractall(dest, members=members, filter="data")
    return dest, vendored_commit(changelog or "")


def vendored_commit(changelog: str) -> str | None:
    """The short llama.cpp commit in the pinned release's CHANGELOG entry ("update llama.cpp to ...@0c1e57098")."""
    section = re.search(rf"^## \[{re.escape(LLAMA_CPP_PYTHON_VERSION)}\](.*?)(?=^## \[|\Z)", changelog, re.M | re.S)
    found = re.search(r"llama\.cpp@([0-9a-f]{7,40})\b", section.group(1)) if section else None
    return found.group(1)[:7] if found else None


def _run(argv: list[str], log: Path, what: str) -> None:
    """Run one build step, appending its output to `log`; EngineUnavailable with the log's tail on failure."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        try:
            rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        except OSError as exc:
            raise EngineUnavailable(f"{ENGINE_NAME}: {what} could not start ({exc}); cmake and a C++ compiler are needed") from None
    if rc != 0:
        kept = engine_root() / f"{ENGINE_NAME}-build-failed.log"
        shutil.copy2(log, kept)
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-LOG_TAIL:])
        raise EngineUnavailable(f"{ENGINE_NAME}: {what} failed (exit {rc}); whole log: {kept}; last lines:\n{tail}")


def _assemble(src: Path, built_bin: Path, final: Path) -> Path:
    """The published layout: bin/ (the tools and their shared libraries) and source/ (the converter)."""
    (final / "bin").mkdir(parents=True)
    for p in sorted(built_bin.iterdir()):
        if p.name in BINARIES or ".so" in p.name:
            shutil.copy2(p, final / "bin" / p.name, follow_symlinks=False)
    for part in CONVERTER_PARTS:
        if (src / part).exists():
            (final / "source" / part).parent.mkdir(parents=True, exist_ok=True)
            os.rename(src / part, final / "source" / part)
    return final
