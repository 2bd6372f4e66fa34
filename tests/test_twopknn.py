"""2PKNN and the k-NN vote on constructed neighbourhoods."""

from __future__ import annotations

import numpy as np
import pytest

from phototag.learn import neighbours
from phototag.learn.twopknn import knn_vote, twopknn_scores

# Tags: 0 = sky (common), 1 = grass, 2 = tiger (one training photo, a bit farther away).
LABELS = np.array(
    [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]], bool
)
DIST = np.array([[0.10, 0.12, 0.15, 0.20, 0.50, 0.45, 0.90]])


def test_2pknn_recalls_a_rare_tag_that_knn_misses() -> None:
    order = np.argsort(DIST, axis=1)[:, :3]
    plain = knn_vote(np.take_along_axis(DIST, order, 1), order, LABELS)
    assert plain[0, 2] == 0.0  # the tiger photo is not among the 3 nearest
    two_pass = twopknn_scores(DIST, LABELS, k1=1, w=1.0)
    assert two_pass[0, 2] > 0.0
    assert set(np.argsort(-two_pass[0])[:2]) == {0, 2}  # tiger among the two best tags


def test_2pknn_union_and_weights_by_hand() -> None:
    # K1 = 1: union = {0 (nearest sky), 4 (nearest grass), 5 (only tiger)}.
    w = 2.0
    scores = twopknn_scores(DIST, LABELS, k1=1, w=w)
    weight = np.exp(-w * (DIST[0, [0, 4, 5]] - 0.10))
    expected = weight / weight.sum()
    np.testing.assert_allclose(scores[0], expected)
    # K1 = 2 adds photo 1 (second sky) and photo 6 (second grass).
    scores = twopknn_scores(DIST, LABELS, k1=2, w=w)
    weight = np.exp(-w * (DIST[0, [0, 1, 4, 6, 5]] - 0.10))
    expected = np.array([weight[:2].sum(), weight[2:4].sum(), weight[4]]) / weight.sum()
    np.testing.assert_allclose(scores[0], expected)


def test_2pknn_is_the_same_in_chunks(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    dist = rng.random((9, 7))
    whole = twopknn_scores(dist, LABELS, k1=2, w=3.0)
    monkeypatch.setattr(neighbours, "MAX_ELEMENTS", 8)
    monkeypatch.setattr("phototag.learn.twopknn.MAX_ELEMENTS", 8)
    np.testing.assert_allclose(twopknn_scores(dist, LABELS, k1=2, w=3.0), whole)


def test_2pknn_refuses_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="7 training distances"):
        twopknn_scores(DIST, LABELS[:3], k1=1, w=1.0)


def test_knn_vote_uses_dudani_weights() -> None:
    dist = np.array([[1.0, 2.0, 3.0]])
    idx = np.array([[0, 4, 5]])  # sky, grass, tiger
    # Weights (3-d)/(3-1) = 1, 0.5, 0, normalised to 2/3, 1/3, 0.
    np.testing.assert_allclose(knn_vote(dist, idx, LABELS), [[2 / 3, 1 / 3, 0.0]])
    # Equal distances: a plain majority vote.
    np.testing.assert_allclose(knn_vote(np.ones((1, 3)), idx, LABELS), [[1 / 3, 1 / 3, 1 / 3]])
