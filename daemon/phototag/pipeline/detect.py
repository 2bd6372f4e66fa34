"""The object detector stage: letterboxed pixels -> boxes with COCO classes as tag paths.

The detector graph (NanoDet, `kind: detector` in the catalogue) already decodes its head:
per anchor point a sigmoid score per class and a box in input pixels. What is left here is
choosing boxes (score floor, per-class non-maximum suppression on a vectorised IoU matrix),
undoing the letterbox, and turning boxes into tags: a class's photo score is its best box's
score, and several persons also make the photo `people`. A graph that takes any multiple of
its stride each way (`input.stride`) gets the letterbox cut to the photo's shape: the black
bands of a square cost as much work as the photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phototag import catalogue
from phototag.config import Config, DetectorConfig
from phototag.pipeline import infer, labels
from phototag.pipeline.infer import InferenceError
from phototag.records import LEVEL_SEP, Detection, Letterbox, Tag

PERSON = "people|person"
PEOPLE = "people"  # the tag for a photo with several persons
CANDIDATES = 200  # best (anchor, class) pairs per photo that NMS looks at


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """float32 [K, K]: intersection over union of every pair of x1, y1, x2, y2 boxes."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    w = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    h = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = w * h
    return inter / np.maximum(area[:, None] + area - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes greedy per-class NMS keeps, best first.

    One IoU matrix for all candidates (pairs of different classes never suppress each
    other); the greedy pass is then a walk over boolean rows, no per-pair Python work.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, classes = boxes[order], classes[order]
    overlaps = (iou_matrix(boxes) > iou) & (classes[:, None] == classes)
    np.fill_diagonal(overlaps, False)
    suppressed = np.zeros(len(order), bool)
    for i in range(len(order)):
        if not suppressed[i]:
            suppressed |= overlaps[i] & (np.arange(len(order)) > i)
    return order[~suppressed]


def choose(
    scores: np.ndarray, boxes: np.ndarray, floor: float, iou: float
) -> list[tuple[int, float, np.ndarray]]:
    """One photo's kept (class, score, box) from the graph's [A, C] scores and [A, 4] boxes."""
    flat = scores.ravel()
    top = np.argpartition(-flat, min(CANDIDATES, flat.size - 1))[:CANDIDATES]
    top = top[flat[top] >= floor]
    anchors, classes = np.divmod(top, scores.shape[1])
    keep = nms(boxes[anchors], flat[top], classes, iou)
    return [(int(classes[k]), float(flat[top[k]]), boxes[anchors[k]]) for k in keep]


def to_fractions(box: np.ndarray, frame: Letterbox) -> tuple[float, float, float, float]:
    """A box in letterbox pixels as fractions of the photo's width and height, clipped to 0..1."""
    x1, y1, x2, y2 = box
    fx = np.clip((np.array([x1, x2]) - frame.x0) / frame.width, 0.0, 1.0)
    fy = np.clip((np.array([y1, y2]) - frame.y0) / frame.height, 0.0, 1.0)
    return (
        round(float(fx[0]), 4),
        round(float(fy[0]), 4),
        round(float(fx[1]), 4),
        round(float(fy[1]), 4),
    )


def fitted(frame: Letterbox, stride: int) -> Letterbox:
    """The centred part of a square letterbox that holds the photo, each side rounded up to a
    multiple of stride: the same pixels the graph would see, less black around them."""
    side_y, side_x = frame.pixels.shape[:2]
    h = min(side_y, -(-frame.height // stride) * stride)
    w = min(side_x, -(-frame.width // stride) * stride)
    top = min(max(0, frame.y0 - (h - frame.height) // 2), side_y - h)
    left = min(max(0, frame.x0 - (w - frame.width) // 2), side_x - w)
    pixels = frame.pixels[top : top + h, left : left + w]
    return Letterbox(pixels, frame.x0 - left, frame.y0 - top, frame.width, frame.height)


def detection_tags(detections: Sequence[Detection], threshold: float) -> list[Tag]:
    """A photo's tags from its boxes: each path at its best box's score, best first.

    Works from stored detections as well, so refine re-decides them without decoding;
    `people` scores the second-best person, so it needs two confident ones.
    """
    best: dict[str, float] = {}
    persons: list[float] = []
    for d in detections:
        if d.score >= threshold:
            best[d.path] = max(best.get(d.path, 0.0), d.score)
            if d.path == PERSON:
                persons.append(d.score)
    tags = [Tag(path, score) for path, score in best.items()]
    if len(persons) >= 2:
        tags.append(Tag(PEOPLE, sorted(persons)[-2]))
    return sorted(tags, key=lambda t: -t.score)


def merge(classified: list[Tag], detected: list[Tag], max_tags: int) -> list[Tag]:
    """Classifier and detector tags as one list, best first, at most max_tags.

    The hierarchies are the same, so `dog` from either model is one path (the higher score
    wins), and a path is dropped when another chosen one lies below it (`animal` beside
    `animal|mammal|dog`); `people` is the exception, a fact of its own about the photo.
    """
    score: dict[str, float] = {}
    for tag in [*classified, *detected]:
        score[tag.path] = max(score.get(tag.path, 0.0), tag.score)
    below = {p.rsplit(LEVEL_SEP, 1)[0] for p in score if LEVEL_SEP in p}
    implied = {a for p in below for a in labels.ancestors(p)}
    kept = [Tag(p, s) for p, s in score.items() if p not in implied or p == PEOPLE]
    return sorted(kept, key=lambda t: -t.score)[:max_tags]


@dataclass
class Detector:
    """A loaded detector with its class -> tag path map and settings."""

    session: object  # onnxruntime.InferenceSession
    input_name: str
    input_size: int
    class_paths: list[str]  # tag path per output class
    ref: str  # catalogue name@version:sha256[:12], part of the model version
    cfg: DetectorConfig
    stride: int = 0  # > 0: the graph takes any multiple of it each way (see `fitted`)

    @property
    def name(self) -> str:
        """The catalogue name@version its detections carry."""
        return self.ref.split(":")[0]

    def run(self, frames: Sequence[Letterbox]) -> list[list[Detection]]:
        """Each photo's boxes from its letterboxed pixels, one batched inference per shape
        (one for a camera's landscape photos, one for its portrait ones)."""
        if self.stride:
            frames = [fitted(f, self.stride) for f in frames]
        found: list[list[Detection]] = [[] for _ in frames]
        for shape in dict.fromkeys(f.pixels.shape for f in frames):
            rows = [i for i, f in enumerate(frames) if f.pixels.shape == shape]
            pixels = np.stack([frames[i].pixels for i in rows])
            scores, boxes = self.session.run(["scores", "boxes"], {self.input_name: pixels})  # type: ignore[attr-defined]
            for k, i in enumerate(rows):
                found[i] = [
                    Detection(
                        self.class_paths[c], round(s, 4), to_fractions(box, frames[i]), self.name
                    )
                    for c, s, box in choose(scores[k], boxes[k], self.cfg.keep, self.cfg.iou)
                ]
        return found


def load(cfg: Config) -> Detector | None:
    """The configured detector, or None when it is switched off.

    Raises catalogue.ModelMissing when it is on but not installed; the caller decides.
    """
    if not cfg.detector.enabled:
        return None
    installed = catalogue.resolve(*catalogue.split_ref(cfg.detector.name))
    spec = installed.spec
    if spec.kind != "detector":
        raise InferenceError(f"detector.name {spec.name!r} is a {spec.kind}, not a detector")
    return Detector(
        infer.session(installed.path, cfg.model.providers),
        spec.input.name,
        spec.input.size,
        class_paths(labels.load(spec.labels)),
        f"{spec.ref}:{spec.sha256[:12]}",
        cfg.detector,
        spec.input.stride,
    )


def class_paths(labelmap: labels.LabelMap) -> list[str]:
    """The one tag path of each detector class (the most specific of its map's paths)."""
    out = []
    for c in range(labelmap.n_outputs):
        mine = [labelmap.paths[j] for j in np.flatnonzero(labelmap.membership[c])]
        leaves = [p for p in mine if not any(q.startswith(p + LEVEL_SEP) for q in mine)]
        if len(leaves) != 1:
            raise InferenceError(f"label map {labelmap.version}: a detector class needs one path")
        out.append(leaves[0])
    return out
