"""Exact neighbour search against brute force on small arrays."""

from __future__ import annotations

import numpy as np
import pytest

from phototag.learn import neighbours


def _brute(q: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    out = np.empty((len(q), len(b)))
    for i, x in enumerate(q):
        for j, y in enumerate(b):
            if metric == "cosine":
                out[i, j] = 1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
            elif metric == "euclidean":
                out[i, j] = np.linalg.norm(x - y)
            elif metric == "jaccard":
                sx, sy = set(np.flatnonzero(x)), set(np.flatnonzero(y))
                out[i, j] = 1 - len(sx & sy) / len(sx | sy)
            elif metric == "l1":
                out[i, j] = np.abs(x - y).sum()
            else:
                out[i, j] = 0.5 * sum(
                    (a - c) ** 2 / (a + c) for a, c in zip(x, y, strict=True) if a + c > 0
                )
    return out


@pytest.mark.parametrize("metric", neighbours.METRICS)
def test_every_metric_matches_brute_force(metric: str) -> None:
    rng = np.random.default_rng(0)
    if metric == "jaccard":
        q, b = rng.random((4, 12)) < 0.4, rng.random((7, 12)) < 0.4
        q[:, 0] = b[:, 0] = True  # no empty sets
    else:
        q, b = rng.random((4, 6)), rng.random((7, 6))
    q, b = q.astype(float), b.astype(float)
    expected = _brute(q, b, metric)
    np.testing.assert_allclose(neighbours.distance_matrix(q, b, metric), expected, atol=1e-12)
    idx = rng.integers(0, 7, size=(4, 3))
    np.testing.assert_allclose(
        neighbours.pair_distances(q, b, idx, metric),
        np.take_along_axis(expected, idx, 1),
        atol=1e-12,
    )


def test_search_excludes_self_and_sorts_nearest_first() -> None:
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    nb = neighbours.search([x], [x], ["euclidean"], 2, exclude_self=True)
    np.testing.assert_array_equal(nb.idx, [[1, 2], [0, 2], [1, 0], [2, 1]])
    np.testing.assert_allclose(nb.dist[..., 0], [[1, 3], [1, 2], [2, 3], [4, 6]])


def test_search_picks_by_weighted_channels_and_reports_each(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((40, 5)), rng.random((40, 3))
    monkeypatch.setattr(neighbours, "MAX_ELEMENTS", 50)  # many small chunks
    nb = neighbours.search([a, b], [a, b], ["cosine", "l1"], 5, weights=[2.0, 0.5])
    total = 2.0 * _brute(a, a, "cosine") + 0.5 * _brute(b, b, "l1")
    expected = np.argsort(total, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(nb.idx, expected)
    np.testing.assert_allclose(nb.dist[..., 1], np.take_along_axis(_brute(b, b, "l1"), expected, 1))


def test_other_channels_are_computed_on_the_chosen_pairs() -> None:
    rng = np.random.default_rng(2)
    a, h = rng.random((20, 4)), rng.random((20, 8))
    nb = neighbours.search([a, h], [a, h], ["cosine", "chi2"], 4, exclude_self=True)
    assert nb.dist.shape == (20, 4, 2)
    np.testing.assert_allclose(nb.dist[..., 1], neighbours.pair_distances(h, h, nb.idx, "chi2"))


def test_k_larger_than_base_is_clipped() -> None:
    x = np.eye(3)
    assert neighbours.search([x], [x], ["cosine"], 10, exclude_self=True).k == 2


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown distance 'hamming'"):
        neighbours.distance_matrix(np.eye(2), np.eye(2), "hamming")
