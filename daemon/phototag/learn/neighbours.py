"""Exact nearest-neighbour search over one or several distances.

TagProp and the baselines need, for each photo, its K nearest training photos and the
distances to them, one column per distance ("channel": CNN cosine, colour chi², ...).
Search is exact: photo libraries are small enough (10^4-10^5) that a chunked matrix
product beats an approximate index in simplicity and reproducibility. Chunking bounds
memory to about `MAX_ELEMENTS` floats whatever the library size.

Metrics:
- "cosine": 1 - cos, rows L2-normalised here (a zero row is at distance 1 from all).
- "euclidean": L2 distance.
- "jaccard": 1 - |a&b|/|a|b| on the sets of non-zero entries (binary visual words).
- "l1": sum of absolute differences.
- "chi2": 0.5·Σ (a-b)²/(a+b) for non-negative histograms (0/0 counts as 0).
The first three are matrix products; l1 and chi2 are computed element-wise, so they are
best used only on the candidate pairs (see `search`'s `weights`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

MAX_ELEMENTS = 1 << 22  # floats held by one chunk of distances (32 MiB of float64)
METRICS = ("cosine", "euclidean", "jaccard", "l1", "chi2")


@dataclass(frozen=True)
class Neighbours:
    """K nearest base rows per query, nearest first."""

    idx: np.ndarray  # int64 [M, K] rows of the base
    dist: np.ndarray  # float64 [M, K, D], one channel per distance

    @property
    def k(self) -> int:
        return self.idx.shape[1]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, in their own dtype; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _gram_cosine(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - unit_rows(q) @ unit_rows(b).T, 0.0, 2.0)


def _gram_euclidean(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (q * q).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (q @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _gram_jaccard(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    qb, bb = (q != 0).astype(np.float64), (b != 0).astype(np.float64)
    inter = qb @ bb.T
    union = qb.sum(1)[:, None] + bb.sum(1)[None, :] - inter
    return 1.0 - np.divide(inter, union, out=np.ones_like(inter), where=union > 0)


# Pair forms: q [c, 1, F] against b [c or 1, k, F] -> [c, k].
def _pair_cosine(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - (unit_rows(q) * unit_rows(b)).sum(-1), 0.0, 2.0)


def _pair_euclidean(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((q - b) ** 2).sum(-1))


def _pair_jaccard(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    qb, bb = q != 0, b != 0
    inter = (qb & bb).sum(-1).astype(np.float64)
    union = (qb | bb).sum(-1).astype(np.float64)
    return 1.0 - np.divide(inter, union, out=np.ones_like(inter), where=union > 0)


def _pair_l1(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(q - b).sum(-1)


def _pair_chi2(q: np.ndarray, b: np.ndarray) -> np.ndarray:
    total = q + b
    diff2 = (q - b) ** 2
    return 0.5 * np.divide(diff2, total, out=np.zeros_like(diff2), where=total > 0).sum(-1)


_PAIR: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": _pair_cosine,
    "euclidean": _pair_euclidean,
    "jaccard": _pair_jaccard,
    "l1": _pair_l1,
    "chi2": _pair_chi2,
}
_GRAM: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": _gram_cosine,
    "euclidean": _gram_euclidean,
    "jaccard": _gram_jaccard,
}


def _check_metric(metric: str) -> None:
    if metric not in _PAIR:
        raise ValueError(f"unknown distance {metric!r} (known: {', '.join(METRICS)})")


def distance_matrix(queries: np.ndarray, base: np.ndarray, metric: str) -> np.ndarray:
    """All distances [M, N]; the caller bounds M (see `distance_chunks`)."""
    _check_metric(metric)
    q, b = np.asarray(queries, np.float64), np.asarray(base, np.float64)
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, base has {b.shape[1]}")
    if metric in _GRAM:
        return _GRAM[metric](q, b)
    step = max(1, MAX_ELEMENTS // max(1, b.size))
    return (
        np.concatenate(
            [_PAIR[metric](q[s : s + step, None, :], b[None]) for s in range(0, len(q), step)]
        )
        if len(q)
        else np.zeros((0, len(b)))
    )


def pair_distances(
    queries: np.ndarray, base: np.ndarray, idx: np.ndarray, metric: str
) -> np.ndarray:
    """Distances [M, K] from each query to the base rows idx[m, :] only."""
    _check_metric(metric)
    q, b = np.asarray(queries, np.float64), np.asarray(base, np.float64)
    out = np.empty(idx.shape, np.float64)
    step = max(1, MAX_ELEMENTS // max(1, idx.shape[1] * b.shape[1]))
    for s in range(0, len(q), step):
        out[s : s + step] = _PAIR[metric](q[s : s + step, None, :], b[idx[s : s + step]])
    return out


def distance_scales(
    base: Sequence[np.ndarray], metrics: Sequence[str], sample: int = 500
) -> np.ndarray:
    """Mean distance of each channel over a fixed sample of base pairs.

    Dividing by it puts channels of different units on one footing, so an equally
    weighted sum can pick candidate neighbours before TagProp learns the real weights.
    """
    n = len(base[0])
    rows = np.random.default_rng(0).choice(n, size=min(n, sample), replace=False)
    scales = np.array(
        [distance_matrix(x[rows], x[rows], m).mean() for x, m in zip(base, metrics, strict=True)]
    )
    return np.where(scales > 0, scales, 1.0)


def distance_chunks(
    queries: Sequence[np.ndarray],
    base: Sequence[np.ndarray],
    metrics: Sequence[str],
    weights: Sequence[float],
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (query rows, weighted sum of distances [rows, N]) chunk by chunk."""
    if not (len(queries) == len(base) == len(metrics) == len(weights)):
        raise ValueError("queries, base, metrics and weights must have one entry per distance")
    n_queries, n_base = len(queries[0]), len(base[0])
    step = max(1, MAX_ELEMENTS // max(1, n_base))
    for s in range(0, n_queries, step):
        rows = slice(s, min(s + step, n_queries))
        total = np.zeros((rows.stop - rows.start, n_base))
        for q, b, metric, w in zip(queries, base, metrics, weights, strict=True):
            if w:
                total += w * distance_matrix(q[rows], b, metric)
        yield rows, total


def search(
    queries: Sequence[np.ndarray],
    base: Sequence[np.ndarray],
    metrics: Sequence[str],
    k: int,
    *,
    exclude_self: bool = False,
    weights: Sequence[float] | None = None,
) -> Neighbours:
    """The k nearest base rows of each query, with every channel's distance to them.

    Neighbours are chosen by sum(weights[d] * distance_d); the default weights pick by the
    first channel alone (the CNN embedding), and the other channels are only computed on
    the chosen pairs. exclude_self: queries are the base itself and row i may not be its
    own neighbour (leave-one-out training).
    """
    weights = [1.0] + [0.0] * (len(metrics) - 1) if weights is None else list(weights)
    if not (len(queries) == len(base) == len(metrics) == len(weights)):
        raise ValueError("queries, base, metrics and weights must have one entry per distance")
    if not any(weights):
        raise ValueError("at least one distance must pick the neighbours")
    n_queries, n_base = len(queries[0]), len(base[0])
    k = min(k, n_base - int(exclude_self))
    if k < 1:
        raise ValueError("need at least one candidate neighbour")
    idx = np.empty((n_queries, k), np.int64)
    dist = np.empty((n_queries, k, len(metrics)))
    picking = [c for c, w in enumerate(weights) if w]
    step = max(1, MAX_ELEMENTS // max(1, n_base * len(picking)))
    for start in range(0, n_queries, step):
        rows = slice(start, min(start + step, n_queries))
        full = {c: distance_matrix(queries[c][rows], base[c], metrics[c]) for c in picking}
        total = sum(weights[c] * full[c] for c in picking)
        if exclude_self:
            local = np.arange(rows.stop - rows.start)
            total[local, rows.start + local] = np.inf
        part = np.argpartition(total, k - 1, axis=1)[:, :k] if k < n_base else np.argsort(total, 1)
        order = np.lexsort((part, np.take_along_axis(total, part, 1)), axis=1)
        idx[rows] = np.take_along_axis(part, order, 1)  # nearest first, ties by index
        for c in picking:
            dist[rows, :, c] = np.take_along_axis(full[c], idx[rows], 1)
    for c in set(range(len(metrics))) - set(picking):
        dist[:, :, c] = pair_distances(queries[c], base[c], idx, metrics[c])
    return Neighbours(idx, dist)
