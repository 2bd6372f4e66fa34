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
import hashlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from phototag import catalogue
from phototag.config import Config
from phototag.learn import evaluate, neighbours, tagprop, train
from phototag.learn.twopknn import twopknn_scores
from phototag.pipeline import decode, detect, infer, labels, specialist
from phototag.records import Detection

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


# --- stages: classifier, detector and their fusion, as the tagger merges them ------------------


def coco_columns(labelmap: labels.LabelMap, classes: list[str]) -> np.ndarray:
    """int [classes]: the label-map path column of each COCO class (-1: the map lacks it)."""
    coco = labels.load("coco")
    own = {coco.labels[c]: p for c, p in enumerate(detect.class_paths(coco))}
    index = {path: j for j, path in enumerate(labelmap.paths)}
    return np.array([index.get(own[c], -1) for c in classes])


def catalogued(path: Path) -> catalogue.ModelSpec:
    """The catalogue entry of a model file, by its sha256 (its label map, its name)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return next(s for s in catalogue.entries() if s.sha256 == digest)


def stage_scores(
    files: list[Path],
    classes: list[str],
    models: list[tuple[Path, infer.Model]],
    detectors: list[detect.Detector],
    specialists: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per COCO class scores of each stage alone and fused, through phototag's own path;
    and each stage's ms per photo, measured in this run. Fused: each classifier with each
    detector, per tag the higher score (`detect.merge`)."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    plain = [decode.load(f, 224, 200_000_000) for f in files]
    times["decode (classifier input)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    both = [decode.load(f, 224, 200_000_000, 416) for f in files]
    times["decode (classifier + letterbox, one decode)"] = time.perf_counter() - t0
    coco = labels.load("coco")
    paths = detect.class_paths(coco)
    alone: dict[str, np.ndarray] = {}
    classified, detected = {}, {}
    boxes_of: dict[str, list[list[Detection]]] = {}
    for path, model in models:
        spec = catalogued(path)
        t0 = time.perf_counter()
        probabilities = np.concatenate(
            [
                model.run(np.stack([d.pixels for d in plain[i : i + 16]])).probabilities
                for i in range(0, len(plain), 16)
            ]
        )
        times[f"classifier {spec.ref} (batch 16)"] = time.perf_counter() - t0
        labelmap = labels.load(spec.labels)
        columns = coco_columns(labelmap, classes)
        path_scores = labels.path_scores(probabilities, labelmap)
        classified[spec.ref] = np.where(columns >= 0, path_scores[:, np.maximum(columns, 0)], 0.0)
        alone[f"classifier alone ({spec.ref}, ImageNet map)"] = classified[spec.ref]
    for detector in detectors:
        detector.run([d.letterbox for d in both[:8]])  # type: ignore[misc]  # warm-up
        t0 = time.perf_counter()
        found: list[list] = []
        for i in range(0, len(both), 8):
            found += detector.run([d.letterbox for d in both[i : i + 8]])  # type: ignore[misc]
        times[f"detector {detector.name} (416 + NMS, batch 8)"] = time.perf_counter() - t0
        scores = np.zeros((len(files), len(classes)))
        for i, boxes in enumerate(found):
            for tag in detect.detection_tags(boxes, detector.cfg.keep):
                if tag.path in paths:
                    scores[i, classes.index(coco.labels[paths.index(tag.path)])] = tag.score
        detected[detector.name] = scores
        boxes_of.setdefault("first", found)
        alone[f"detector alone ({detector.name}, max box score)"] = scores
    if specialists and models and detectors:
        labelmap = labels.load(catalogued(models[0][0]).labels)
        probabilities = models[0][1].run(np.stack([d.pixels for d in plain])).probabilities
        path_scores = labels.path_scores(probabilities, labelmap)
        times.update(specialists_time(plain, path_scores, labelmap.paths, boxes_of["first"]))
    for (c, cs), (d, ds) in product(classified.items(), detected.items()):
        alone[f"fused: {c} + {d}, per tag the higher score (detect.merge)"] = np.maximum(cs, ds)
    return alone, {k: 1000 * v / len(files) for k, v in times.items()}


def specialists_time(
    photos: list[decode.Decoded],
    path_scores: np.ndarray,
    paths: list[str],
    found: list[list[Detection]],
) -> dict[str, float]:
    """Seconds the bird and insect specialists take on these photos, gated as the tagger does
    (batch 16); the row name says how many photos each gate let through."""
    cfg = Config().specialists
    pixels = np.stack([d.pixels for d in photos])
    out = {}
    for name, domain, labelmap in (
        ("inat_bird", "animal|bird", "inat_bird"),
        ("inat_insect", "animal|insect", "inat_insect"),
    ):
        species = specialist.species_paths(labels.load(labelmap))
        model = infer.Model(SHARED / "models" / f"{name}.onnx", "input", 224, "cpu")
        expert = specialist.Specialist(model, domain, species, name)
        gate = specialist.gate_scores(path_scores, paths, found, domain) >= cfg.gate
        t0 = time.perf_counter()
        for i in range(0, len(photos), 16):
            expert.run(pixels[i : i + 16], gate[i : i + 16], cfg.keep)
        took = time.perf_counter() - t0
        each = f"{1000 * took / gate.sum():.1f} ms each" if gate.any() else "none ran"
        out[f"specialist {name}, gated {gate.sum()} of {len(photos)} ({each})"] = took
    return out


def calibrated(
    train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]
) -> dict[str, tuple[np.ndarray, float]]:
    """Calibrated fusions of the classifier's and detector's scores: per source Platt scaling or
    isotonic regression (then the max of the calibrated probabilities), or one logistic
    combiner of both scores; fitted on train/ (photo x class pairs), with their F1 over a
    4-fold cross-validation of train/ beside the val scores. Needs scikit-learn (`[bench]`)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    # calibrators: features [N, C, F] of train/, its truth, features of the query -> [N, C]
    def platt(x: np.ndarray, y: np.ndarray, q: np.ndarray) -> np.ndarray:
        fit = LogisticRegression().fit(x.reshape(-1, x.shape[-1]), y.ravel())
        return fit.predict_proba(q.reshape(-1, q.shape[-1]))[:, 1].reshape(q.shape[:2])

    def iso(x: np.ndarray, y: np.ndarray, q: np.ndarray) -> np.ndarray:
        fit = IsotonicRegression(out_of_bounds="clip").fit(x.ravel(), y.ravel())
        return fit.predict(q.ravel()).reshape(q.shape[:2])

    def per_source(cal: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def fuse(
            c: np.ndarray, d: np.ndarray, y: np.ndarray, qc: np.ndarray, qd: np.ndarray
        ) -> np.ndarray:
            return np.maximum(
                cal(c[..., None], y, qc[..., None]), cal(d[..., None], y, qd[..., None])
            )

        return fuse

    def combiner(
        c: np.ndarray, d: np.ndarray, y: np.ndarray, qc: np.ndarray, qd: np.ndarray
    ) -> np.ndarray:
        return platt(np.stack([c, d], -1), y, np.stack([qc, qd], -1))

    fusions = {
        "Platt per stage, then max": per_source(platt),
        "isotonic per stage, then max": per_source(iso),
        "logistic combiner of both scores": combiner,
    }
    c, d, y = train
    out = {}
    for name, fuse in fusions.items():
        cv = [
            evaluate.annotation_metrics(fuse(c[a], d[a], y[a], c[b], d[b]), y[b], N_LABELS).f1
            for a, b in folds(len(y))
        ]
        out[f"fused: {name} (fitted on train/)"] = (fuse(c, d, y, *val), float(np.mean(cv)))
    return out


def with_tagprop(
    coco: Path,
    classes: list[str],
    labels_by_file: dict[str, list[str]],
    classifier: tuple[Path, infer.Model],
    detectors: list[detect.Detector],
    stages: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """TagProp as `phototag train` fits it on train/'s tags (K chosen by train/ CV), alone,
    merged with the first classifier + detector fusion by the higher score per tag, and
    added to it with a weight w chosen on train/ (out-of-fold TagProp scores there)."""
    method = next(m for m in methods() if m.score is product_tagprop)
    model = classifier[1]
    train_set = load_split(coco / "train", labels_by_file, classes, model)
    val_set = load_split(coco / "val", labels_by_file, classes, model)
    params, _ = choose(method, train_set)
    learned = product_tagprop(train_set.features, train_set.labels, val_set.features, params)
    fused_name, fused = next((k, v) for k, v in stages.items() if k.startswith("fused"))
    oof = np.zeros(train_set.labels.shape)
    for fit_rows, held in folds(len(train_set.names))[:FOLDS]:  # one shuffle: each photo once
        f = train_set.features
        oof[held] = product_tagprop(
            f.take(fit_rows), train_set.labels[fit_rows], f.take(held), params
        )
    train_files = sorted((coco / "train").glob("*.jpg"))
    train_stages, _ = stage_scores(train_files, classes, [classifier], detectors[:1], False)
    train_fused = next(v for k, v in train_stages.items() if k.startswith("fused"))
    weights = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    f1 = [
        evaluate.annotation_metrics(train_fused + w * oof, train_set.labels, N_LABELS).f1
        for w in weights
    ]
    w = weights[int(np.argmax(f1))]
    return {
        f"TagProp alone (phototag train on train/'s tags, K={params['K']})": learned,
        f"{fused_name} + TagProp, the higher score": np.maximum(fused, learned),
        f"{fused_name} + w * TagProp, w={w} chosen on train/ (F1 {max(f1):.3f} there)": fused
        + w * learned,
    }


def stages_table(
    coco: Path,
    classes: list[str],
    labels_by_file: dict[str, list[str]],
    models: list[tuple[Path, infer.Model]],
    detector_files: list[Path],
    fit: bool = False,
    learned: bool = False,
    table_split: str = "val",
) -> None:
    cfg = Config()
    detectors = [
        detect.Detector(
            infer.session(path, "cpu"),
            "input",
            416,
            detect.class_paths(labels.load("coco")),
            catalogued(path).ref,
            cfg.detector,
            catalogued(path).input.stride,
        )
        for path in detector_files
    ]

    def split(name: str) -> tuple[list[Path], np.ndarray]:
        files = sorted((coco / name).glob("*.jpg"))
        truth = np.zeros((len(files), len(classes)), bool)
        for i, f in enumerate(files):
            for tag in labels_by_file[f"{name}/{f.name}"]:
                truth[i, classes.index(tag)] = True
        return files, truth

    files, truth = split(table_split)
    scores, ms = stage_scores(files, classes, models, detectors)
    cv: dict[str, float] = {}
    if fit:
        train_files, train_truth = split("train")
        fitted, _ = stage_scores(train_files, classes, models[:1], detectors[:1], False)
        sources = [next(k for k in fitted if k.startswith(w)) for w in ("classifier", "detector")]
        train = (fitted[sources[0]], fitted[sources[1]], train_truth)
        for name, (s, f1) in calibrated(train, (scores[sources[0]], scores[sources[1]])).items():
            scores[name], cv[name] = s, f1
    if learned:
        for name, s in with_tagprop(
            coco, classes, labels_by_file, models[0], detectors, scores
        ).items():
            scores[name] = s
    person = classes.index("person")
    print(
        f"| coco256 {table_split}, 3 tags per photo | P | R | F1 | N+ | mAP | person P | person R | CV F1 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in scores.items():
        m = evaluate.annotation_metrics(s, truth, N_LABELS)
        chosen = evaluate.top_n(s, N_LABELS) & (s > 0)
        hits = (chosen[:, person] & truth[:, person]).sum()
        pp = hits / max(1, chosen[:, person].sum())
        pr = hits / max(1, truth[:, person].sum())
        print(
            f"| {name} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {m.n_plus} "
            f"| {m.mean_ap:.3f} | {pp:.3f} | {pr:.3f} | {f'{cv[name]:.3f}' if name in cv else '-'} |"
        )
    print("\n| stage | ms per photo |\n| --- | ---: |")
    for name, v in ms.items():
        print(f"| {name} | {v:.1f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=Path, default=SHARED / "coco256")
    parser.add_argument(
        "--model", type=Path, default=SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx"
    )
    parser.add_argument(
        "--stages", action="store_true", help="only the classifier / detector / fused table"
    )
    parser.add_argument(
        "--tagprop", action="store_true", help="with --stages: TagProp learned on train/ too"
    )
    parser.add_argument(
        "--classifier",
        type=Path,
        action="append",
        help="with --stages: a catalogued classifier file (repeat to compare; default --model)",
    )
    parser.add_argument(
        "--detector",
        type=Path,
        action="append",
        help="with --stages: a catalogued detector file (repeat to compare; default the float"
        " coco_nanodet.onnx; the int8 one is made by models/make_nanodet_int8.py, the"
        " any-shape one by models/make_nanodet_rect.py)",
    )
    parser.add_argument(
        "--calibrated", action="store_true", help="with --stages: calibrated fusions too"
    )
    parser.add_argument(
        "--split",
        choices=("val", "train"),
        default="val",
        help="with --stages: the split the table scores (train: a second look, nothing fitted)",
    )
    args = parser.parse_args(argv)
    print(f"machine at start: {machine()}")
    classes = [c for c in (args.coco / "classes.txt").read_text().splitlines() if c]
    with (args.coco / "labels.csv").open(newline="") as f:
        labels = {
            row["file"]: [t for t in row["tags"].split(";") if t] for row in csv.DictReader(f)
        }
    model = infer.Model(args.model, "input", 224, "cpu")
    if args.stages:
        models = [(p, infer.Model(p, "input", 224, "cpu")) for p in args.classifier or [args.model]]
        detectors = args.detector or [SHARED / "models" / "coco_nanodet.onnx"]
        stages_table(
            args.coco, classes, labels, models, detectors, args.calibrated, args.tagprop, args.split
        )
        print(f"\nmachine at end: {machine()}")
        return
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
