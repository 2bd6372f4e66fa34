"""TagProp maths on small arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from phototag.learn import neighbours, tagprop
from phototag.learn.tagprop import TagPropModel


def _loo_problem(seed: int, n: int = 30, k: int = 6, d: int = 2, t: int = 5):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, t)) < 0.3
    labels[0] = True  # every tag has a positive
    idx = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    dist = np.sort(rng.random((n, k, d)), axis=1)
    return dist, idx, labels


@pytest.mark.parametrize("kind", ["dist", "rank"])
@pytest.mark.parametrize("sigma", [False, True])
def test_gradient_matches_finite_differences(kind: str, sigma: bool) -> None:
    dist, idx, labels = _loo_problem(1)
    problem = tagprop._problem(kind, dist, idx, labels, sigma, eps=1e-2)
    n_params = problem.n_weights + (2 * labels.shape[1] if sigma else 0)
    v = np.random.default_rng(2).random(n_params) + 0.5
    _, grad = problem.loss_and_grad(v)
    h = 1e-6
    numeric = np.array(
        [
            (problem.loss_and_grad(v + h * e)[0] - problem.loss_and_grad(v - h * e)[0]) / (2 * h)
            for e in np.eye(n_params)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_sigmoid_fit_reaches_a_stationary_point() -> None:
    dist, idx, labels = _loo_problem(3, n=60, k=10)
    problem = tagprop._problem("dist", dist, idx, labels, sigma=True, eps=1e-5)
    weights = np.ones(2)
    x = problem.votes(weights)
    t = labels.shape[1]
    alpha, beta = tagprop._fit_sigmoids(x, labels, problem.cost, np.ones(t), np.zeros(t))
    _, grad = problem.loss_and_grad(np.r_[weights, alpha, beta])
    grad_alpha, grad_beta = grad[2 : 2 + t], grad[2 + t :]
    free = alpha > 0  # on the bound alpha = 0 only the sign of the gradient is fixed
    scale = np.abs(grad).max()
    assert np.abs(grad_beta).max() < 1e-6 * scale
    assert np.abs(grad_alpha[free]).max() < 1e-6 * scale
    assert (grad_alpha[~free] >= -1e-9).all()  # minimising: would push alpha below 0


def _clustered(n_per: int = 20, clusters: int = 4, dim: int = 8, noise_dims: int = 8):
    """Images in tight clusters; each cluster's images share that cluster's tag."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, dim)) * 3
    members = np.repeat(np.arange(clusters), n_per)
    good = centres[members] + rng.normal(size=(len(members), dim)) * 0.5
    noise = rng.normal(size=(len(members), noise_dims))
    labels = np.eye(clusters, dtype=bool)[members]
    return good, noise, labels


def test_informative_distance_gets_the_larger_weight() -> None:
    good, noise, labels = _clustered()
    nb = neighbours.search(
        [good, noise], [good, noise], ["euclidean", "euclidean"], 30,
        exclude_self=True, weights=[1.0, 1.0],
    )  # fmt: skip
    model = tagprop.fit(nb.dist, nb.idx, labels, "dist", sigma=False)
    theta_good, theta_noise = model.weights * nb.dist.reshape(-1, 2).mean(0)  # unit-free
    assert theta_good > 5 * max(theta_noise, 1e-3)


def test_rank_weights_favour_the_nearest() -> None:
    good, _, labels = _clustered(n_per=10)
    nb = neighbours.search([good], [good], ["euclidean"], 30, exclude_self=True)
    model = tagprop.fit(nb.dist, nb.idx, labels, "rank", sigma=False)
    gamma = model.weights
    assert gamma.sum() == pytest.approx(1.0)
    assert (gamma >= 0).all()
    # The 9 same-cluster neighbours come first; the rest never share the tag.
    assert gamma[:9].min() > gamma[12:].max()


def test_tag_of_the_nearest_neighbours_scores_highest() -> None:
    # Training photo 0 and 1 carry tag 0; photos 2..5 carry tag 1 and are farther away.
    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]], bool)
    idx = np.array([[0, 1, 2, 3, 4, 5]])
    dist = np.array([[0.1, 0.2, 0.8, 0.85, 0.9, 0.95]])
    model = TagPropModel("dist", np.array([10.0]), 6, ("near", "far"), ("d",))
    scores = tagprop.predict(model, dist, idx, labels)
    assert scores[0, 0] > scores[0, 1]
    # A uniform vote (theta = 0) would prefer the tag with more voters.
    flat = TagPropModel("dist", np.array([0.0]), 6, ("near", "far"), ("d",))
    assert tagprop.predict(flat, dist, idx, labels)[0, 1] > 0.6


