"""Embedding maths for `similar`, `duplicates` and `cluster`: pure numpy on the embedding matrix.

Rows are L2-normalised MobileNetV2 embeddings (float16 as stored, or float32), so a dot
product is the cosine similarity. Every function works in row chunks converted to float32
one at a time: numpy has no fast float16 matmul, and a float32 copy of 100 000 x 1280 rows
would double the index's memory.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# Default cosine similarity above which two photos are "the same picture". Measured with the
# shared MobileNetV2 (docs/benchmarks.md): re-encodes and resizes of one photo score >= 0.97,
# the same photo at 1280x720 and 1920x1080 0.997, a 80 % crop about 0.91, and no two of 256
# different COCO photos more than 0.83.
DUPLICATE_THRESHOLD = 0.95

_CHUNK_ROWS = 1024  # float32 chunk of 1280-d rows: 5 MB
# float16 -> float32 by table lookup, measured 2.3 times faster than numpy's astype
# (docs/benchmarks.md); the conversion, not the matmul, dominates a scan of stored rows.
_HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def _chunks(n: int, size: int = _CHUNK_ROWS) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _f32(rows: np.ndarray) -> np.ndarray:
    if rows.dtype == np.float16 and rows.flags.c_contiguous:
        return np.take(_HALF_TO_SINGLE, rows.view(np.uint16))
    return np.asarray(rows, dtype=np.float32)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows to float32; all-zero rows stay zero instead of becoming NaN."""
    x = _f32(x)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1)


