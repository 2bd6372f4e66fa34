"""Approximate nearest neighbours (usearch HNSW) for `similar` in very large libraries.

Exact search (`similarity.nearest`) answers below ANN_MIN_ROWS: at 100 000 photos it takes
well under a second, while an HNSW graph takes minutes to build and only pays once it is
kept on disk and queried many times. Chosen over hnswlib and faiss-cpu after measuring them
(docs/benchmarks.md): recall@10 0.99 like theirs, the fastest HNSW build, float16 storage
(half their float32 memory), one file to save and memory-map. Install: `phototag[ann]`.

The graph of a vector store is a file beside it (`<store file>.usearch`) whose keys are the
store's row numbers. Rows are append-only and never rewritten in place, so the graph of rows
0..n-1 stays true as the store grows: rows appended since it was saved are searched exactly
(`TAIL_ROWS` at most, then added and the graph saved again), and which photo a row belongs
to now, if any, is asked of the index (`Index.paths_of_rows`): a removed or re-analysed
photo's old row names nobody and is dropped, a moved photo's row names its new path.
Compaction renumbers rows into a new store file, which has no graph yet: the next `similar`
builds one (compact.py removes the old graph with the old store).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phototag.files import fileio
from phototag.library.index import Index, VectorStore
from phototag.library.similarity import Neighbours, nearest

# Libraries from this many photos up use the ANN index when it is installed. Exact search
# over float16 rows grows linearly, 0.4 to 0.6 s per 100 000 photos on the shared 2-core
# machine (docs/benchmarks.md): from here on a scan takes about a second or more.
ANN_MIN_ROWS = 200_000
# Rows past the saved graph searched exactly (about 20 ms per 20 000) before they are
# added and the graph written again (seconds at 1 000 000: the file holds every vector).
TAIL_ROWS = 20_000
# HNSW parameters: usearch's defaults (16, 128, 64) gave recall@10 0.887 at 200 000
# synthetic photos; a wider search at query time brings it over 0.95 (docs/benchmarks.md).
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256
BUILD_CHUNK = 50_000  # rows added between two progress lines
SUFFIX = ".usearch"


def available() -> bool:
    return importlib.util.find_spec("usearch") is not None


def use_ann(rows: int) -> bool:
    """Whether `similar` over a store of `rows` rows should go through the graph."""
    return rows >= ANN_MIN_ROWS and available()


def _usearch() -> Any:
    """usearch's Index class, imported after onnxruntime: with usearch 2.26.2+ loaded
    first, `import onnxruntime` segfaults (tests/test_ann.py)."""
    import onnxruntime  # noqa: F401
    from usearch.index import Index as Usearch

    return Usearch


def graph_path(store: Path) -> Path:
    """The graph file of a vector store file."""
    return store.with_name(store.name + SUFFIX)


class AnnIndex:
    """HNSW over unit embeddings; inner product is the cosine similarity."""

    def __init__(self, dim: int) -> None:
        self._index = _usearch()(
            ndim=dim,
            metric="ip",
            dtype="f16",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    @classmethod
    def build(cls, keys: np.ndarray, matrix: np.ndarray, threads: int = 0) -> AnnIndex:
        """Index rows of `matrix` under `keys` (threads 0: all cores)."""
        index = cls(matrix.shape[1])
        index.add(keys, matrix, threads)
        return index

    @classmethod
    def load(cls, path: Path, view: bool = False) -> AnnIndex:
        """A saved graph, read into memory, or memory-mapped read-only (`view`: no copy,
        what a one-off `similar` wants of a file of gigabytes)."""
        loaded = _usearch().restore(str(path), view=view)
        if loaded is None:
            raise ValueError(f"{path}: not a usearch index file")
        loaded.expansion_search = EXPANSION_SEARCH  # not kept in the file
        index = cls.__new__(cls)
        index._index = loaded
        return index

    def save(self, path: Path, mode: int | None = None) -> None:
        """Write atomically (temp file, fsync, rename) so a crash never leaves half an index."""
        fileio.atomic_replace(path, lambda tmp: self._index.save(str(tmp)), mode)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def dim(self) -> int:
        return int(self._index.ndim)

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
        """About the k nearest keys to a unit query, best first; `exclude` keys dropped."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        matches = self._index.search(np.asarray(query, np.float32), k + len(exclude), threads=1)
        keys = matches.keys.astype(np.int64)
        keep = ~np.isin(keys, np.asarray(exclude, np.int64))
        scores = (1 - matches.distances[keep]).astype(np.float32)
        return Neighbours(keys[keep][:k], scores[:k])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def current(store: VectorStore, threads: int = 0, log: Callable[[str], None] = _stderr) -> AnnIndex:
    """The store's graph, built or extended and saved when more than TAIL_ROWS rows lack one.

    A graph with more rows than its store (the store was replaced) is built anew. A folder
    that cannot be written (another user's library) gets one line, and the graph in memory.
    """
    path = graph_path(store.path)
    rows = store.rows
    graph = _saved(path, store, log)
    if graph is not None and rows - len(graph) <= TAIL_ROWS:
        return graph
    graph = AnnIndex.load(path) if graph is not None else AnnIndex(store.dim)
    first = len(graph)
    if rows - first > BUILD_CHUNK:
        log(
            f"phototag: indexing {rows - first:,} embeddings for `similar` (once, then kept "
            f"in {path.name}); progress follows"
        )
    start = time.monotonic()
    for at in range(first, rows, BUILD_CHUNK):
        end = min(at + BUILD_CHUNK, rows)
        graph.add(np.arange(at, end), store.get(np.arange(at, end), np.float16), threads)
        if rows - first > BUILD_CHUNK:
            done = (end - first) / (rows - first)
            left = (time.monotonic() - start) * (1 - done) / done
            log(f"phototag: {end:,} of {rows:,} embeddings indexed, about {left / 60:.0f} min left")
    try:
        graph.save(path, store.path.stat().st_mode & 0o777)  # readable as its store is
    except OSError as exc:
        log(f"phototag: cannot save the `similar` graph {path}: {exc.strerror}")
    return graph


