"""Learn the user's own keywords with TagProp, from the photos they keyworded themselves.

The training set is the indexed photos that carry keywords of the user's (never ours), plus
a fixed-seed sample of photos without any as background: without it a user who has only
keyworded photos of Grandma would give TagProp no photo that is not Grandma, and every
photo would look like her. A keyword is learned once `min_examples` photos carry it. A
keyword of ours the user deleted is an explicit negative: it never counts as a positive
(TagProp's labels are {0, 1}, so it is 0 like an unknown one).

Photos are compared by the current backbone's embedding (cosine, which also picks the
neighbours), their colour histograms (chi²) and the CNN's class probabilities (chi²): the
last helped on coco256 (docs/benchmarks.md). Parameters are TagProp's distance-based sigma-ML
(`tagprop.fit`, with each tag's slope at least the pooled one), and the sigmoids' offsets are
corrected for the 1/n+, 1/n- weighting of the training likelihood, so scores are
probabilities a threshold can cut.

The model keeps what prediction needs (parameters, the training photos' features and
labels) in one .npz in the data dir, named by a digest of all of it; `active-<backbone>`
names the digest in use for that backbone. The digest goes into `ModelVersion.tagprop`, so a
new model makes `refine` re-score photos from their stored vectors, without decoding.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from phototag import paths
from phototag.config import TagPropConfig
from phototag.files.fileio import atomic_write
from phototag.learn import neighbours, tagprop
from phototag.learn.evaluate import average_precision
from phototag.library.index import Index, PhotoRecord
from phototag.pipeline.decode import COLOUR_BINS

FORMAT = "phototag-usertags/1"
COLOUR_STORE = "colour"  # the colour histograms' vector store, the same for every backbone
COLOUR_DIM = COLOUR_BINS**3
# (name, metric) of each distance channel; the first picks the neighbours.
CHANNELS = (("embedding", "cosine"), ("colour", "chi2"), ("cnn", "chi2"))
BACKGROUND_SEED = 0


class TrainError(Exception):
    """Training cannot run or a stored model cannot be used; one line for the user."""


@dataclass(frozen=True)
class Stores:
    """The index's vector stores of one backbone, and their widths."""

    backbone: str  # sha256[:12] of the backbone weights
    embedding_dim: int
    n_outputs: int  # class probabilities per photo

    @property
    def embedding(self) -> str:
        return f"embedding-{self.backbone}"

    @property
    def probability(self) -> str:
        return f"probabilities-{self.backbone}"

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.embedding, COLOUR_STORE, self.probability)


@dataclass(frozen=True)
class Features:
    """Per-photo arrays, one per distance channel; probabilities None: that channel unused."""

    embeddings: np.ndarray  # [N, dim], L2-normalised
    colours: np.ndarray  # [N, 64], L1-normalised
    probabilities: np.ndarray | None = None  # [N, n_outputs]

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def arrays(self) -> list[np.ndarray]:
        used = [self.embeddings, self.colours, self.probabilities]
        return [np.asarray(a, np.float64) for a in used if a is not None]

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, _ in CHANNELS[: len(self.arrays)])

    def take(self, rows: np.ndarray) -> Features:
        probabilities = None if self.probabilities is None else self.probabilities[rows]
        return Features(self.embeddings[rows], self.colours[rows], probabilities)


def search(
    query: Features, base: Features, k: int, exclude_self: bool = False
) -> neighbours.Neighbours:
    """The k nearest base photos by embedding, with every channel's distance to them."""
    n = len(query.arrays)
    metrics = [metric for _, metric in CHANNELS[:n]]
    return neighbours.search(
        query.arrays,
        base.arrays,
        metrics,
        k,
        exclude_self=exclude_self,
        weights=[1.0] + [0.0] * (n - 1),
    )


