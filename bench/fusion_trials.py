"""Two ways to rank a photo's 3 tags better than `detect.merge`, tried on coco256 (issue 13).

    .venv/bin/python bench/fusion_trials.py

Features through phototag's path (`decode.load` with the 416 letterbox, `infer.Model` on
MobileNetV2, `detect.Detector.run` with boxes kept from 0.05), then:
  1. a learned fusion: one logistic regression shared by all (photo, class) pairs of train/
     on the detector's best-box logit (0.025 where it has no box) and the classifier's
     ImageNet-path logit (0 where the map has no such class), optionally the class's box
     count; chosen by train/ cross-validation (4 folds x 3 shuffles), val used once each;
  2. cross-class NMS: after the per-class NMS, a box overlapping a better box of another
     class by IoU > t is dropped (the detector's second guess for one object), boxes from a
     floor f, then the higher score per tag as `detect.merge`; f and t chosen on train/.
Needs scikit-learn (`[bench]`). Neither beat `detect.merge` on val (docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
import coco256_benchmark as cb

from phototag.config import Config
from phototag.learn import evaluate
from phototag.pipeline import decode, detect, infer, labels

FLOOR = 0.05  # boxes kept for the features
FLOORS, IOUS = (0.05, 0.1, 0.2, 0.3), (0.5, 0.7, 0.9, 1.01)  # 1.01: no cross-class NMS
MODELS = {"box + classifier": ["det", "cls"], "box + classifier + count": ["det", "cls", "cnt"]}
CS = (0.1, 1.0, 10.0)


def split(name: str, classes: list[str]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Classifier COCO-class scores [N, 80], boxes per photo [K, 6] (class, score, x1..y2),
    and the truth [N, 80] of one coco256 split."""
    coco = cb.SHARED / "coco256"
    with (coco / "labels.csv").open(newline="") as f:
        by_file = {r["file"]: [t for t in r["tags"].split(";") if t] for r in csv.DictReader(f)}
    files = sorted((coco / name).glob("*.jpg"))
    truth = np.zeros((len(files), len(classes)), bool)
    for i, f in enumerate(files):
        for tag in by_file[f"{name}/{f.name}"]:
            truth[i, classes.index(tag)] = True
    model = infer.Model(cb.SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx", "input", 224)
    paths = detect.class_paths(labels.load("coco"))
    cfg = Config().detector
    detector = detect.Detector(
        infer.session(cb.SHARED / "models" / "coco_nanodet.onnx", "cpu"),
        "input",
        416,
        paths,
        "coco-nanodet@g-416",
        replace(cfg, keep=FLOOR),
    )
    imagenet = labels.load("imagenet")
    columns = cb.coco_columns(imagenet, classes)
    scores, boxes = [], []
    for i in range(0, len(files), 8):
        photos = [decode.load(f, 224, 200_000_000, 416) for f in files[i : i + 8]]
        p = labels.path_scores(
            model.run(np.stack([d.pixels for d in photos])).probabilities, imagenet
        )
        scores.append(np.where(columns >= 0, p[:, np.maximum(columns, 0)], 0.0))
        for found in detector.run([d.letterbox for d in photos]):  # type: ignore[misc]
            boxes.append(
                np.array([(paths.index(d.path), d.score, *d.box) for d in found]).reshape(-1, 6)
            )
    return np.concatenate(scores), boxes, truth


def best_boxes(boxes: list[np.ndarray], floor: float, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Per photo and class: the best box score and the number of boxes >= 0.3, from boxes at
    or above floor that survive cross-class NMS at iou (> 1: none)."""
    best, count = np.zeros((len(boxes), 80)), np.zeros((len(boxes), 80))
    for i, b in enumerate(boxes):
        b = b[b[:, 1] >= floor]
        b = b[np.argsort(-b[:, 1], kind="stable")]
        other = (detect.iou_matrix(b[:, 2:6]) > iou) & (b[:, None, 0] != b[None, :, 0])
        keep = np.ones(len(b), bool)
        for k in range(len(b)):
            if keep[k]:
                keep[k + 1 :] &= ~other[k, k + 1 :]
        for c, s in b[keep, :2]:
            best[i, int(c)] = max(best[i, int(c)], s)
            count[i, int(c)] += s >= 0.3
    return best, count


def logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-4, 1 - 1e-4)
    return np.log(x / (1 - x))


def features(
    cls: np.ndarray, boxes: list[np.ndarray], mapped: np.ndarray, names: list[str]
) -> np.ndarray:
    """[N, 80, F]: the named features of every (photo, class) pair."""
    best, count = best_boxes(boxes, FLOOR, 1.01)
    f = {
        "det": np.where(best > 0, logit(best), logit(np.full_like(best, FLOOR / 2))),
        "cls": logit(np.maximum(cls, 1e-4)) * mapped,
        "cnt": np.log1p(count),
    }
    return np.stack([f[n] for n in names], -1)


def fused(x: np.ndarray, y: np.ndarray, q: np.ndarray, c: float) -> np.ndarray:
    fit = LogisticRegression(C=c, max_iter=2000).fit(x.reshape(-1, x.shape[-1]), y.ravel())
    return fit.predict_proba(q.reshape(-1, q.shape[-1]))[:, 1].reshape(q.shape[:2])


def row(name: str, scores: np.ndarray, truth: np.ndarray, extra: str = "") -> str:
    m = evaluate.annotation_metrics(scores, truth, cb.N_LABELS)
    chosen = evaluate.top_n(scores, cb.N_LABELS) & (scores > 0)
    hits = (chosen[:, 0] & truth[:, 0]).sum()  # class 0 is person
    pp, pr = hits / max(1, chosen[:, 0].sum()), hits / max(1, truth[:, 0].sum())
    return (
        f"| {name} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {m.n_plus} "
        f"| {pp:.3f} | {pr:.3f} | {extra} |"
    )


def main() -> None:
    print(f"machine at start: {cb.machine()}")
    classes = [c for c in (cb.SHARED / "coco256" / "classes.txt").read_text().splitlines() if c]
    (tc, tb, ty), (vc, vb, vy) = split("train", classes), split("val", classes)
    mapped = (cb.coco_columns(labels.load("imagenet"), classes) >= 0).astype(float)
    folds = cb.folds(len(ty))

    def cv(make: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
        """Mean F1 over train/'s folds of the scores make(fit rows, held rows) gives."""
        return float(
            np.mean(
                [evaluate.annotation_metrics(make(a, b), ty[b], cb.N_LABELS).f1 for a, b in folds]
            )
        )

    print(
        "| coco256 val, 3 tags per photo | P | R | F1 | N+ | person P | person R | chosen on train/ |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    merge_train = np.maximum(best_boxes(tb, 0.3, 1.01)[0], tc)
    base = cv(lambda a, b: merge_train[b])
    print(
        row(
            "detect.merge (today)",
            np.maximum(best_boxes(vb, 0.3, 1.01)[0], vc),
            vy,
            f"CV F1 {base:.3f}",
        )
    )
    for label, names in MODELS.items():
        x, q = features(tc, tb, mapped, names), features(vc, vb, mapped, names)
        tried = {c: cv(lambda a, b, c=c, x=x: fused(x[a], ty[a], x[b], c)) for c in CS}
        c = max(tried, key=lambda k: tried[k])
        print(row(f"learned: {label}", fused(x, ty, q, c), vy, f"C={c:g}, CV F1 {tried[c]:.3f}"))
    grid = {
        (f, t): evaluate.annotation_metrics(
            np.maximum(best_boxes(tb, f, t)[0], tc), ty, cb.N_LABELS
        ).f1
        for f in FLOORS
        for t in IOUS
    }
    f, t = max(grid, key=lambda k: grid[k])
    print(
        row(
            "cross-class NMS, then the higher score",
            np.maximum(best_boxes(vb, f, t)[0], vc),
            vy,
            f"floor {f:g}, IoU {t:g}: train F1 {grid[(f, t)]:.3f} (today {grid[(0.3, 1.01)]:.3f})",
        )
    )
    print(f"\nmachine at end: {cb.machine()}")


if __name__ == "__main__":
    main()
