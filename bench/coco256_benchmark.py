"""TagProp on real photos: coco256's train/ tags play the user's keywords, val/ is predicted.

Run from the repository root:

    .venv/bin/python bench/coco256_benchmark.py [--coco ../shared/coco256]

Features come through phototag's own path: `decode.load` (EXIF orientation, 224x224
bilinear, colour histogram) and `infer.Model` on the shared MobileNetV2 (tf1-quant):
L2-normalised embeddings, class probabilities, colour histograms. Every method gets 3 tags
per val photo (P, R, F1, N+ over the tags present in val/, and mAP; see
`evaluate.annotation_metrics`). Hyper-parameters are chosen by F1 (then N+) averaged over a
4-fold cross-validation of train/ repeated with 3 shuffles: 128 photos are too few for one
validation split to say anything. val/ is used once per method, for the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from phototag.learn import evaluate, neighbours, tagprop, train
from phototag.learn.twopknn import twopknn_scores
from phototag.pipeline import decode, infer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
N_LABELS = 3
FOLDS, SHUFFLES = 4, 3
KS = (5, 10, 20, 40)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)

Scorer = Callable[[train.Features, np.ndarray, train.Features, dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Photos:
    names: list[str]
    features: train.Features
    labels: np.ndarray  # bool [N, classes]


def load_split(
    folder: Path, labels: dict[str, list[str]], classes: list[str], model: infer.Model
) -> Photos:
    files = sorted(folder.glob("*.jpg"))
    decoded = [decode.load(f, model.input_size, 200_000_000) for f in files]
    batch = model.run(np.stack([d.pixels for d in decoded]))
    y = np.zeros((len(files), len(classes)), bool)
    for i, f in enumerate(files):
        for tag in labels[f"{folder.name}/{f.name}"]:
            y[i, classes.index(tag)] = True
    colours = np.stack([d.colour for d in decoded])
    return Photos(
        [f.name for f in files], train.Features(batch.embeddings, colours, batch.probabilities), y
    )


def without_cnn(f: train.Features) -> train.Features:
    return train.Features(f.embeddings, f.colours)


# --- the methods: (train features, train labels, query features, params) -> scores ------


def knn_similarity(
    tr: train.Features, y: np.ndarray, q: train.Features, p: dict[str, Any]
) -> np.ndarray:
    """coco256's reference: the K nearest by cosine vote with their cosine similarity."""
    nb = neighbours.search([q.embeddings], [tr.embeddings], ["cosine"], p["K"])
    return tagprop.vote(1.0 - nb.dist[:, :, 0], nb.idx, y)


def two_pass(tr: train.Features, y: np.ndarray, q: train.Features, p: dict[str, Any]) -> np.ndarray:
    d = neighbours.distance_matrix(q.embeddings, tr.embeddings, "cosine")
    return twopknn_scores(d, y, p["K1"], p["w"])


def tagprop_variant(kind: tagprop.Kind, sigma: bool, pooled_floor: bool) -> Scorer:
    """TagProp on the embedding (cosine, picks neighbours) and colour (chi2) channels."""

    def score(
        tr: train.Features, y: np.ndarray, q: train.Features, p: dict[str, Any]
    ) -> np.ndarray:
        tr, q = without_cnn(tr), without_cnn(q)
        nb = train.search(tr, tr, p["K"], exclude_self=True)
        model = tagprop.fit(nb.dist, nb.idx, y, kind, sigma, pooled_floor=pooled_floor)
        nq = train.search(q, tr, model.k)
        return tagprop.predict(model, nq.dist, nq.idx, y)

    return score


def product_tagprop(
    tr: train.Features, y: np.ndarray, q: train.Features, p: dict[str, Any]
) -> np.ndarray:
    """What `phototag train` fits: sigma-ML, pooled floor, the CNN probabilities as a third channel."""
    model = train.fit(tr, y, [str(j) for j in range(y.shape[1])], p["K"])
    return train.predict(model, tr, y, q)


@dataclass(frozen=True)
class Method:
    name: str
    score: Scorer
    grid: list[dict[str, Any]]


def methods() -> list[Method]:
    ks = [{"K": k} for k in KS]
    return [
        Method("5-NN vote, similarity-weighted (reference)", knn_similarity, [{"K": 5}]),
        Method(
            "2PKNN",
            two_pass,
            [{"K1": a, "w": b} for a, b in product((1, 2, 3), (10, 20, 40, 80))],
        ),
        Method("TagProp rank", tagprop_variant("rank", False, False), ks),
        Method(
            "TagProp dist sigma-ML (alpha >= 0, as published)",
            tagprop_variant("dist", True, False),
            ks,
        ),
        Method(
            "TagProp dist sigma-ML, pooled alpha floor", tagprop_variant("dist", True, True), ks
        ),
        Method(
            "TagProp dist sigma-ML, pooled alpha floor + CNN-probability channel (phototag train)",
            product_tagprop,
            ks,
        ),
    ]


