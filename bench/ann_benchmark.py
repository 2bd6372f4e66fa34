"""Compare ANN libraries for `similar` at library scale: build time, query latency, recall@10.

Run: .venv/bin/python bench/ann_benchmark.py [--n 100000] [--threads 2] [--only phototag]
(needs `pip install hnswlib usearch faiss-cpu`; a library that is missing is skipped;
`--only` keeps the rows whose name contains it: `phototag` is `similar`'s own AnnIndex).
Data: synthetic clustered non-negative unit embeddings (tests/synthetic_library.py), the
ground truth from phototag.library.similarity.nearest (exact).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import synthetic_library

from phototag.library.ann import AnnIndex
from phototag.library.similarity import nearest

K = 10


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def time_queries(search, data: np.ndarray, rows: np.ndarray) -> tuple[list, list[float]]:
    """Neighbours of library photos as `similar` asks: K + 1 found, the photo itself dropped."""
    found, times = [], []
    for row in rows:
        query = data[row].astype(np.float32)
        t = time.perf_counter()
        keys = search(query)
        times.append(time.perf_counter() - t)
        found.append([key for key in keys if key != row][:K])
    return found, times


def hnswlib_index(data: np.ndarray, threads: int):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=16, ef_construction=200)
    index.add_items(data.astype(np.float32), num_threads=threads)
    index.set_ef(64)
    return lambda q: index.knn_query(q[None], k=K + 1, num_threads=1)[0][0]


def phototag_index(data: np.ndarray, threads: int):
    index = AnnIndex.build(np.arange(len(data)), data, threads)
    return lambda q: index.search(q, K + 1).indices


def usearch_index(data: np.ndarray, threads: int):
    from usearch.index import Index

    index = Index(
        ndim=data.shape[1],
        metric="ip",
        dtype="f16",
        connectivity=16,
        expansion_add=128,
        expansion_search=64,
    )
    index.add(np.arange(len(data)), data, threads=threads)
    return lambda q: index.search(q, K + 1, threads=1).keys


def faiss_hnsw_index(data: np.ndarray, threads: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.add(data.astype(np.float32))
    index.hnsw.efSearch = 64
    faiss.omp_set_num_threads(1)
    return lambda q: index.search(q[None].astype(np.float32), K + 1)[1][0]


def faiss_ivf_index(data: np.ndarray, threads: int):
    import faiss

    faiss.omp_set_num_threads(threads)
    nlist = int(4 * np.sqrt(len(data)))
    quantiser = faiss.IndexFlatIP(data.shape[1])
    index = faiss.IndexIVFFlat(quantiser, data.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    x = data.astype(np.float32)
    index.train(x)
    index.add(x)
    index.nprobe = 16
    faiss.omp_set_num_threads(1)
    return lambda q: index.search(q[None].astype(np.float32), K + 1)[1][0]


LIBRARIES = {
    "phototag AnnIndex (usearch HNSW f16 M=16 efC=128 ef=256)": ("usearch", phototag_index),
    "hnswlib (HNSW M=16 efC=200 ef=64)": ("hnswlib", hnswlib_index),
    "usearch (HNSW f16 M=16 efC=128 ef=64)": ("usearch", usearch_index),
    "faiss-cpu (HNSWFlat M=16 efC=200 ef=64)": ("faiss", faiss_hnsw_index),
    "faiss-cpu (IVFFlat nlist=4sqrt(n) nprobe=16)": ("faiss", faiss_ivf_index),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="only the libraries whose name contains this")
    args = parser.parse_args()
    data, _ = synthetic_library.embeddings(args.n, seed=1)
    rng = np.random.default_rng(2)
    query_rows = rng.choice(args.n, args.queries, replace=False)
    truth, exact = [], []
    for row in query_rows:
        t = time.perf_counter()
        truth.append(nearest(data, data[row], K, exclude=[row]).indices)
        exact.append(time.perf_counter() - t)
    print(f"n={args.n} dim={data.shape[1]} threads={args.threads} queries={args.queries}")
    exact_p50, exact_p95 = np.percentile(exact, [50, 95]) * 1e3
    print(
        f"exact (similarity.nearest, float16 rows) p50 / p95: {exact_p50:.1f} / {exact_p95:.1f} ms"
    )
    print("| library | build s | query p50 ms | query p95 ms | recall@10 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (module, make) in LIBRARIES.items():
        if args.only not in name:
            continue
        if importlib.util.find_spec(module) is None:
            print(f"| {name} | not installed | | | |")
            continue
        t = time.perf_counter()
        search = make(data, args.threads)
        build = time.perf_counter() - t
        found, times = time_queries(search, data, query_rows)
        p50, p95 = np.percentile(times, [50, 95]) * 1e3
        print(
            f"| {name} | {build:.1f} | {p50:.2f} | {p95:.2f} | {recall(found, truth):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
