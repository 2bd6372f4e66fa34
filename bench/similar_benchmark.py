"""`phototag similar` at library scale: the ANN graph's build, query latency and recall.

Writes a synthetic library with embeddings (tests/synthetic_library.py) through the real
`Index.put_many`, lets `ann.current` build and save the graph as the first `similar` does,
then times `similar`'s lookup in process and `phototag similar` as a user runs it, and
measures recall@10 of the graph against exact search (`similarity.nearest`) and how close
the photos it finds are: their mean cosine to the query over the true 10's.

Run: OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/similar_benchmark.py
--n 200000 --dir /tmp/ann12-200k [--threads 1] (an index or graph already in --dir is reused;
each figure is printed as soon as it is measured, with the load average).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import reference_embeddings
import synthetic_library

from phototag import catalogue
from phototag.library import ann
from phototag.library.index import open_index
from phototag.library.similarity import nearest, similarities

MODEL = catalogue.find("mobilenet-v2", "tf1-quant")  # the model of the shared test data
STORE = f"embedding-{MODEL.sha256[:12]}"  # where `similar` with that model looks
CHUNK = 100_000
K = 10
EXPANSIONS = (64, 128, 256, 512)


def write(index_dir: Path, n: int) -> float:
    """n synthetic photos with 1280-d embeddings, 10 000 a batch; seconds taken."""
    start = time.perf_counter()
    vectors, _ = synthetic_library.embeddings(n, seed=1)
    with open_index(index_dir) as index:
        for at in range(0, n, CHUNK):
            lib = synthetic_library.library(min(CHUNK, n - at), dim=0, seed=at)
            records = synthetic_library.photo_records(lib)
            for r in records:
                r.path = r.path.replace("IMG_", f"IMG_{at // CHUNK}_")
            for part in range(0, len(records), 10_000):
                rows = vectors[at + part : at + part + 10_000]
                index.put_many(records[part : part + 10_000], [{STORE: v} for v in rows])
            print(f"written {at + len(records):,}", file=sys.stderr, flush=True)
    return time.perf_counter() - start


def load() -> str:
    return "load " + " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentiles(times: list[float]) -> str:
    p50, p95 = np.percentile(times, [50, 95]) * 1e3
    return f"{p50:.1f} / {p95:.1f} ms"


def fresh(env: dict[str, str], *argv: str) -> list[float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True)
    return [time.perf_counter() - start]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="graph build threads")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20, help="fresh `phototag similar` runs")
    args = parser.parse_args()
    index_dir = args.dir / "index"
    if not (index_dir / "index.sqlite").exists():
        print(f"wrote {args.n:,} photos in {write(index_dir, args.n):.0f} s ({load()})")
    with open_index(index_dir, readonly=True) as index:
        store = index.store(STORE, 1280)
        print(f"{store.rows:,} rows of {STORE}; ann.use_ann: {ann.use_ann(store.rows)}")
        start = time.perf_counter()
        ann.current(store, args.threads)
        print(f"graph current (built if missing): {time.perf_counter() - start:.0f} s ({load()})")
        rng = np.random.default_rng(2)
        rows = np.sort(rng.choice(store.rows, args.queries, replace=False))
        queries = store.get(rows)
        owner = {row: paths[0] for row, paths in index.paths_of_rows(STORE, rows.tolist()).items()}
        matrix = store.get(np.arange(store.rows), np.float16)
        start = time.perf_counter()
        for q in queries[:5]:
            nearest(matrix, q, K)
        exact_s = (time.perf_counter() - start) / 5
        print(f"exact `similar` lookup (similarity.nearest), mean of 5: {exact_s:.2f} s ({load()})")
        cosines = similarities(matrix, queries.T)  # [rows, queries]
        truth, best = [], []
        for i, row in enumerate(rows.tolist()):
            cosines[row, i] = -2  # the photo itself, as `similar` of an indexed photo
            top = np.argpartition(-cosines[:, i], K)[:K]
            truth.append(set(top.tolist()))
            best.append(float(cosines[top, i].mean()))
        del matrix, cosines
        want = {
            row: index.paths_of_rows(STORE, sorted(t))
            for row, t in zip(rows.tolist(), truth, strict=True)
        }
        for ef in EXPANSIONS:
            ann.EXPANSION_SEARCH = ef
            graph = ann.AnnIndex.load(ann.graph_path(store.path), view=True)
            times, hits, ratios = [], 0, []
            for row, q, top in zip(rows.tolist(), queries, best, strict=True):
                start = time.perf_counter()
                found = ann.similar(index, STORE, q, K, owner[row], graph)
                times.append(time.perf_counter() - start)
                expected = {p for paths in want[row].values() for p in paths}
                hits += len({path for path, _ in found} & expected)
                ratios.append(np.mean([score for _, score in found]) / top)
            recall = hits / (K * len(rows))
            print(
                f"| {store.rows:,} | expansion_search {ef} | {percentiles(times)} | "
                f"{recall:.3f} | {np.mean(ratios):.4f} | {load()} |",
                flush=True,
            )
    if not reference_embeddings.MODEL.exists():
        return
    config = args.dir / "config.yaml"
    config.write_text(f"index:\n  path: {index_dir}\n", encoding="utf-8")
    env = {**os.environ, "XDG_DATA_HOME": str(args.dir / "data"), "PHOTOTAG_CONFIG": str(config)}
    fresh(env, "-m", "phototag", "-q", "models", "import", str(reference_embeddings.MODEL))
    photo = str(reference_embeddings.PHOTOS / "cat_720p.jpg")
    runs: dict[str, list[float]] = {"python -c pass": [], "--version": [], "similar": []}
    before = load()
    for _ in range(args.runs):  # interleaved, so each sees the same load
        runs["python -c pass"] += fresh(env, "-c", "pass")
        runs["--version"] += fresh(env, "-m", "phototag", "--version")
        runs["similar"] += fresh(env, "-m", "phototag", "-q", "similar", photo, "-k", str(K))
    print(f"fresh processes, {args.runs} runs interleaved, p50 / p95 ({before}, after: {load()}):")
    for name, times in runs.items():
        print(f"| {name} | {percentiles(times)} |")


if __name__ == "__main__":
    main()
