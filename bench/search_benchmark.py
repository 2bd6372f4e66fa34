"""Search benchmarks: query latency, index build, `similar`, duplicates, clusters, real photos.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/search_benchmark.py [--parts ...]
Prints markdown for docs/benchmarks.md ("Search"). Libraries are synthetic
(tests/synthetic_library.py: Zipf tags over a 300-leaf hierarchy, clustered embeddings);
the real-photo part uses the shared MobileNetV2 and photos when ../shared is present.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import reference_embeddings
import synthetic_library
from PIL import Image

from phototag.library import ann, similarity
from phototag.library.query import And, Node, Not, Or, Term, parse, terms
from phototag.library.tagindex import Filter, TagIndex, date_bound


def percentiles(times: list[float]) -> str:
    p50, p95 = np.percentile(np.array(times) * 1e3, [50, 95])
    return f"{p50:.2f} | {p95:.2f}"


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best wall time of `repeat` runs (the machine is shared; the minimum is the least noisy)."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def query_mix(n: int, seed: int = 0) -> list[tuple[str, Filter]]:
    """Queries as people type them: common and rare tags, paths, AND/OR/NOT, with filters."""
    rng = np.random.default_rng(seed)
    paths = synthetic_library.vocabulary()

    def term() -> str:
        leaf = paths[int(synthetic_library.zipf_choice(rng, len(paths), 1)[0])]
        level = int(rng.integers(3))
        if rng.random() < 0.15:
            return "|".join(leaf.split("|")[: level + 1])  # a path from the root
        return leaf.split("|")[level]

    shapes = [
        lambda: term(),
        lambda: f"{term()} {term()}",
        lambda: f"{term()} OR {term()} OR {term()}",
        lambda: f"{term()} -{term()}",
        lambda: f"({term()} OR {term()}) {term()} NOT {term()}",
        lambda: f"NOT {term()}",
    ]
    filters = [
        Filter(),
        Filter(source="user"),
        Filter(min_score=0.5),
        Filter(taken_from=date_bound("2018"), taken_before=date_bound("2019-06", end=True)),
        Filter(folder="/photos/2020"),
    ]
    return [
        (shapes[int(rng.integers(len(shapes)))](), filters[int(rng.integers(len(filters)))])
        for _ in range(n)
    ]


def array_eval(node: Node, postings: dict[str, np.ndarray], universe: np.ndarray) -> np.ndarray:
    """The alternative measured against masks: set operations on sorted unique id arrays."""
    if isinstance(node, Term):
        return postings[node.text]
    if isinstance(node, Not):
        return np.setdiff1d(universe, array_eval(node.operand, postings, universe), True)
    parts = [array_eval(child, postings, universe) for child in node.operands]
    if isinstance(node, Or):
        return functools.reduce(np.union1d, parts)
    return functools.reduce(lambda a, b: np.intersect1d(a, b, assume_unique=True), parts)


def set_eval(node: Node, postings: dict[str, set[int]], universe: set[int]) -> set[int]:
    """The other alternative: Python sets."""
    if isinstance(node, Term):
        return postings[node.text]
    if isinstance(node, Not):
        return universe - set_eval(node.operand, postings, universe)
    parts = [set_eval(child, postings, universe) for child in node.operands]
    if isinstance(node, Or):
        return set().union(*parts)
    assert isinstance(node, And)
    return set.intersection(*parts)


def search_section(sizes: list[int], n_queries: int) -> None:
    mix = [(parse(q), f) for q, f in query_mix(n_queries)]
    print("### Queries and the inverted index\n")
    print(
        f"{n_queries} queries (`query_mix`: single tags, paths, implicit AND, OR of three, "
        "`-tag`, nested with NOT, pure NOT; a fifth each with no filter, `--source user`, "
        "`--min-score 0.5`, a date range, a folder).\n"
    )
    print(
        "| photos | build s | index memory MB | query p50 ms | query p95 ms "
        "| add+remove one photo ms | first query after 100 edits ms |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    strategies = []
    for n in sizes:
        entries = synthetic_library.library(n, dim=0).entries
        build_s, index = timed(lambda entries=entries: TagIndex.build(entries), repeat=3)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = TagIndex.build(entries)
        memory = (tracemalloc.get_traced_memory()[0] - before) / 1e6
        tracemalloc.stop()
        del kept
        for node, flt in mix[:20]:  # warm-up: first reads of each posting
            index.search(node, flt)
        times = []
        for node, flt in mix:
            start = time.perf_counter()
            index.search(node, flt)
            times.append(time.perf_counter() - start)
        edits = []
        for entry in entries[:100]:
            start = time.perf_counter()
            index.remove(entry.id)
            index.add(entry)
            edits.append(time.perf_counter() - start)
        merge_s, _ = timed(lambda index=index: index.search(parse("t0 OR t1 OR r2 OR m3")))
        print(
            f"| {n:,} | {build_s:.2f} | {memory:.1f} | {percentiles(times)} "
            f"| {np.median(edits) * 1e3:.2f} | {merge_s * 1e3:.1f} |"
        )
        strategies.append((n, compare_strategies(index, [node for node, _ in mix])))
    print(
        "\nEvaluation strategies on the same queries without filters (p50 | p95 ms; postings "
        "prepared outside the timing for arrays and sets, so only the set algebra is timed "
        "for them, while masks include scattering postings into masks):\n"
    )
    print("| photos | boolean masks (used) | sorted arrays (np.intersect1d...) | Python sets |")
    print("| ---: | ---: | ---: | ---: |")
    for n, row in strategies:
        print(f"| {n:,} | " + " | ".join(row) + " |")


def compare_strategies(index: TagIndex, nodes: list[Node]) -> list[str]:
    words = set().union(*(terms(node) for node in nodes))
    arrays = {t: index.term_ids(t) for t in words}
    sets = {t: set(ids.tolist()) for t, ids in arrays.items()}
    universe = index.ids()
    universe_set = set(universe.tolist())
    runs = {
        "masks": lambda node: index.search(node),
        "arrays": lambda node: array_eval(node, arrays, universe),
        "sets": lambda node: set_eval(node, sets, universe_set),
    }
    row = []
    for name, run in runs.items():
        times = []
        for node in nodes:
            start = time.perf_counter()
            found = run(node)
            times.append(time.perf_counter() - start)
            if name != "masks":  # same answers, or the comparison means nothing
                assert sorted(found) == index.search(node).tolist()
        row.append(percentiles(times).replace(" | ", " / "))
    return row


def similar_latency(matrix: np.ndarray, rows: np.ndarray, search: Callable) -> str:
    times = []
    for row in rows:
        start = time.perf_counter()
        search(matrix[row], int(row))
        times.append(time.perf_counter() - start)
    return percentiles(times).replace(" | ", " / ")


def embedding_section(sizes: list[int], dup_sizes: list[int], cluster_sizes: list[int]) -> None:
    print("\n### Similar, duplicates, clusters\n")
    matrix, _ = synthetic_library.embeddings(max([*sizes, *dup_sizes, *cluster_sizes]), seed=1)
    rng = np.random.default_rng(0)
    print("| operation | photos | time |")
    print("| --- | ---: | ---: |")

    def exact(data: np.ndarray) -> Callable:
        return lambda query, row: similarity.nearest(data, query, 10, exclude=[row])

    for n in sizes:
        rows = rng.choice(n, 30, replace=False)
        latency = similar_latency(matrix[:n], rows, exact(matrix[:n]))
        print(f"| `similar -k 10`, exact, float16 rows, p50 / p95 ms | {n:,} | {latency} |")
    n = sizes[0]
    for label, convert in [
        ("numpy astype", lambda chunk: chunk.astype(np.float32)),
        ("table lookup (used)", similarity._f32),
    ]:
        seconds, _ = timed(
            lambda convert=convert: [convert(matrix[a : a + 1024]) for a in range(0, n, 1024)], 3
        )
        print(f"| float16 -> float32 of all rows, {label}, ms | {n:,} | {seconds * 1e3:.0f} |")
    rows = rng.choice(n, 30, replace=False)
    data = matrix[:n].astype(np.float32)
    latency = similar_latency(data, rows, exact(data))
    print(f"| `similar -k 10`, exact, float32 rows, p50 / p95 ms | {n:,} | {latency} |")
    del data
    if ann.available():
        seconds, index = timed(lambda: ann.AnnIndex.build(np.arange(n), matrix[:n]))
        print(f"| usearch HNSW build, all cores, s | {n:,} | {seconds:.1f} |")
        latency = similar_latency(matrix[:n], rows, lambda q, row: index.search(q, 10, [row]))
        print(f"| `similar -k 10`, usearch HNSW, p50 / p95 ms | {n:,} | {latency} |")
    for size in dup_sizes:
        seconds, _ = timed(lambda size=size: similarity.duplicates(matrix[:size]))
        print(f"| `duplicates` (all pairs >= 0.95), s | {size:,} | {seconds:.1f} |")
    for size in cluster_sizes:
        tags = [("t",)] * size
        seconds, clusters = timed(
            lambda size=size, tags=tags: similarity.cluster(matrix[:size], tags)
        )
        print(f"| `cluster`, auto k (chose {len(clusters)}), s | {size:,} | {seconds:.1f} |")


def real_photo_section() -> None:
    photos = reference_embeddings.PHOTOS
    print("\n### Duplicate threshold on real photos (shared MobileNetV2, cosine)\n")
    labels, originals, changed = [], [], []
    for name in ["pets.jpg", "cat_720p.jpg", "parrot.jpg", "kite_and_cold.jpg"]:
        image = Image.open(photos / name).convert("RGB")
        w, h = image.size
        half = image.resize((w // 2, h // 2), Image.LANCZOS)
        centre = image.crop((w // 10, h // 10, w * 9 // 10, h * 9 // 10))
        for label, variant in [
            ("re-saved at JPEG quality 70", _jpeg(image, 70)),
            ("re-saved at JPEG quality 30", _jpeg(image, 30)),
            ("resized to 50 % (JPEG q90)", _jpeg(half, 90)),
            ("cropped to the central 80 %", centre),
        ]:
            labels.append(f"{name} {label}")
            originals.append(image)
            changed.append(variant)
    vectors = reference_embeddings.embed_images(originals + changed)
    base, moved = vectors[: len(labels)], vectors[len(labels) :]
    print("| pair | cosine |")
    print("| --- | ---: |")
    for label, a, b in zip(labels, base, moved, strict=True):
        print(f"| {label} vs original | {float(a @ b):.4f} |")
    pair = reference_embeddings.embed([photos / "cat_720p.jpg", photos / "cat_1080p.jpg"])
    small = np.asarray(Image.open(photos / "cat_720p.jpg").convert("RGB"), np.float32)
    large = Image.open(photos / "cat_1080p.jpg").convert("RGB").resize((1280, 720), Image.BILINEAR)
    diff = np.abs(np.asarray(large, np.float32) - small).mean()
    print(
        f"| cat_720p.jpg vs cat_1080p.jpg (the same photo: mean pixel difference "
        f"{diff:.1f}/255 after resizing) | {float(pair[0] @ pair[1]):.4f} |"
    )
    cats = reference_embeddings.embed([photos / "pets.jpg", photos / "cat_720p.jpg"])
    print(f"| pets.jpg vs cat_720p.jpg (different cat photos) | {float(cats[0] @ cats[1]):.4f} |")
    shared = sorted(p for p in photos.iterdir() if p.suffix in (".jpg", ".bmp"))
    shared = [p for p in shared if p.name != "cat_1080p.jpg"]  # the same photo as cat_720p
    _max_pair("different photos in ../shared/photos", shared)
    coco = sorted((reference_embeddings.SHARED / "coco256").glob("*/*.jpg"))
    if coco:
        _max_pair("different photos in ../shared/coco256", coco)


def coco_k_section() -> None:
    """Why `cluster` picks k by silhouette: the k-means objective on real photos has no knee."""
    coco = sorted((reference_embeddings.SHARED / "coco256").glob("*/*.jpg"))
    if not coco:
        return
    vectors = reference_embeddings.embed(coco)
    distances = np.maximum(1 - vectors @ vectors.T, 0)
    print(f"\n### Choosing k on {len(coco)} real photos (../shared/coco256)\n")
    print("| k | mean cosine distance to centroid (k-means objective) | silhouette |")
    print("| ---: | ---: | ---: |")
    for k in [2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 30]:
        result = similarity.spherical_kmeans(vectors, k, restarts=3)
        score = similarity.silhouette(distances, result.labels)
        print(f"| {k} | {1 - result.cohesion:.4f} | {score:.4f} |")
    print(f"\n`choose_k` picks k = {similarity.choose_k(vectors)}.")


def _max_pair(label: str, paths: list[Path]) -> None:
    vectors = reference_embeddings.embed(paths)
    sims = vectors @ vectors.T
    i, j = np.triu_indices(len(paths), 1)
    top = int(np.argmax(sims[i, j]))
    print(
        f"| highest of {len(i):,} pairs of {label} ({paths[i[top]].name} vs "
        f"{paths[j[top]].name}) | {float(sims[i[top], j[top]]):.4f} |"
    )


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--similar-sizes", type=int, nargs="+", default=[100_000, 200_000, 400_000])
    parser.add_argument("--duplicates-sizes", type=int, nargs="*", default=[10_000, 20_000])
    parser.add_argument("--cluster-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parts = ["search", "embeddings", "real"]
    parser.add_argument("--parts", nargs="+", choices=parts, default=parts)
    args = parser.parse_args()
    if "search" in args.parts:
        search_section(args.sizes, args.queries)
    if "embeddings" in args.parts:
        embedding_section(args.similar_sizes, args.duplicates_sizes, args.cluster_sizes)
    if "real" in args.parts and reference_embeddings.available():
        real_photo_section()
        coco_k_section()


if __name__ == "__main__":
    main()