def fit(
    features: Features, labels: np.ndarray, tags: Sequence[str], k: int
) -> tagprop.TagPropModel:
    """TagProp distance sigma-ML on leave-one-out neighbours, pooled slope floor, calibrated."""
    labels = np.asarray(labels, bool)
    nb = search(features, features, k, exclude_self=True)
    model = tagprop.fit(
        nb.dist,
        nb.idx,
        labels,
        "dist",
        True,
        tags=tuple(tags),
        distances=features.channels,
        pooled_floor=True,
    )
    return calibrated(model, labels)


def calibrated(model: tagprop.TagPropModel, labels: np.ndarray) -> tagprop.TagPropModel:
    """The model with probabilities for the labels' real frequencies.

    The likelihood weighs each positive label 1/n+ and each negative 1/n-, which multiplies
    every fitted odds by n-/n+ (as class weights do in any logistic regression): undone
    here by moving each offset beta by log(n+/n-). A photo's ranking of tags is unchanged.
    """
    if model.alpha is None or model.beta is None:
        raise ValueError("only a sigma-ML model has offsets to calibrate")
    n_pos = max(1, int(np.count_nonzero(labels)))
    n_neg = max(1, labels.size - n_pos)
    return replace(model, beta=model.beta + math.log(n_pos / n_neg))


