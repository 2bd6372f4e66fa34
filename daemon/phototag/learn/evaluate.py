"""The image-annotation protocol, and every tagger run on one benchmark side by side.

Protocol (Duygulu et al. 2002 onwards; TagProp and 2PKNN report it): each test image gets
its n = 5 highest-scoring tags; per tag, precision and recall over the test set; P and R
are their means over the tags present in the test set, F1 = 2PR/(P+R), N+ = number of tags
recalled at least once; mAP is the mean over those tags of the average precision of the
test images ranked by that tag's score.

Hyper-parameters (K, K1, w) are chosen by F1 on a validation split of the *training* set;
the test set is used once, for the final figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from phototag.learn import neighbours, tagprop
from phototag.learn.arff import Split, load_dataset
from phototag.learn.twopknn import knn_vote, twopknn_scores


@dataclass(frozen=True)
class Metrics:
    precision: float
    recall: float
    f1: float
    n_plus: int
    mean_ap: float


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Bool [M, T]: each row's n best tags (ties to the lower tag index, reproducibly)."""
    n = min(n, scores.shape[1])
    best = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    chosen = np.zeros(scores.shape, bool)
    np.put_along_axis(chosen, best, True, axis=1)
    return chosen


def average_precision(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """AP [T] of each tag's ranking of the images (NaN for a tag no image has)."""
    order = np.argsort(-scores, axis=0, kind="stable")
    hits = np.take_along_axis(truth, order, axis=0).astype(np.float64)
    precision_at = np.cumsum(hits, 0) / np.arange(1, len(hits) + 1)[:, None]
    n_pos = hits.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (precision_at * hits).sum(0) / n_pos


def annotation_metrics(scores: np.ndarray, truth: np.ndarray, n_labels: int = 5) -> Metrics:
    """The protocol's P, R, F1, N+ at n_labels per image, and mAP, over tags in `truth`."""
    truth = np.asarray(truth, bool)
    if scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} differ")
    present = truth.any(0)
    if not present.any():
        raise ValueError("no tag occurs in the ground truth")
    chosen = top_n(scores, n_labels)
    correct = (chosen & truth).sum(0)
    predicted, actual = chosen.sum(0), truth.sum(0)
    precision = np.divide(correct, predicted, out=np.zeros(len(correct)), where=predicted > 0)
    recall = np.divide(correct, actual, out=np.zeros(len(correct)), where=actual > 0)
    p, r = float(precision[present].mean()), float(recall[present].mean())
    return Metrics(
        precision=p,
        recall=r,
        f1=2 * p * r / (p + r) if p + r > 0 else 0.0,
        n_plus=int((recall[present] > 0).sum()),
        mean_ap=float(np.nanmean(average_precision(scores, truth)[present])),
    )


@dataclass(frozen=True)
class Channels:
    """Per-image features, one array per distance channel, for one set of images.

    `select` weighs each channel in the distance that picks neighbours: 1/(D·mean
    distance over the training images), so the combined distance has mean about 1 and
    every channel counts equally before anything is learned.
    """

    arrays: tuple[np.ndarray, ...]
    metrics: tuple[str, ...]
    names: tuple[str, ...]
    select: tuple[float, ...]

    def search(self, base: Channels, k: int, exclude_self: bool = False) -> neighbours.Neighbours:
        return neighbours.search(
            self.arrays,
            base.arrays,
            self.metrics,
            k,
            exclude_self=exclude_self,
            weights=self.select,
        )

    def combined(self, nb: neighbours.Neighbours) -> np.ndarray:
        """The selection distance [M, K] of found neighbours."""
        return nb.dist @ np.asarray(self.select)

    def distance_matrix(self, base: Channels) -> np.ndarray:
        """The selection distance [M, N] to every base image."""
        chunks = neighbours.distance_chunks(self.arrays, base.arrays, self.metrics, self.select)
        return np.concatenate([d for _, d in chunks])


