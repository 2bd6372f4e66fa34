"""Optional approximate nearest neighbours (usearch HNSW) for `similar` in very large libraries.

Exact search (`similarity.nearest`) stays the default: at 100 000 photos it answers in
well under a second, while an HNSW graph takes minutes to build on a laptop and only pays
once it is kept on disk and queried many times. Chosen over hnswlib and faiss-cpu after
measuring them (docs/benchmarks.md): recall@10 0.99 like theirs, the fastest HNSW build,
float16 storage (half their float32 memory), removal of photos (faiss HNSW has none, its
IVF needs retraining as a library changes), one file to save. Install: `phototag[ann]`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from phototag.library.similarity import Neighbours

# Libraries from this many photos up use the ANN index when it is installed. Exact search
# over float16 rows grows linearly, 0.4 to 0.6 s per 100 000 photos on the shared 2-core
# machine (docs/benchmarks.md): from here on a scan takes about a second or more.
ANN_MIN_ROWS = 200_000


def available() -> bool:
    return importlib.util.find_spec("usearch") is not None


def use_ann(rows: int) -> bool:
    """Whether `similar` over `rows` photos should go through AnnIndex."""
    return rows >= ANN_MIN_ROWS and available()


class AnnIndex:
    """HNSW over unit embeddings keyed by photo id; inner product is the cosine similarity."""

    def __init__(self, dim: int) -> None:
        from usearch.index import Index

        self._index = Index(ndim=dim, metric="ip", dtype="f16")

    @classmethod
    def build(cls, keys: np.ndarray, matrix: np.ndarray, threads: int = 0) -> AnnIndex:
        """Index rows of `matrix` under `keys` (threads 0: all cores)."""
        index = cls(matrix.shape[1])
        index.add(keys, matrix, threads)
        return index

    @classmethod
    def load(cls, path: Path) -> AnnIndex:
        from usearch.index import Index

        loaded = Index.restore(str(path))
        if loaded is None:
            raise ValueError(f"{path}: not a usearch index file")
        index = cls.__new__(cls)
        index._index = loaded
        return index

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename) so a crash never leaves half an index."""
        tmp = path.with_name(f".{path.name}.tmp")
        self._index.save(str(tmp))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 0) -> None:
        """Add or replace photos: a key already present is removed first."""
        keys = np.asarray(keys, np.uint64)
        present = [k for k in keys.tolist() if k in self._index]
        if present:
            self._index.remove(present)
        self._index.add(keys, np.asarray(vectors, np.float16), threads=threads)

    def remove(self, keys: Sequence[int]) -> None:
        self._index.remove(list(keys))

    def search(self, query: np.ndarray, k: int, exclude: Sequence[int] = ()) -> Neighbours:
        """About the k nearest photo ids to a unit query, best first; `exclude` keys dropped."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        matches = self._index.search(np.asarray(query, np.float32), k + len(exclude))
        keys = matches.keys.astype(np.int64)
        keep = ~np.isin(keys, np.asarray(exclude, np.int64))
        scores = (1 - matches.distances[keep]).astype(np.float32)
        return Neighbours(keys[keep][:k], scores[:k])