def predict(
    model: tagprop.TagPropModel,
    base: Features,
    labels: np.ndarray,
    query: Features,
    self_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities [M, T] of the model's tags for the query photos.

    self_rows[m]: the base row that is query m itself, or -1. A training photo is predicted
    from the others, as in training: itself at distance 0 would only repeat its labels, and
    a photo in the background sample would never get a keyword.
    """
    if not len(query):
        return np.zeros((0, len(model.tags)))
    if self_rows is None or not (np.asarray(self_rows) >= 0).any():
        nb = search(query, base, model.k)
        return tagprop.predict(model, nb.dist, nb.idx, labels)
    nb = search(query, base, model.k + 1)
    drop = nb.idx == np.asarray(self_rows)[:, None]
    drop[~drop.any(1), -1] = True  # not a training photo: its farthest goes instead
    keep = np.argsort(drop, axis=1, kind="stable")[:, :-1]
    idx = np.take_along_axis(nb.idx, keep, 1)
    dist = np.take_along_axis(nb.dist, keep[:, :, None], 1)
    return tagprop.predict(model, dist, idx, labels)


def loo_scores(model: tagprop.TagPropModel, features: Features, labels: np.ndarray) -> np.ndarray:
    """Each training photo's probabilities predicted from the others (leave-one-out)."""
    nb = search(features, features, model.k, exclude_self=True)
    return tagprop.predict(model, nb.dist, nb.idx, labels)


# --- the training set ---------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """How much the user has keyworded: a model is stale when this has grown enough."""

    photos: int  # photos with keywords of the user's
    keywords: int  # (photo, user keyword) pairs
    negatives: int  # (photo, keyword of ours the user deleted) pairs


def positives(record: PhotoRecord) -> list[str]:
    """The user's keywords on a photo; one the user deleted never counts, whatever else says so."""
    deleted = set(record.negatives)
    return list(dict.fromkeys(k for k in record.user if k not in deleted))


def counts(records: Iterable[PhotoRecord]) -> Counts:
    photos = keywords = negatives = 0
    for record in records:
        mine = positives(record)
        photos += bool(mine)
        keywords += len(mine)
        negatives += len(record.negatives)
    return Counts(photos, keywords, negatives)


@dataclass(frozen=True)
class TrainingSet:
    records: list[PhotoRecord]  # the user-keyworded photos first, then the background
    tags: tuple[str, ...]  # the keywords learned
    labels: np.ndarray  # bool [N, T]
    keyworded: int  # photos with keywords of the user's (the first rows)
    too_rare: dict[str, int]  # keywords not learned: photos carrying each
    counts: Counts


def training_set(
    records: Sequence[PhotoRecord], stores: Stores, min_examples: int, background: int
) -> TrainingSet:
    """The photos and labels to learn from: see the module's docstring."""
    usable = [r for r in records if all(name in r.vectors for name in stores.names)]
    mine = {r.path: positives(r) for r in usable}
    keyworded = sorted((r for r in usable if mine[r.path]), key=lambda r: r.path)
    per_tag = Counter(k for r in keyworded for k in mine[r.path])
    tags = tuple(sorted(t for t, n in per_tag.items() if n >= min_examples))
    rare = sorted((-n, t) for t, n in per_tag.items() if n < min_examples)
    too_rare = {t: -n for n, t in rare}  # most used first
    others = sorted((r for r in usable if not mine[r.path]), key=lambda r: r.path)
    rng = np.random.default_rng(BACKGROUND_SEED)
    chosen = np.sort(rng.permutation(len(others))[: max(0, background)])
    rows = keyworded + [others[i] for i in chosen]
    column = {t: j for j, t in enumerate(tags)}
    labels = np.zeros((len(rows), len(tags)), bool)
    for i, record in enumerate(keyworded):
        for keyword in mine[record.path]:
            if keyword in column:
                labels[i, column[keyword]] = True
    return TrainingSet(rows, tags, labels, len(keyworded), too_rare, counts(records))


def features_of(index: Index, records: list[PhotoRecord], stores: Stores) -> Features:
    """The stored features of indexed photos (all must have the stores' vectors)."""
    return Features(
        index.vectors(stores.embedding, records, stores.embedding_dim),
        index.vectors(COLOUR_STORE, records, COLOUR_DIM),
        index.vectors(stores.probability, records, stores.n_outputs),
    )


# --- quality --------------------------------------------------------------------------


@dataclass(frozen=True)
class TagQuality:
    tag: str
    photos: int  # training photos carrying it
    precision: float  # of the leave-one-out proposals (probability >= threshold); nan if none
    recall: float
    ap: float  # average precision of the photos ranked by its leave-one-out probability


@dataclass(frozen=True)
class Report:
    """Leave-one-out quality: each photo tagged by the model of all the others."""

    tags: list[TagQuality]
    threshold: float
    precision: float  # means over the keywords (precision over those proposed at least once)
    recall: float
    mean_ap: float


def quality(
    scores: np.ndarray, labels: np.ndarray, tags: Sequence[str], threshold: float
) -> Report:
    labels = np.asarray(labels, bool)
    proposed = scores >= threshold
    hits = (proposed & labels).sum(0)
    n_proposed, n_true = proposed.sum(0), labels.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_proposed > 0, hits / n_proposed, np.nan)
        recall = hits / n_true
    ap = average_precision(scores, labels)
    rows = [
        TagQuality(t, int(n_true[j]), float(precision[j]), float(recall[j]), float(ap[j]))
        for j, t in enumerate(tags)
    ]
    return Report(
        rows,
        threshold,
        float(np.nanmean(precision)) if (n_proposed > 0).any() else float("nan"),
        float(np.mean(recall)),
        float(np.mean(ap)),
    )


def format_report(report: Report) -> str:
    """The per-keyword table `phototag train` prints."""
    lines = [f"{'keyword':<24} {'photos':>6} {'precision':>9} {'recall':>6} {'AP':>5}"]
    for q in report.tags:
        precision = "-" if math.isnan(q.precision) else f"{q.precision:.2f}"
        lines.append(f"{q.tag[:24]:<24} {q.photos:>6} {precision:>9} {q.recall:>6.2f} {q.ap:>5.2f}")
    overall = "-" if math.isnan(report.precision) else f"{report.precision:.2f}"
    lines.append(
        f"{'(mean)':<24} {'':>6} {overall:>9} {report.recall:>6.2f} {report.mean_ap:>5.2f}"
    )
    return "\n".join(lines)