def similarities(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row to one or more (unit) query vectors: [n] or [n, q]."""
    query = _f32(query)
    out = np.empty((len(matrix), *query.shape[1:]), np.float32)
    for rows in _chunks(len(matrix)):
        out[rows] = _f32(matrix[rows]) @ query
    return out


@dataclass(frozen=True)
class Neighbours:
    """The nearest photos (row indices; photo ids from AnnIndex), best first, with cosines."""

    indices: np.ndarray  # int64 [k]
    scores: np.ndarray  # float32 [k]


def nearest(
    matrix: np.ndarray, query: np.ndarray, k: int, exclude: Sequence[int] = ()
) -> Neighbours:
    """Exact k nearest rows to `query` by cosine; `exclude` drops rows (the query photo itself).

    Ties are broken by row index so the answer does not depend on the chunking.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    scores = similarities(matrix, query)
    scores[list(exclude)] = -np.inf
    k = min(k, len(scores) - len(set(exclude)))
    if k <= 0:
        return Neighbours(np.empty(0, np.int64), np.empty(0, np.float32))
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    candidates = np.flatnonzero(scores >= kth)  # all ties at the k-th score, then the lowest rows
    top = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
    return Neighbours(top.astype(np.int64), scores[top])


def duplicate_pairs(
    matrix: np.ndarray, threshold: float = DUPLICATE_THRESHOLD, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with cosine >= threshold, as (i, j, similarity) arrays.

    Tiles the upper triangle of the similarity matrix in blocks, so memory is block x block
    whatever the library size; time is quadratic (see docs/benchmarks.md for 10k and 100k).
    """
    n = len(matrix)
    found_i, found_j, found_s = [], [], []
    for rows in _chunks(n, block):
        left = _f32(matrix[rows])
        for cols in _chunks(n, block):
            if cols.stop <= rows.start:
                continue
            sims = left @ _f32(matrix[cols]).T
            if cols.start == rows.start:
                sims[np.tril_indices(len(sims), 0, sims.shape[1])] = -np.inf
            i, j = np.nonzero(sims >= threshold)
            found_i.append(i + rows.start)
            found_j.append(j + cols.start)
            found_s.append(sims[i, j])
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return (
        np.concatenate(found_i).astype(np.int64),
        np.concatenate(found_j).astype(np.int64),
        np.concatenate(found_s).astype(np.float32),
    )


def connected_components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of n nodes joined by edges (i, j): the smallest node in it.

    Vectorised union-find: hook every root to the smallest label across its edges, then
    halve paths until each node points at its root; a few rounds for near-duplicate graphs.
    """
    labels = np.arange(n, dtype=np.int64)
    while True:
        li, lj = labels[i], labels[j]
        low = np.minimum(li, lj)
        hooked = labels.copy()
        np.minimum.at(hooked, li, low)
        np.minimum.at(hooked, lj, low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, labels):
            return labels
        labels = hooked


@dataclass(frozen=True)
class DuplicateGroup:
    """Rows showing the same picture; `weakest` is the lowest similarity among its linked pairs."""

    members: tuple[int, ...]
    weakest: float


def group_duplicates(
    n: int, i: np.ndarray, j: np.ndarray, similarity: np.ndarray
) -> list[DuplicateGroup]:
    """Groups of rows linked by duplicate pairs, largest first."""
    if len(i) == 0:
        return []
    labels = connected_components(n, i, j)
    weakest = np.full(n, np.inf, np.float32)
    np.minimum.at(weakest, labels[i], similarity)
    in_group = np.flatnonzero(np.bincount(labels, minlength=n)[labels] > 1)
    order = in_group[np.argsort(labels[in_group], kind="stable")]
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [
        DuplicateGroup(tuple(int(r) for r in members), float(weakest[labels[members[0]]]))
        for members in np.split(order, bounds)
    ]
    return sorted(groups, key=lambda g: (-len(g.members), g.members))


def duplicates(matrix: np.ndarray, threshold: float = DUPLICATE_THRESHOLD) -> list[DuplicateGroup]:
    """Near-duplicate groups of the rows of `matrix` (exact, quadratic time, bounded memory)."""
    return group_duplicates(len(matrix), *duplicate_pairs(matrix, threshold))


@dataclass(frozen=True)
class KMeans:
    labels: np.ndarray  # int64 [n], cluster of each row
    centroids: np.ndarray  # float32 [k, d], unit rows
    cohesion: float  # mean cosine of rows to their centroid


def _lloyd_pass(
    matrix: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign rows to their nearest centroid and sum each cluster's rows, in one pass.

    One pass, not two, because converting the float16 rows costs more than the maths.
    Returns labels, each row's cosine to its centroid, and the per-cluster sums.
    """
    k = len(centroids)
    labels = np.empty(len(matrix), np.int64)
    best = np.empty(len(matrix), np.float32)
    sums = np.zeros_like(centroids)
    for rows in _chunks(len(matrix)):
        x = _f32(matrix[rows])
        sims = x @ centroids.T
        labels[rows] = np.argmax(sims, axis=1)
        best[rows] = sims[np.arange(len(sims)), labels[rows]]
        sums += (labels[rows, None] == np.arange(k)).astype(np.float32).T @ x
    return labels, best, sums


def _chord2(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distance 2 - 2 cos between unit rows and unit centre(s), float64 for sampling."""
    return np.maximum(2 - 2 * (points @ centres).astype(np.float64), 0)


def _kmeans_pp(matrix: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn's) on a sample of at most 10 000 rows.

    Of 2 + log k candidates drawn by squared chord distance, keep the one that lowers the
    potential most: plain k-means++ often seeds two centres in one tight group, which
    k-means never undoes. The sample keeps seeding from scanning every row k times.
    """
    sample = np.sort(rng.choice(len(matrix), size=min(len(matrix), 10_000), replace=False))
    points = _f32(matrix[sample])
    centroids = np.empty((k, matrix.shape[1]), np.float32)
    centroids[0] = points[rng.integers(len(points))]
    closest = _chord2(points, centroids[0])
    tries = 2 + int(np.log(k))
    for c in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct rows than k: any row will do
            centroids[c:] = centroids[0]
            break
        candidates = rng.choice(len(points), size=tries, p=closest / total)
        reach = np.minimum(closest[:, None], _chord2(points, points[candidates].T))
        best = int(np.argmin(reach.sum(axis=0)))
        centroids[c] = points[candidates[best]]
        closest = reach[:, best]
    return centroids


def spherical_kmeans(
    matrix: np.ndarray, k: int, seed: int = 0, max_iter: int = 100, restarts: int = 1
) -> KMeans:
    """k-means on the unit sphere (cosine), k-means++ seeded, deterministic for a seed.

    k-means stops in a local optimum, so `restarts` runs from different seedings keep the
    most cohesive. An emptied cluster is re-seeded with the row worst served by its
    centroid, so k clusters always come back when there are k distinct rows.
    """
    n = len(matrix)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of photos ({n}), not {k}")
    rng = np.random.default_rng(seed)
    runs = [_lloyd(matrix, _kmeans_pp(matrix, k, rng), max_iter) for _ in range(restarts)]
    return max(runs, key=lambda run: run.cohesion)


def _lloyd(matrix: np.ndarray, centroids: np.ndarray, max_iter: int) -> KMeans:
    k = len(centroids)
    labels, best, sums = _lloyd_pass(matrix, centroids)
    for _ in range(max_iter):
        empty = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        if len(empty):
            sums[empty] = _f32(matrix[np.argsort(best, kind="stable")[: len(empty)]])
        centroids = normalise_rows(sums)
        new_labels, best, sums = _lloyd_pass(matrix, centroids)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return KMeans(labels, centroids, float(best.mean()))


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a full distance matrix (rows in clusters of one score 0)."""
    k = int(labels.max()) + 1
    onehot = (labels[:, None] == np.arange(k)).astype(distances.dtype)
    counts = onehot.sum(axis=0)
    sums = distances @ onehot  # [n, k] total distance to each cluster
    rows = np.arange(len(labels))
    own = counts[labels]
    a = sums[rows, labels] / np.maximum(own - 1, 1)
    others = sums / np.maximum(counts, 1)
    others[rows, labels] = np.inf
    others[:, counts == 0] = np.inf
    b = others.min(axis=1)
    score = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(score.mean())


def choose_k(matrix: np.ndarray, k_max: int = 30, sample: int = 2000, seed: int = 0) -> int:
    """The number of clusters with the best cosine silhouette on a random sample of rows.

    Silhouette, not an elbow: on real embeddings (256 COCO photos, docs/benchmarks.md) the
    k-means objective falls smoothly with k and has no knee to find, while silhouette
    peaks where clusters are both tight and apart. The sample bounds its quadratic cost;
    k-means (best of 3 starts) on the sample is enough to rank candidates: every k to 10, then
    a geometric grid (silhouette is flat near its top at large k).
    """
    n = len(matrix)
    if n < 3:
        return 1
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    points = _f32(matrix[rows])
    distances = np.maximum(1 - points @ points.T, 0)
    top = min(k_max, len(points) - 1)
    grid = np.geomspace(10, max(top, 10), 6).round().astype(int).tolist()
    candidates = sorted({k for k in [*range(2, 11), *grid] if k <= top})
    scores = [
        silhouette(distances, spherical_kmeans(points, k, seed, restarts=3).labels)
        for k in candidates
    ]
    return candidates[int(np.argmax(scores))]


def characteristic_tags(
    labels: np.ndarray, tags: Sequence[Collection[str]], top: int = 3
) -> list[tuple[str, ...]]:
    """For each cluster, the tags most typical of it versus the library (tf-idf).

    tf is the share of the cluster's photos with the tag, idf log(photos / photos with the
    tag), so a tag every photo has (`animal` in a pet library) never names a cluster. Two
    clusters with the same `top` tags each take more of theirs until the names differ (or
    one runs out; `labels_for` numbers what is left), so no two groups read the same.
    """
    k = int(labels.max()) + 1 if len(labels) else 0
    vocabulary = sorted({t for photo in tags for t in photo})
    code = {t: c for c, t in enumerate(vocabulary)}
    photo = np.array([p for p, photo_tags in enumerate(tags) for _ in set(photo_tags)], np.int64)
    tag = np.array([code[t] for photo_tags in tags for t in set(photo_tags)], np.int64)
    counts = np.zeros((k, len(vocabulary)))
    np.add.at(counts, (labels[photo], tag), 1)
    tf = counts / np.maximum(np.bincount(labels, minlength=k), 1)[:, None]
    idf = np.log(len(tags) / np.maximum(np.bincount(tag, minlength=len(vocabulary)), 1))
    score = tf * idf
    ranked = [
        [vocabulary[c] for c in np.lexsort((np.arange(len(vocabulary)), -s)) if s[c] > 0]
        for s in score
    ]
    names = [tuple(r[:top]) for r in ranked]
    depth = top
    while tied := [
        c for c, n in enumerate(names) if names.count(n) > 1 and len(ranked[c]) > len(n)
    ]:
        depth += 1
        for c in tied:
            names[c] = tuple(ranked[c][:depth])
    return names


def labels_for(names: Sequence[tuple[str, ...]]) -> list[str]:
    """A group's name as shown: its tags, numbered (`#2`) where groups still share them."""
    shown = [", ".join(n) or "(no characteristic tags)" for n in names]
    seen: dict[str, int] = {}
    labels = []
    for label in shown:
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if shown.count(label) == 1 else f"{label} #{seen[label]}")
    return labels


@dataclass(frozen=True)
class Cluster:
    members: np.ndarray  # row indices, ascending
    tags: tuple[str, ...]  # most characteristic first
    name: str = ""  # the tags as shown; unique among the groups of one clustering


def cluster(
    matrix: np.ndarray,
    tags: Sequence[Collection[str]],
    k: int | None = None,
    seed: int = 0,
    top_tags: int = 3,
) -> list[Cluster]:
    """Group photos by embedding (k None: chosen by silhouette), name each group; largest first."""
    if len(matrix) != len(tags):
        raise ValueError(f"{len(matrix)} embeddings but tags for {len(tags)} photos")
    if len(matrix) == 0:
        return []
    k = choose_k(matrix, seed=seed) if k is None else k
    result = spherical_kmeans(matrix, k, seed)
    names = characteristic_tags(result.labels, tags, top_tags)
    members = [np.flatnonzero(result.labels == c) for c in range(k)]
    kept = sorted(
        (c for c in range(k) if len(members[c])), key=lambda c: (-len(members[c]), members[c][0])
    )
    labels = labels_for([names[c] for c in kept])
    return [Cluster(members[c], names[c], label) for c, label in zip(kept, labels, strict=True)]