RIDGE_LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def tag_regression(
    train: np.ndarray,
    labels: np.ndarray,
    query: np.ndarray,
    lambdas: Sequence[float] = RIDGE_LAMBDAS,
    folds: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Each image's tags [N or M, T] as a ridge regression on its features predicts them.

    A global linear view of which features go with which tags, to set beside the local
    neighbour distances (as the CNN's class scores do in `phototag train`). Training rows
    get cross-fitted predictions (each from the folds it is not in), so a training image's
    own tags never shape its own vector: leave-one-out neighbours see what a new image
    would. The ridge strength is the one with the least cross-fitted squared error, from
    the training rows alone; queries use the ridge refitted on all of them.
    """
    targets = labels.astype(np.float64)
    fold = np.random.default_rng(0).permutation(len(train)) % folds
    eye = np.eye(train.shape[1])

    def normal_equations(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Targets centred on the mean of `rows` alone (no intercept needed, nothing leaks).
        x, mean = train[rows], targets[rows].mean(0)
        return x.T @ x, x.T @ (targets[rows] - mean), mean

    fitted = np.empty((len(lambdas), *targets.shape))
    errors = np.zeros(len(lambdas))
    for f in range(folds):
        held = fold == f
        gram, cross, mean = normal_equations(~held)
        for j, lam in enumerate(lambdas):
            fitted[j, held] = train[held] @ np.linalg.solve(gram + lam * eye, cross)
            errors[j] += ((fitted[j, held] - (targets[held] - mean)) ** 2).sum()
    best = int(np.argmin(errors))
    gram, cross, _ = normal_equations(np.ones(len(train), bool))
    return fitted[best], query @ np.linalg.solve(gram + lambdas[best] * eye, cross)


def make_channels(
    train: np.ndarray, labels: np.ndarray, query: np.ndarray
) -> tuple[Channels, Channels]:
    """Three distances for benchmark features, all statistics taken from `train`.

    Binary visual words (corel5k's blobs): Jaccard on the sets of words, and cosine on
    tf-idf weights, which discounts words most images share (sky- or grass-like blobs) as
    text retrieval does. Numeric descriptors (scene's colour moments): features z-scored,
    then Euclidean (absolute colour layout) and cosine (the pattern, ignoring its overall
    deviation from the mean image). Third, for both: cosine between the tag vectors a
    ridge regression predicts from the second view (`tag_regression`, fitted on the
    training labels only). All are matrix products, so exact search over every pair
    stays fast.
    """
    if np.isin(train, (0.0, 1.0)).all():
        idf = np.log((1 + len(train)) / (1 + (train > 0).sum(0))) + 1.0
        views = [(train, query), (train * idf, query * idf)]
        metrics, names = ("jaccard", "cosine"), ("jaccard", "tfidf-cosine")
        ridge_in = [neighbours.unit_rows(v) for v in views[1]]
    else:
        mean, std = train.mean(0), train.std(0)
        std = np.where(std > 0, std, 1.0)
        z_train, z_query = (train - mean) / std, (query - mean) / std
        views = [(z_train, z_query), (z_train, z_query)]
        metrics, names = ("euclidean", "cosine"), ("z-euclidean", "z-cosine")
        ridge_in = [z_train, z_query]
    views.append(tag_regression(ridge_in[0], np.asarray(labels, bool), ridge_in[1]))
    metrics, names = (*metrics, "cosine"), (*names, "tag-regression-cosine")
    base = tuple(v[0] for v in views)
    scales = neighbours.distance_scales(base, metrics)
    select = tuple(float(w) for w in 1.0 / (len(metrics) * scales))
    return (
        Channels(base, metrics, names, select),
        Channels(tuple(v[1] for v in views), metrics, names, select),
    )


class Method(Protocol):
    """A tagger with a hyper-parameter grid; fit returns whatever predict needs."""

    name: str

    def grid(self) -> list[dict[str, Any]]: ...

    def fit(self, train: Channels, labels: np.ndarray, params: dict[str, Any]) -> Any: ...

    def predict(self, fitted: Any, query: Channels) -> np.ndarray: ...


@dataclass
class TagPropMethod:
    kind: tagprop.Kind
    sigma: bool
    ks: Sequence[int] = (50, 100, 200)
    pooled_floor: bool = False  # sigma-ML slopes at least the pooled one (see tagprop.fit)

    @property
    def name(self) -> str:
        label = "distance" if self.kind == "dist" else "rank"
        floor = ", pooled α floor" if self.pooled_floor else ""  # noqa: RUF001
        return f"TagProp {label}" + (" σML" if self.sigma else "") + floor  # noqa: RUF001

    def grid(self) -> list[dict[str, Any]]:
        return [{"K": k} for k in self.ks]

    def fit(self, train: Channels, labels: np.ndarray, params: dict[str, Any]) -> Any:
        nb = train.search(train, params["K"], exclude_self=True)
        model = tagprop.fit(
            nb.dist,
            nb.idx,
            labels,
            self.kind,
            self.sigma,
            distances=train.names,
            pooled_floor=self.pooled_floor,
        )
        return model, train, labels

    def predict(self, fitted: Any, query: Channels) -> np.ndarray:
        model, train, labels = fitted
        nb = query.search(train, model.k)
        return tagprop.predict(model, nb.dist, nb.idx, labels)


@dataclass
class KnnVoteMethod:
    name: str = "k-NN vote"
    ks: Sequence[int] = (5, 10, 20, 40, 80)

    def grid(self) -> list[dict[str, Any]]:
        return [{"K": k} for k in self.ks]

    def fit(self, train: Channels, labels: np.ndarray, params: dict[str, Any]) -> Any:
        return train, labels, params["K"]

    def predict(self, fitted: Any, query: Channels) -> np.ndarray:
        train, labels, k = fitted
        nb = query.search(train, k)
        return knn_vote(query.combined(nb), nb.idx, labels)


@dataclass
class TwoPKnnMethod:
    name: str = "2PKNN"
    k1s: Sequence[int] = (1, 2, 3, 5)
    ws: Sequence[float] = (0.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0)

    def grid(self) -> list[dict[str, Any]]:
        return [{"K1": k1, "w": w} for k1, w in product(self.k1s, self.ws)]

    def fit(self, train: Channels, labels: np.ndarray, params: dict[str, Any]) -> Any:
        return train, labels, params["K1"], params["w"]

    def predict(self, fitted: Any, query: Channels) -> np.ndarray:
        train, labels, k1, w = fitted
        return twopknn_scores(query.distance_matrix(train), labels, k1, w)


@dataclass(frozen=True)
class Result:
    method: str
    params: str  # the hyper-parameters chosen on validation
    metrics: Metrics
    train_s: float
    predict_s: float


def _timed_run(
    method: Method, train: Channels, labels: np.ndarray, query: Channels, params: dict[str, Any]
) -> tuple[np.ndarray, float, float]:
    t0 = time.perf_counter()
    fitted = method.fit(train, labels, params)
    t1 = time.perf_counter()
    scores = method.predict(fitted, query)
    return scores, t1 - t0, time.perf_counter() - t1


def validation_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of the training rows into (fit, validation)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items())


def _silent(message: str) -> None:
    pass


def tune(
    method: Method,
    train: Split,
    n_labels: int,
    fraction: float,
    seed: int,
    progress: Callable[[str], None] = _silent,
) -> dict[str, Any]:
    """The grid point with the best validation F1 (then N+), on the training set only."""
    fit_rows, val_rows = validation_rows(len(train.labels), fraction, seed)
    fit_part, val_part = train.take(fit_rows), train.take(val_rows)
    fit_ch, val_ch = make_channels(fit_part.features, fit_part.labels, val_part.features)
    best: tuple[float, int] | None = None
    chosen: dict[str, Any] = {}
    grid = method.grid()
    for i, params in enumerate(grid, 1):
        progress(f"{method.name}: validating {i}/{len(grid)} ({_params(params)})")
        scores, _, _ = _timed_run(method, fit_ch, fit_part.labels, val_ch, params)
        m = annotation_metrics(scores, val_part.labels, n_labels)
        if best is None or (m.f1, m.n_plus) > best:
            best, chosen = (m.f1, m.n_plus), params
    return chosen


def default_methods() -> list[Method]:
    return [
        TagPropMethod("rank", sigma=False),
        TagPropMethod("dist", sigma=True),
        TwoPKnnMethod(),
        KnnVoteMethod(),
    ]


def evaluate_dataset(
    folder: Path,
    methods: Sequence[Method] | None = None,
    *,
    n_labels: int = 5,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: Callable[[str], None] = _silent,
) -> list[Result]:
    """Tune every method on a validation split of train, then score it once on test.

    `progress` hears a line per stage and grid point: a run on corel5k takes minutes.
    """
    data = load_dataset(Path(folder))
    progress(
        f"loaded {folder}: {len(data.train.labels)} training and {len(data.test.labels)} test "
        f"images, {len(data.tags)} tags"
    )
    train_ch, test_ch = make_channels(data.train.features, data.train.labels, data.test.features)
    results = []
    chosen = list(methods or default_methods())
    for n, method in enumerate(chosen, 1):
        progress(f"method {n}/{len(chosen)}: {method.name}")
        params = tune(method, data.train, n_labels, val_fraction, seed, progress)
        progress(f"{method.name}: scoring the test set with {_params(params)}")
        scores, train_s, predict_s = _timed_run(
            method, train_ch, data.train.labels, test_ch, params
        )
        results.append(
            Result(
                method.name,
                _params(params),
                annotation_metrics(scores, data.test.labels, n_labels),
                train_s,
                predict_s,
            )
        )
    return results


def format_table(results: Sequence[Result]) -> str:
    """A Markdown table of results, one row per method."""
    lines = [
        "| method | chosen on validation | P | R | F1 | N+ | mAP | train s | predict s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.method} | {r.params} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} "
            f"| {m.n_plus} | {m.mean_ap:.3f} | {r.train_s:.2f} | {r.predict_s:.2f} |"
        )
    return "\n".join(lines)