# --- protocol ------------------------------------------------------------------------------


def folds(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for seed in range(SHUFFLES):
        perm = np.random.default_rng(seed).permutation(n)
        for f in range(FOLDS):
            held = np.sort(perm[f::FOLDS])
            out.append((np.setdiff1d(np.arange(n), held), held))
    return out


def cross_validate(method: Method, photos: Photos, params: dict[str, Any]) -> evaluate.Metrics:
    runs = []
    for fit_rows, held in folds(len(photos.names)):
        f = photos.features
        scores = method.score(f.take(fit_rows), photos.labels[fit_rows], f.take(held), params)
        runs.append(evaluate.annotation_metrics(scores, photos.labels[held], N_LABELS))
    return evaluate.Metrics(
        *(
            float(np.mean([getattr(r, k) for r in runs]))
            for k in evaluate.Metrics.__dataclass_fields__
        )
    )


def choose(method: Method, photos: Photos) -> tuple[dict[str, Any], evaluate.Metrics]:
    tried = [(cross_validate(method, photos, p), p) for p in method.grid]
    best = max(tried, key=lambda mp: (round(mp[0].f1, 6), mp[0].n_plus))
    return best[1], best[0]


def thresholds(scores: np.ndarray, truth: np.ndarray, max_tags: int = 3) -> list[str]:
    """What `tagprop.threshold` does: keywords with p >= t, at most max_tags, best first."""
    chosen = evaluate.top_n(scores, max_tags)
    rows = []
    for t in THRESHOLDS:
        proposed = chosen & (scores >= t)
        hits = (proposed & truth).sum()
        precision = hits / max(1, proposed.sum())
        recall = hits / max(1, truth.sum())
        rows.append(
            f"| {t:.1f} | {proposed.sum(1).mean():.2f} | {precision:.3f} | {recall:.3f} "
            f"| {2 * precision * recall / max(1e-12, precision + recall):.3f} |"
        )
    return rows


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"nproc={os.cpu_count()}, CPU: {model}, load average {load}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=Path, default=SHARED / "coco256")
    parser.add_argument(
        "--model", type=Path, default=SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx"
    )
    args = parser.parse_args(argv)
    print(f"machine at start: {machine()}")
    classes = [c for c in (args.coco / "classes.txt").read_text().splitlines() if c]
    with (args.coco / "labels.csv").open(newline="") as f:
        labels = {
            row["file"]: [t for t in row["tags"].split(";") if t] for row in csv.DictReader(f)
        }
    model = infer.Model(args.model, "input", 224, "cpu")
    t0 = time.perf_counter()
    train_set = load_split(args.coco / "train", labels, classes, model)
    val_set = load_split(args.coco / "val", labels, classes, model)
    print(
        f"decoded and inferred {len(train_set.names) + len(val_set.names)} photos in {time.perf_counter() - t0:.1f} s"
    )
    print(f"tags present in val/: {int(val_set.labels.any(0).sum())}\n")

    lines = [
        "| method | chosen on train/ CV | CV F1 | CV N+ | P | R | F1 | N+ | mAP |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    product_scores = None
    for method in methods():
        t0 = time.perf_counter()
        params, cv = choose(method, train_set)
        scores = method.score(train_set.features, train_set.labels, val_set.features, params)
        m = evaluate.annotation_metrics(scores, val_set.labels, N_LABELS)
        chosen = ", ".join(f"{k}={v:g}" for k, v in params.items())
        lines.append(
            f"| {method.name} | {chosen} | {cv.f1:.3f} | {cv.n_plus:.1f} | {m.precision:.3f} "
            f"| {m.recall:.3f} | {m.f1:.3f} | {m.n_plus} | {m.mean_ap:.3f} |"
        )
        print(lines[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if method.score is product_tagprop:
            product_scores, product_params = scores, params
    print("\n" + "\n".join(lines))

    assert product_scores is not None
    cv_scores = np.zeros(train_set.labels.shape)
    for fit_rows, held in folds(len(train_set.names))[:FOLDS]:  # one shuffle: each photo once
        f = train_set.features
        cv_scores[held] = product_tagprop(
            f.take(fit_rows), train_set.labels[fit_rows], f.take(held), product_params
        )
    header = [
        "| threshold | keywords per photo | precision | recall | F1 |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    print(
        "\nphototag train's probabilities cut at tagprop.threshold (at most 3 per photo), micro-averaged"
    )
    print(
        "\ntrain/, 4-fold cross-validation:\n\n"
        + "\n".join(header + thresholds(cv_scores, train_set.labels))
    )
    print(
        "\nval/ (model fitted on train/):\n\n"
        + "\n".join(header + thresholds(product_scores, val_set.labels))
    )
    print(f"\nmachine at end: {machine()}")


if __name__ == "__main__":
    main()
