"""The files behind a model source, and a digest of their content (part of the variant cache key)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmbench.errors import BadInput
from llmbench.models.source import ModelSource

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CHUNK = 1 << 22

# path -> (size, mtime_ns, sha256): hashing half a gigabyte of weights costs about a second, so
# a process that builds several variants of one model hashes each file once.
_FILE_DIGESTS: dict[str, tuple[int, int, str]] = {}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    memo = _FILE_DIGESTS.get(str(path))
    if memo and memo[:2] == (st.st_size, st.st_mtime_ns):
        return memo[2]
    digest = sha256_file(path)
    _FILE_DIGESTS[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return digest


def model_folder(source: ModelSource) -> Path:
    """A local folder holding the source's files: the folder itself, a built card, or a hub snapshot."""
    if source.kind in ("local", "card"):
        return Path(source.path())
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.ref, local_files_only=True))
    except Exception:
        pass
    try:  # not in the local cache: fetch it, which fails cleanly when offline
        return Path(snapshot_download(source.ref))
    except Exception as exc:
        raise BadInput(f"model {source.ref!r}: cannot get its files to build a variant ({type(exc).__name__})") from None


def model_files(folder: Path) -> list[Path]:
    """Every regular file of a model folder, sorted (hidden files and caches skipped)."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts)
    )


def folder_digest(folder: Path) -> str:
    """sha256 over (relative name, content sha256) of every file: same content, same digest."""
    h = hashlib.sha256()
    for p in model_files(folder):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + _cached_sha256(p).encode() + b"\n")
    return h.hexdigest()


# transformers' own order of preference (use_safetensors=None): safetensors first, then .bin; a
# sharded checkpoint is the shards its index names.
_CHECKPOINTS = (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model.bin"))


def loaded_weight_files(folder: Path) -> list[Path]:
    """The weight files `from_pretrained` loads from a folder, not every weight file in it.

    A folder often holds one checkpoint in two formats (`model.safetensors` and
    `pytorch_model.bin`); only one is read, so only one counts as the model's size.
    """
    folder = Path(folder)
    for index_name, single in _CHECKPOINTS:
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError, TypeError):
                raise BadInput(f"{index}: not a readable checkpoint index (no weight_map)") from None
            return [folder / s for s in shards if (folder / s).is_file()]
        if (folder / single).is_file():
            return [folder / single]
    # Another layout (a custom name): safetensors files if any, else every weight file.
    files = [p for p in model_files(folder) if p.suffix in WEIGHT_SUFFIXES]
    safetensors = [p for p in files if p.suffix == ".safetensors"]
    return safetensors or files


def weights_bytes(folder: Path) -> int:
    """Bytes of the weight files a model folder loads (what a variant is compared against)."""
    return sum(p.stat().st_size for p in loaded_weight_files(folder))
