"""The cache folder follows the variables a fresh machine (or CI) sets, in their order of precedence."""
from __future__ import annotations

from pathlib import Path

from llmbench.paths import cache_root


def test_llmbench_cache_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMBENCH_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine" and (tmp_path / "mine").is_dir()


def test_xdg_cache_home_is_honoured(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "llmbench"


def test_home_cache_is_the_last_resort(monkeypatch, tmp_path):
    monkeypatch.delenv("LLMBENCH_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == Path(tmp_path) / ".cache" / "llmbench"
