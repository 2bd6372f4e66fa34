"""TagProp against 2PKNN, a k-NN vote and scikit-multilearn's ML-kNN, on the same splits.

Run from the repository root (needs the `bench` extra: `pip install -e '.[bench]'`):

    python bench/tagprop_benchmark.py [--benchmarks ../shared/benchmarks]

Every method gets the same three distance channels (`evaluate.make_channels`), tunes its
hyper-parameters on a validation split of the training set, and is scored once on test.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skmultilearn.adapt.mlknn as mlknn_module
from sklearn.neighbors import NearestNeighbors

from phototag.learn import evaluate


def _precomputed_neighbours(k: int) -> NearestNeighbors:
    # scikit-multilearn 0.2.0 calls NearestNeighbors(k) positionally, which scikit-learn
    # >= 1.0 refuses; and we hand it our distance matrices, the same every method uses.
    return NearestNeighbors(n_neighbors=k, metric="precomputed")


mlknn_module.NearestNeighbors = _precomputed_neighbours


@dataclass
class MLkNNMethod:
    """ML-kNN (Zhang & Zhou 2007) as fitted by scikit-multilearn.

    Fit: the training distance matrix with the diagonal pushed beyond every other
    distance, so an image is not its own neighbour when the library counts neighbour
    labels (ML-kNN's leave-one-out; the library would count it otherwise). Scores: the
    paper's posterior P(y=1|counts) from the library's fitted prior and conditional
    tables; the library's predict_proba returns only the unnormalised numerator, which
    does not rank tags across images.
    """

    name: str = "ML-kNN (scikit-multilearn)"
    ks: tuple[int, ...] = (5, 10, 20)

    def grid(self) -> list[dict[str, Any]]:
        return [{"K": k} for k in self.ks]

    def fit(self, train: evaluate.Channels, labels: np.ndarray, params: dict[str, Any]) -> Any:
        dist = train.distance_matrix(train)
        np.fill_diagonal(dist, dist.max() + 1.0)
        model = mlknn_module.MLkNN(k=params["K"])
        model.fit(dist, labels.astype(np.int64))
        return model, train, labels

    def predict(self, fitted: Any, query: evaluate.Channels) -> np.ndarray:
        model, train, labels = fitted
        idx = model.knn_.kneighbors(query.distance_matrix(train), model.k, return_distance=False)
        counts = labels[idx].sum(1)  # [M, T] neighbours carrying each tag
        tags = np.arange(labels.shape[1])
        p1 = model._prior_prob_true * model._cond_prob_true.toarray()[tags, counts]
        p0 = model._prior_prob_false * model._cond_prob_false.toarray()[tags, counts]
        return p1 / (p1 + p0)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"nproc={os.cpu_count()}, CPU: {model}, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--benchmarks",
        type=Path,
        default=Path(__file__).parents[1].parent / "shared" / "benchmarks",
    )
    args = parser.parse_args()
    # The default methods plus TagProp distance without sigma-ML, to show what it adds.
    methods = [*evaluate.default_methods(), evaluate.TagPropMethod("dist", sigma=False)]
    methods.append(MLkNNMethod())
    print(f"machine at start: {machine()}")
    runs = [("corel5k", 5), ("scene", 5), ("scene", 1)]
    for name, n_labels in runs:
        t0 = time.perf_counter()
        results = evaluate.evaluate_dataset(args.benchmarks / name, methods, n_labels=n_labels)
        print(f"\n### {name}, {n_labels} labels per image ({time.perf_counter() - t0:.0f} s)\n")
        print(evaluate.format_table(results), flush=True)
    print(f"\nmachine at end: {machine()}")


if __name__ == "__main__":
    main()
