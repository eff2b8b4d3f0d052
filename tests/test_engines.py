"""The llama.cpp engine: where it lives, how it is built (a tiny stand-in source archive through the
real build path: cmake, lock, publish), failures, damage, and the real build's version."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmbench.cli import main
from llmbench.engines.llamacpp import build, info, isa
from llmbench.engines.llamacpp.info import EngineUnavailable

FAKE_VERSION = "9.9.9-fake (build 7, commit abc1234)"  # abc1234: from the archive's CHANGELOG, via cmake
_TOOL_C = textwrap.dedent(r"""
    #include <stdio.h>
    int main(void) { printf("version: 9.9.9-fake (build 7, commit %s)\nbuilt with cc\n", COMMIT); return 0; }
""")
_CHANGELOG = (f"# Changelog\n\n## [{info.LLAMA_CPP_PYTHON_VERSION}]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@abc1234ff\n\n"
              "## [0.0.1]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@fff0000aa\n")


def fake_sdist(folder: Path, broken: bool = False) -> Path:
    """A source archive laid out like llama-cpp-python's, whose vendor/llama.cpp builds two tiny tools."""
    top = f"llama_cpp_python-{info.LLAMA_CPP_PYTHON_VERSION}"
    cmake = ("cmake_minimum_required(VERSION 3.16)\nproject(fake C)\n"
             "set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)\n"
             "add_executable(llama-server tool.c)\nadd_executable(llama-quantize tool.c)\n"
             "add_compile_definitions(COMMIT=\"${LLAMA_BUILD_COMMIT}\")\n")
    files = {"CMakeLists.txt": cmake + ("this_is_not_a_command(\n" if broken else ""), "tool.c": _TOOL_C,
             "convert_hf_to_gguf.py": "", "conversion/__init__.py": "TEXT_MODEL_MAP = {}\n",
             "gguf-py/gguf/__init__.py": "", "LICENSE": "MIT\n"}
    files = {f"{top}/vendor/llama.cpp/{k}": v for k, v in files.items()} | {
        f"{top}/README.md": "not llama.cpp\n", f"{top}/CHANGELOG.md": _CHANGELOG}
    path = folder / f"llama_cpp_python-{info.LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """An empty engine root and a stand-in source archive; no development tree; no remembered failure."""
    root = tmp_path / "engines"
    monkeypatch.setenv("LLMBENCH_ENGINES", str(root))
    monkeypatch.setenv(build.SDIST_ENV, str(fake_sdist(tmp_path)))
    monkeypatch.delenv(info.DEV_TREE_ENV, raising=False)
    monkeypatch.setattr(build, "_FAILURE", None)
    return root


def test_engine_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBENCH_ENGINES", str(tmp_path / "e"))
    assert info.engine_root() == tmp_path / "e"
    assert info.engine_dir() == tmp_path / "e" / f"llama.cpp-{info.LLAMA_CPP_PYTHON_VERSION}"
    monkeypatch.delenv("LLMBENCH_ENGINES")
    # The suite runs in the project's venv: the engine lives there, outside make test's fresh caches.
    assert sys.prefix != sys.base_prefix
    assert info.engine_root() == Path(sys.prefix) / "llmbench-engines"


def test_build_publishes_a_whole_engine_once(fake_root):
    lines: list[str] = []
    eng = build.ensure_engine(lines.append)
    assert eng.version == FAKE_VERSION
    assert eng.bin_dir == fake_root / f"llama.cpp-{info.LLAMA_CPP_PYTHON_VERSION}" / "bin"
    assert eng.server.name == "llama-server" and os.access(eng.server, os.X_OK)
    assert (eng.source_dir / "convert_hf_to_gguf.py").is_file() and (eng.source_dir / "gguf-py").is_dir()
    assert not (eng.source_dir / "README.md").exists()  # only vendor/llama.cpp was unpacked
    manifest = json.loads((eng.bin_dir.parent / "engine.json").read_text())
    assert manifest["version"] == FAKE_VERSION and set(manifest["files"]) == {"llama-server", "llama-quantize"}
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in manifest["cmake_flags"] and manifest["llama_cpp_commit"] == "abc1234"
    assert any(re.fullmatch(r"building llama\.cpp \(about \d+ minutes? on \d+ cores\) \.\.\.", line) for line in lines)
    assert lines[-1].startswith(f"built llama.cpp {FAKE_VERSION}")
    assert not [p for p in fake_root.iterdir() if p.name.startswith(".build-")]  # scratch removed
    again: list[str] = []
    assert build.ensure_engine(again.append).version == FAKE_VERSION and again == []  # nothing rebuilt


def test_a_cpu_that_lists_amx_but_traps_on_it_gets_a_build_without_it(fake_root, monkeypatch, tmp_path):
    # The VM's word (its flags) against the CPU's (the probe): only the probe's "it traps" is stood in
    # for, as a machine that runs AMX cannot produce it; the flags then go through the real cmake build.
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n")
    assert isa.cpu_lists_amx(cpuinfo) and not isa.cpu_lists_amx(tmp_path / "missing")
    cpuinfo.write_text("flags\t\t: fpu sse avx512f\n")
    assert not isa.cpu_lists_amx(cpuinfo)
    monkeypatch.setattr(isa, "cpu_lists_amx", lambda: True)
    monkeypatch.setattr(isa, "amx_runs", lambda work: False)
    lines: list[str] = []
    eng = build.ensure_engine(lines.append)
    flags = json.loads((eng.bin_dir.parent / "engine.json").read_text())["cmake_flags"]
    assert f"-DCMAKE_C_FLAGS={' '.join(isa.AMX_OFF)}" in flags and f"-DCMAKE_CXX_FLAGS={' '.join(isa.AMX_OFF)}" in flags
    assert any("does not run it" in line for line in lines)


def test_two_processes_build_it_once(fake_root):
    code = ("from llmbench.engines.llamacpp import ensure_engine\n"
            "e = ensure_engine(lambda s: print('progress', s, flush=True)); print('version', e.version)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert all(f"version {FAKE_VERSION}" in out for out in outs)
    assert sum(out.count("configuring llama.cpp") for out in outs) == 1, outs


def test_a_failed_build_is_reported_once_with_the_log(fake_root, tmp_path, monkeypatch):
    (tmp_path / "broken").mkdir()
    monkeypatch.setenv(build.SDIST_ENV, str(fake_sdist(tmp_path / "broken", broken=True)))
    with pytest.raises(EngineUnavailable) as first:
        build.ensure_engine()
    msg = str(first.value)
    assert "cmake configure failed" in msg and "Configuring incomplete, errors occurred" in msg  # the log's tail
    assert first.value.repeated is False
    assert (fake_root / "llama.cpp-build-failed.log").is_file()
    lines: list[str] = []
    with pytest.raises(EngineUnavailable) as second:
        build.ensure_engine(lines.append)
    assert second.value.repeated is True and str(second.value) == msg and lines == []  # not tried again
    assert not info.engine_dir().exists()
    assert not [p for p in fake_root.iterdir() if p.name.startswith(".build-")]


def test_a_damaged_engine_is_not_used_and_is_rebuilt(fake_root):
    eng = build.ensure_engine()
    eng.quantize.write_bytes(eng.quantize.read_bytes()[:100])
    assert info.find_engine() is None
    assert "llama-quantize" in info.built_problem(eng.bin_dir.parent)
    doc = json.loads(CliRunner().invoke(main, ["engines", "--json"]).output)["engines"][0]
    assert doc["built"] is False and "llama-quantize" in doc["problem"]
    assert build.ensure_engine().quantize.stat().st_size > 100


def test_an_unusable_development_tree_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(info.DEV_TREE_ENV, str(tmp_path))
    with pytest.raises(EngineUnavailable, match=info.DEV_TREE_ENV):
        info.find_engine()
    res = CliRunner().invoke(main, ["engines", "build"])
    assert res.exit_code == 1 and info.DEV_TREE_ENV in res.output


def test_the_real_engine_and_engines_json(engine, tmp_path):
    assert re.fullmatch(r"\d+\.\d+\.\d+\S* \(.*commit [0-9a-f]{7,}\)", engine.version), engine.version
    assert engine.source_version == f"llama-cpp-python {info.LLAMA_CPP_PYTHON_VERSION}"
    if not os.environ.get(info.DEV_TREE_ENV):
        # Built here: the binaries find their libraries beside them, so a printed command runs as is.
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        out = subprocess.run([str(engine.server), "--version"], capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0 and engine.version in out.stdout + out.stderr
        # Built without AMX exactly where the CPU lists it and a tile instruction traps (isa.py).
        flags = json.loads((engine.bin_dir.parent / "engine.json").read_text())["cmake_flags"]
        assert any(isa.AMX_OFF[0] in f for f in flags) == bool(isa.native_flags_off(tmp_path))
    res = CliRunner().invoke(main, ["engines", "--json"])
    assert res.exit_code == 0
    doc = json.loads(res.output)["engines"][0]
    assert doc["name"] == "llama.cpp" and doc["built"] is True and doc["version"] == engine.version
    assert doc["server"] == str(engine.server) and doc["source_version"] == engine.source_version
    assert set(doc) >= {"name", "version", "source_version", "path", "built", "bin_dir", "source_dir"}
    text = CliRunner().invoke(main, ["engines"]).output
    assert "llama.cpp" in text and engine.version in text and "built" in text