# --- the stored model -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Learned:
    """A trained model with what predicting needs: its training photos' features and labels."""

    model: tagprop.TagPropModel
    features: Features
    labels: np.ndarray  # bool [N, T]
    paths: tuple[str, ...]  # of the training photos, row by row
    backbone: str  # sha256[:12] of the backbone whose embeddings it was trained on
    counts: Counts  # the user's keywording when it was trained
    trained_at: float

    @property
    def tags(self) -> tuple[str, ...]:
        return self.model.tags

    def scores(self, query: Features, paths: Sequence[str | None] = ()) -> np.ndarray:
        """Probabilities [M, T] of the user's keywords for these photos (paths[m]: photo m's
        path, when indexed, so a training photo is not its own neighbour)."""
        if self.features.probabilities is None:  # trained without the CNN channel
            query = replace(query, probabilities=None)
        row = {p: i for i, p in enumerate(self.paths)}
        self_rows = np.array([row.get(p, -1) if p else -1 for p in paths], np.int64)
        return predict(
            self.model, self.features, self.labels, query, self_rows if len(paths) else None
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        f = self.features
        arrays = {
            "embeddings": np.asarray(f.embeddings, np.float16),
            "colours": np.asarray(f.colours, np.float16),
            "labels": np.asarray(self.labels, bool),
        }
        if f.probabilities is not None:
            arrays["probabilities"] = np.asarray(f.probabilities, np.float16)
        return arrays

    @property
    def digest(self) -> str:
        """Of everything predictions depend on, so retraining on the same photos changes nothing."""
        h = hashlib.sha256(f"{FORMAT}/{self.backbone}/".encode())
        h.update(self.model.to_json().encode())
        h.update(json.dumps(self.paths).encode())
        for name, array in sorted(self._arrays().items()):
            h.update(f"{name}{array.dtype}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:12]

    def to_bytes(self) -> bytes:
        meta = {
            "format": FORMAT,
            "backbone": self.backbone,
            "counts": asdict(self.counts),
            "trained_at": self.trained_at,
            "paths": list(self.paths),
        }
        out = io.BytesIO()
        np.savez(
            out,
            model=np.frombuffer(self.model.to_json().encode(), np.uint8),
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            **self._arrays(),
        )
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Learned:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes())
                if meta.get("format") != FORMAT:
                    raise ValueError(f"unknown format {meta.get('format')!r}")
                model = tagprop.TagPropModel.from_json(z["model"].tobytes().decode())
                probabilities = z["probabilities"] if "probabilities" in z.files else None
                features = Features(z["embeddings"], z["colours"], probabilities)
                labels = z["labels"]
            learned = cls(
                model,
                features,
                labels,
                tuple(str(path) for path in meta["paths"]),
                str(meta["backbone"]),
                Counts(**meta["counts"]),
                float(meta["trained_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise TrainError(f"not a phototag TagProp model: {str(exc).splitlines()[0]}") from None
        n = len(features)
        if len(learned.paths) != n or (
            labels.shape != (n, len(model.tags))
            or len(features.colours) != n
            or len(features.arrays) != len(model.distances)
        ):
            raise TrainError(
                "TagProp model file is inconsistent (features, labels and tags disagree)"
            )
        return learned


def model_dir() -> Path:
    return paths.data_dir() / "tagprop"


def _pointer(backbone: str) -> Path:
    return model_dir() / f"active-{backbone}"


def activate(learned: Learned) -> str:
    """Store the model and make it the active one for its backbone; returns its digest.

    Both files are written atomically, the model before the pointer to it, so a crash
    leaves the old model active or the new one, never a pointer to half a file.
    """
    digest = learned.digest
    folder = model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{digest}.npz"
    if not target.exists():
        atomic_write(target, learned.to_bytes())
    atomic_write(_pointer(learned.backbone), f"{digest}\n".encode())
    return digest


def active(backbone: str) -> tuple[str, Learned] | None:
    """The active model for this backbone and its digest; None when none was trained."""
    pointer = _pointer(backbone)
    try:
        digest = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TrainError(f"{pointer}: cannot read: {exc.strerror or exc}") from None
    path = model_dir() / f"{digest}.npz"
    try:
        learned = Learned.from_bytes(path.read_bytes())
    except OSError as exc:
        raise TrainError(f"{path}: cannot read TagProp model: {exc.strerror or exc}") from None
    except TrainError as exc:
        raise TrainError(f"{path}: {exc}") from None
    if learned.backbone != backbone or learned.digest != digest:
        raise TrainError(
            f"{path}: does not match its name or backbone (damaged?): run `phototag train`"
        )
    return digest, learned


# --- training and retraining ------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    learned: Learned
    digest: str
    report: Report
    data: TrainingSet
    seconds: float


def train(
    index: Index,
    stores: Stores,
    cfg: TagPropConfig,
    progress: Callable[[str], None] = lambda message: None,
) -> Trained:
    """Learn the user's keywords from the index and make the model the active one."""
    start = time.perf_counter()
    data = training_set(index.records(), stores, cfg.min_examples, cfg.background)
    if not data.tags:
        raise TrainError(_too_few(data, cfg.min_examples))
    progress(
        f"training set: {data.keyworded} photos with your keywords, {len(data.records) - data.keyworded} "
        f"without as background; learning {len(data.tags)} keywords"
    )
    features = features_of(index, data.records, stores)
    k = max(1, min(cfg.k, len(data.records) - 1))
    progress(f"fitting TagProp (K={k} neighbours per photo)")
    model = fit(features, data.labels, data.tags, k)
    progress("leave-one-out check")
    # Judged on the photos the user keyworded: on the background, a proposal is unconfirmed
    # rather than wrong (the user never said those photos lack the keyword).
    mine = slice(0, data.keyworded)
    loo = loo_scores(model, features, data.labels)
    report = quality(loo[mine], data.labels[mine], data.tags, cfg.threshold)
    paths = tuple(r.path for r in data.records)
    learned = Learned(
        model, features, data.labels, paths, stores.backbone, data.counts, time.time()
    )
    digest = activate(learned)
    return Trained(learned, digest, report, data, time.perf_counter() - start)


def _too_few(data: TrainingSet, min_examples: int) -> str:
    if not data.too_rare:
        return (
            "no photo has keywords of your own yet: give a keyword to at least "
            f"{min_examples} photos (tagprop.min_examples) and run `phototag scan` on them"
        )
    best, n = next(iter(data.too_rare.items()))
    return (
        f"too few photos with your keywords: a keyword is learned once {min_examples} photos "
        f"carry it (tagprop.min_examples), and the most used, {best!r}, is on {n}"
    )


def stale(index: Index, learned: Learned | None, cfg: TagPropConfig) -> bool:
    """Whether enough has changed in the user's keywording since `learned` was trained.

    Cheap: one pass over the index records. Changed enough: photos, keywords or deleted
    keywords moved by at least 10 % or `retrain_after`, whichever is fewer. No model: stale
    once some keyword is on `min_examples` photos.
    """
    records = index.records()
    if learned is None:
        per_tag = Counter(k for r in records for k in positives(r))
        return bool(per_tag) and per_tag.most_common(1)[0][1] >= cfg.min_examples
    now, then = counts(records), learned.counts
    return any(
        abs(a - b) >= max(1, min(math.ceil(0.1 * b), cfg.retrain_after))
        for a, b in zip(asdict(now).values(), asdict(then).values(), strict=True)
    )


def retrain_if_stale(
    index: Index, stores: Stores, learned: Learned | None, cfg: TagPropConfig
) -> Trained | None:
    """A new active model when the user's keywording has changed enough (`stale`), else None."""
    return train(index, stores, cfg) if stale(index, learned, cfg) else None
