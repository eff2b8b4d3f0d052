"""The cache's vector index: a float32 matrix that grows by appends, searched by the Numba kernels.

Capacity doubles when it runs out, so n appends copy O(n) rows in all (never the whole matrix per
insert). Removal moves the last row into the freed slot (O(dim)), so rows stay dense and every
search scans exactly the live rows. An optional int8 mirror serves large indexes at a quarter of
the memory traffic (exact float32 re-scoring keeps the answers).
"""
from __future__ import annotations

import numpy as np

from llmbench.kernels.search import InvalidVectors, check_unit_rows


class VectorStore:
    """Unit-length float32 vectors, each under an integer id; top-k search by inner product."""

    def __init__(self, dim: int, capacity: int = 1024, use_int8: bool = False, int8_min_rows: int = 20_000,
                 n_threads: int | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.dim = dim
        self.use_int8 = use_int8
        self.int8_min_rows = int8_min_rows  # below this a float32 scan is already cheap
        self.n_threads = n_threads
        self._n = 0
        self._m = np.zeros((max(1, capacity), dim), dtype=np.float32)
        self._ids = np.zeros(max(1, capacity), dtype=np.int64)
        self._q = np.zeros((max(1, capacity), dim), dtype=np.int8) if use_int8 else None
        self._scales = np.ones(max(1, capacity), dtype=np.float32) if use_int8 else None
        self._row_of: dict[int, int] = {}
        self.grow_count = 0  # how many times the matrix was reallocated (for the tests)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self._row_of

    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return self._m.shape[0]

    @property
    def row_bytes(self) -> int:
        """Bytes one live row holds: its float32 vector, its int64 id, and the int8 mirror and scale when on."""
        return self.dim * 4 + 8 + ((self.dim + 4) if self.use_int8 else 0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the live rows (float32, plus the int8 mirror when on)."""
        return self._n * self.row_bytes

    def vectors(self) -> np.ndarray:
        """A read-only view of the live rows, in row order."""
        view = self._m[: self._n]
        view = view.view()
        view.flags.writeable = False
        return view

    def ids(self) -> np.ndarray:
        """The ids of the live rows, in row order."""
        return self._ids[: self._n].copy()

    def _grow(self, need: int) -> None:
        cap = self.capacity
        if need <= cap:
            return
        new_cap = max(need, 2 * cap)
        m = np.zeros((new_cap, self.dim), dtype=np.float32)
        m[: self._n] = self._m[: self._n]
        ids = np.zeros(new_cap, dtype=np.int64)
        ids[: self._n] = self._ids[: self._n]
        self._m, self._ids = m, ids
        if self.use_int8:
            q = np.zeros((new_cap, self.dim), dtype=np.int8)
            q[: self._n] = self._q[: self._n]
            s = np.ones(new_cap, dtype=np.float32)
            s[: self._n] = self._scales[: self._n]
            self._q, self._scales = q, s
        self.grow_count += 1

    def add(self, ids: list[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Append vectors under new ids. NaN, infinite or non-unit rows are refused (InvalidVectors)."""
        vecs = check_unit_rows(vectors, self.dim, what="vectors to insert")
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.shape[0] != vecs.shape[0]:
            raise InvalidVectors(f"{ids.shape[0]} ids for {vecs.shape[0]} vectors")
        if len(set(ids.tolist())) != ids.shape[0] or any(int(i) in self._row_of for i in ids):
            raise InvalidVectors("ids to insert must be new and distinct")
        n_new = vecs.shape[0]
        self._grow(self._n + n_new)
        lo, hi = self._n, self._n + n_new
        self._m[lo:hi] = vecs
        self._ids[lo:hi] = ids
        if self.use_int8 and n_new:
            from llmbench.kernels.search import quantize

            self._q[lo:hi], self._scales[lo:hi] = quantize(vecs)
        for r, i in enumerate(ids.tolist()):
            self._row_of[i] = lo + r
        self._n = hi

    def remove(self, entry_id: int) -> None:
        """Drop one id; the last row moves into its slot."""
        row = self._row_of.pop(entry_id)
        last = self._n - 1
        if row != last:
            self._m[row] = self._m[last]
            moved = int(self._ids[last])
            self._ids[row] = moved
            self._row_of[moved] = row
            if self.use_int8:
                self._q[row] = self._q[last]
                self._scales[row] = self._scales[last]
        self._n = last

    def warm_up(self) -> None:
        """Compile (or load from Numba's disk cache) the search kernels now, outside any timing."""
        from llmbench.kernels import search

        tiny = np.zeros((2, self.dim), dtype=np.float32)
        tiny[:, 0] = 1.0
        search.topk(tiny, tiny[0], 1)
        if self.use_int8:
            q, s = search.quantize(tiny)
            search.topk_int8(tiny, q, s, tiny[0], 1)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (cosines float32, ids int64), best first; ties go to the earlier row."""
        from llmbench.kernels import search

        if self._n == 0 or k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        if self.use_int8 and self._n >= self.int8_min_rows:
            scores, rows = search.topk_int8(self._m, self._q, self._scales, query, k, n=self._n,
                                            n_threads=self.n_threads)
        else:
            scores, rows = search.topk(self._m, query, k, n=self._n, n_threads=self.n_threads)
        return scores, self._ids[rows]

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for many queries at once: (cosines, ids) of shape (len(queries), min(k, len(self)))."""
        from llmbench.kernels import search

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._n == 0 or k <= 0:
            return (np.zeros((queries.shape[0], 0), dtype=np.float32),
                    np.zeros((queries.shape[0], 0), dtype=np.int64))
        scores, rows = search.topk_batch(self._m, queries, k, n=self._n, n_threads=self.n_threads)
        return scores, self._ids[rows]
