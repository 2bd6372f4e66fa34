"""Non-learned neighbour votes, the baselines TagProp must beat.

- 2PKNN (Verma & Jawahar, "Image annotation using metric learning in semantic
  neighbourhoods", ECCV 2012): pass 1 takes, for every tag, the K1 nearest training photos
  *that carry it*, so a rare tag always has voters; pass 2 is a vote over the union of
  those neighbourhoods with weights exp(-w·d). Their metric learning is not done here: the
  distance is fixed and w is one scalar tuned on validation data.
- k-NN vote: the K nearest photos vote with Dudani's distance weights
  (d_K - d_k)/(d_K - d_1), which need no bandwidth and so suit any distance.
"""

from __future__ import annotations

import numpy as np

from phototag.learn.neighbours import MAX_ELEMENTS
from phototag.learn.tagprop import vote


def twopknn_scores(dist: np.ndarray, labels: np.ndarray, k1: int, w: float) -> np.ndarray:
    """Tag scores [M, T] from all query-to-training distances dist [M, N].

    Scores are the union's weighted votes divided by the union's total weight, so they lie
    in [0, 1] and compare across photos (the per-photo ranking is unchanged by this).
    """
    dist = np.asarray(dist, np.float64)
    labels = np.asarray(labels, bool)
    m, n = dist.shape
    if labels.shape[0] != n:
        raise ValueError(f"{n} training distances but {labels.shape[0]} training label rows")
    if k1 < 1:
        raise ValueError("2PKNN needs K1 >= 1")
    tag_of, member = np.nonzero(labels.T)  # members grouped by tag
    group_start = np.cumsum(np.bincount(tag_of, minlength=labels.shape[1]))
    group_start = np.r_[0, group_start[:-1]]
    # Entries whose position in their tag's group, once sorted by distance, is < K1.
    first_k1 = (np.arange(len(member)) - group_start[tag_of]) < k1
    y = labels.astype(np.float64)
    scores = np.zeros((m, labels.shape[1]))
    step = max(1, MAX_ELEMENTS // max(1, n, len(member)))
    for s in range(0, m, step):
        d = dist[s : s + step]
        c = len(d)
        order = np.argsort(d, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n)[None, :].repeat(c, 0), axis=1)
        # Keys tag*N + rank keep each tag's group in its own block; sorting them orders
        # every group by distance at once.
        keys = np.sort(tag_of[None, :] * n + rank[:, member], axis=1)[:, first_k1]
        chosen = np.take_along_axis(order, keys % n, axis=1)
        union = np.zeros((c, n), bool)
        np.put_along_axis(union, chosen, True, axis=1)
        weight = np.exp(-w * (d - d.min(1, keepdims=True))) * union
        scores[s : s + step] = (weight @ y) / weight.sum(1, keepdims=True)
    return scores


def knn_vote(dist: np.ndarray, idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Tag scores [M, T]: Dudani-weighted vote of the neighbours idx [M, K] at dist [M, K]."""
    dist = np.asarray(dist, np.float64)
    near, far = dist[:, :1], dist[:, -1:]
    span = far - near
    weight = np.divide(far - dist, span, out=np.ones_like(dist), where=span > 0)
    return vote(weight / weight.sum(1, keepdims=True), idx, labels)
