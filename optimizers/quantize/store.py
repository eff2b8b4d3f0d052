"""A content-addressed cache of built variants under `cache_root()/variants`.

An entry is a folder named by its key (a hash of the source files, the recipe and the library
versions) holding the variant's files and a `manifest.json` that lists each file with its size and
sha256. The manifest is written last and the folder appears by an atomic rename, so an entry
either exists whole or not at all. A lookup re-checks every file against the manifest: a
truncated, edited or missing file makes the entry corrupt, and it is removed and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from llmbench.models.scratch import scratch_dir, sweep_scratch
from llmbench.optimizers.quantize.sources import sha256_file

MANIFEST = "manifest.json"
BUILD_PREFIX = ".build-"
# Facts a reader of an entry needs (build._from_entry): an entry without one of them is corrupt.
REQUIRED_FACTS = {"variant": str, "recipe": dict, "build_s": (int, float), "files": dict}
# The libraries whose versions change what an export or a quantizer writes.
LIBRARIES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "onnx-ir")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that build variants (absent ones are left out)."""
    from llmbench.environment import installed_versions

    return installed_versions(LIBRARIES)


def cache_key(source_digest: str, recipe_identity: dict, versions: dict[str, str], trust_remote_code: bool = False) -> str:
    """sha256 of (source content, recipe, versions, whether the model's own code ran) as canonical JSON.

    trust_remote_code is part of the key: a graph exported with the model's own code must never
    be served to a user who declined to run that code.
    """
    doc = {"source": source_digest, "recipe": recipe_identity, "versions": versions,
           "trust_remote_code": bool(trust_remote_code)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class Entry:
    """A verified cache entry: its folder and its manifest."""

    path: Path
    manifest: dict


class VariantStore:
    """Variants by key; `lookup` verifies, `put` publishes a finished build folder."""

    def __init__(self, root: Path | None = None):
        if root is None:
            from llmbench.paths import cache_root

            root = cache_root() / "variants"
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.last_problem: str | None = None  # why the last lookup rejected an entry (for the user)

    def path_for(self, key: str) -> Path:
        return self.root / key[:32]

    def lookup(self, key: str) -> Entry | None:
        """The entry for `key` when it is present and intact; a corrupt one is removed (None)."""
        self.last_problem = None
        path = self.path_for(key)
        if not path.exists():
            return None
        problem = verify(path, key)
        if problem is None:
            return Entry(path, json.loads((path / MANIFEST).read_text()))
        self.last_problem = f"cache entry {path} is corrupt ({problem}); rebuilding it"
        shutil.rmtree(path, ignore_errors=True)
        return None

    def new_build_dir(self) -> Path:
        """An empty folder on the same file system, to build into before `put` renames it.

        Build folders left by killed processes are removed first (see llmbench.models.scratch).
        """
        sweep_scratch(self.root, BUILD_PREFIX)
        return scratch_dir(self.root, BUILD_PREFIX)

    def put(self, key: str, build_dir: Path, facts: dict) -> Entry:
        """Write the manifest (files with sha256) into `build_dir` and publish it as the entry of `key`."""
        files = {
            p.relative_to(build_dir).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(build_dir.rglob("*")) if p.is_file() and p.name != MANIFEST
        }
        manifest = {"key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files, **facts}
        tmp = build_dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, build_dir / MANIFEST)
        target = self.path_for(key)
        try:
            os.rename(build_dir, target)
        except OSError:
            # Another process published the same key meanwhile: keep theirs if it is whole.
            if verify(target, key) is None:
                shutil.rmtree(build_dir, ignore_errors=True)
                return Entry(target, json.loads((target / MANIFEST).read_text()))
            shutil.rmtree(target, ignore_errors=True)
            os.rename(build_dir, target)
        return Entry(target, manifest)

    def discard(self, build_dir: Path) -> None:
        shutil.rmtree(build_dir, ignore_errors=True)


def verify(path: Path, key: str) -> str | None:
    """None when the entry at `path` matches its manifest and key; else what is wrong with it."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError):
        return "unreadable manifest"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return "manifest does not match the key"
    for fact, kind in REQUIRED_FACTS.items():
        if fact not in manifest:
            return f"manifest has no {fact!r}"
        if not isinstance(manifest[fact], kind) or isinstance(manifest[fact], bool):
            return f"manifest's {fact!r} is not a {getattr(kind, '__name__', 'number')}"
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != MANIFEST}
    extra = sorted(present - set(manifest["files"]))
    if extra:  # an entry is what its manifest says, no more: a stray file would be counted and copied
        return f"unexpected file {extra[0]}"
    for name, want in manifest["files"].items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != want.get("bytes"):
            return f"{name} has {f.stat().st_size} bytes, manifest says {want.get('bytes')}"
        if sha256_file(f) != want.get("sha256"):
            return f"{name} does not match its sha256"
    return None