def _saved(path: Path, store: VectorStore, log: Callable[[str], None]) -> AnnIndex | None:
    """The saved graph, memory-mapped, if it is one of this store; else None (built anew)."""
    if not path.exists():
        return None
    try:
        graph = AnnIndex.load(path, view=True)
    except (OSError, ValueError) as exc:
        log(f"phototag: {path}: unreadable ({exc}); building it again")
        return None
    return graph if graph.dim == store.dim and len(graph) <= store.rows else None


def similar(
    index: Index,
    name: str,
    query: np.ndarray,
    k: int,
    skip: str = "",
    graph: AnnIndex | None = None,
) -> list[tuple[str, float]]:
    """The k indexed photos nearest to a unit query in store `name`, as (path, cosine) best
    first, `skip` left out: the graph's hits and the rows past it, checked with the index."""
    store = index.store(name, len(query))
    graph = graph or current(store)
    total = store.rows
    tail = np.arange(len(graph), total)
    tail_rows = store.get(tail, np.float16)
    want = 2 * k + 16  # room for orphan rows (removed photos) and `skip`
    while True:
        found = graph.search(query, min(want, len(graph))) if len(graph) else None
        near = nearest(tail_rows, query, min(want, len(tail))) if len(tail) else None
        rows = np.concatenate([found.indices if found else [], tail[near.indices] if near else []])
        scores = np.concatenate([found.scores if found else [], near.scores if near else []])
        order = np.argsort(-scores, kind="stable")
        owners = index.paths_of_rows(name, rows.astype(np.int64).tolist())
        hits = [
            (path, float(scores[i]))
            for i in order.tolist()
            for path in sorted(owners.get(int(rows[i]), []))
            if path != skip
        ]
        if len(hits) >= k or want >= total:
            return hits[:k]
        want *= 4