def test_votes_match_the_definition() -> None:
    dist, idx, labels = _loo_problem(5)
    pi = tagprop.neighbour_weights("dist", np.array([1.0, 2.0]), dist)
    eps = 1e-3
    expected = np.einsum("nk,nkt->nt", pi, np.where(labels[idx], 1 - eps, eps))
    np.testing.assert_allclose(tagprop.vote(pi, idx, labels, eps), expected)


def test_sigma_ml_slopes_follow_how_informative_votes_are() -> None:
    # Cluster tags are predicted by the neighbours' votes; a coin-flip tag is not, and a
    # tag nobody carries gets the prior ε.
    good, _, labels = _clustered(n_per=12, clusters=3)
    rng = np.random.default_rng(1)
    coin = rng.random((len(labels), 1)) < 0.5
    labels = np.hstack([labels, coin, np.zeros((len(labels), 1), bool)])
    nb = neighbours.search([good], [good], ["euclidean"], 20, exclude_self=True)
    model = tagprop.fit(nb.dist, nb.idx, labels, "dist", sigma=True)
    assert model.alpha[:3].min() > 5 * model.alpha[3]
    scores = tagprop.predict(model, nb.dist, nb.idx, labels)
    np.testing.assert_allclose(scores[:, 4], tagprop.EPS, rtol=1e-6)
    cluster_of = labels[:, :3].argmax(1)
    assert (scores[:, :3].argmax(1) == cluster_of).all()


def test_model_round_trips_through_json(tmp_path) -> None:
    dist, idx, labels = _loo_problem(4)
    model = tagprop.fit(dist, idx, labels, "dist", sigma=True, tags=tuple("abcde"))
    path = tmp_path / "tagprop.json"
    tagprop.save(model, path)
    again = tagprop.load(path)
    assert again.digest() == model.digest()
    assert len(model.digest()) == 12
    np.testing.assert_array_equal(again.alpha, model.alpha)
    np.testing.assert_array_equal(
        tagprop.predict(again, dist, idx, labels), tagprop.predict(model, dist, idx, labels)
    )
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_digest_changes_with_parameters() -> None:
    a = TagPropModel("dist", np.array([1.0, 2.0]), 5, ("x",), ("c", "d"))
    b = TagPropModel("dist", np.array([1.0, 2.5]), 5, ("x",), ("c", "d"))
    assert a.digest() != b.digest()


def test_bad_model_file_is_one_clear_error(tmp_path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"format": "phototag-tagprop/1", "kind": "dist"}')
    with pytest.raises(ValueError, match=r"m\.json: not a TagProp model"):
        tagprop.load(path)
    with pytest.raises(ValueError, match="cannot read"):
        tagprop.load(tmp_path / "missing.json")


def test_fit_refuses_self_as_neighbour() -> None:
    dist, idx, labels = _loo_problem(6)
    idx[3, 0] = 3
    with pytest.raises(ValueError, match="leave-one-out"):
        tagprop.fit(dist, idx, labels)


def test_predict_checks_tag_count() -> None:
    model = TagPropModel("rank", np.full(3, 1 / 3), 3, ("a", "b"))
    with pytest.raises(ValueError, match="2 tags"):
        tagprop.predict(model, np.zeros((1, 3)), np.zeros((1, 3), int), np.zeros((4, 5), bool))


def test_pooled_floor_keeps_a_slope_for_tags_without_leave_one_out_evidence() -> None:
    # "rare" is on two photos of different clusters: neither is the other's neighbour, so
    # leave-one-out sees its votes only on photos without it and its ML slope is 0 (the
    # same score everywhere). With the pooled floor its votes count like the average tag's.
    good, _, labels = _clustered(n_per=12, clusters=3)
    rare = np.zeros((len(labels), 1), bool)
    rare[[0, 12]] = True
    labels = np.hstack([labels, rare])
    nb = neighbours.search([good], [good], ["euclidean"], 10, exclude_self=True)
    plain = tagprop.fit(nb.dist, nb.idx, labels, "dist", sigma=True)
    floored = tagprop.fit(nb.dist, nb.idx, labels, "dist", sigma=True, pooled_floor=True)
    assert plain.alpha[3] == 0.0
    assert 0.0 < floored.alpha[3] <= floored.alpha[:3].min()
    scores = tagprop.predict(floored, nb.dist, nb.idx, labels)
    assert scores[:, 3].std() > 0  # a ranking, not one score for all
    assert scores[1, 3] > scores[30, 3]  # near photo 0 more than in the cluster without it
    assert (scores[:, :3].argmax(1) == labels[:, :3].argmax(1)).all()
