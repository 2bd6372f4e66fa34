"""Faces in a photo: BlazeFace finds them, FaceRes describes each aligned face.

The detector sees the whole photo letterboxed to 256x256; each face it keeps is cut from
the photo itself (not the 256 copy), aligned by a similarity transform of its eyes, nose
and mouth onto the ArcFace template, and embedded. Cosine similarity of two embeddings
then compares identities (../shared/models/README.md: same face >= 0.77 under edits,
different faces <= 0.68). The maths (letterbox, weighted NMS, the transform) are pure
functions on arrays; `FaceModels` holds the two ONNX sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from phototag import catalogue
from phototag.config import Config
from phototag.pipeline.decode import letterboxed
from phototag.pipeline.detect import iou_matrix
from phototag.pipeline.infer import session
from phototag.records import FaceRecord

DETECT_SIZE = 256
EMBED_SIZE = 224
EMBED_DIM = 1024
DETECTOR, EMBEDDER = "blazeface", "faceres"  # catalogue names
CARRY_IOU = 0.5  # a face found again where it was keeps what the user said of it
MIN_SCORE = 0.75  # the README's measured threshold: animal faces stay below it
MIN_FACE_PX = 24  # smaller faces (in the photo's pixels) are too blurred to recognise
NMS_IOU = 0.3
# ArcFace's 112x112 template (eyes, nose tip, mouth centre), zoomed out by 0.8 about its
# centre and scaled to the embedder's 224x224 input, as the model's README prescribes.
TEMPLATE = (
    (np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [56.14, 92.28]]) - 56.0) * 0.8 + 56.0
) * 2.0


@dataclass(frozen=True)
class Face:
    """One face: where it is (fractions of the photo's width and height) and who it looks like."""

    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    landmarks: tuple[tuple[float, float], ...]  # 6 points: eyes, nose, mouth, ears
    embedding: np.ndarray  # float32 [1024], L2-normalised


def weighted_nms(
    scores: np.ndarray, boxes: np.ndarray, points: np.ndarray, threshold: float, overlap: float
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the candidates
    it suppresses (boxes and keypoints), with its best member's score."""
    keep = np.flatnonzero(scores >= threshold)
    keep = keep[np.argsort(-scores[keep])]
    faces = []
    while keep.size:
        group = keep[iou_matrix(boxes[keep])[0] > overlap]  # row 0: the best candidate
        weights = scores[group] / scores[group].sum()
        faces.append(
            (
                float(scores[keep[0]]),
                np.tensordot(weights, boxes[group], axes=1),
                np.tensordot(weights, points[group], axes=1),
            )
        )
        keep = np.setdiff1d(keep, group, assume_unique=True)
        keep = keep[np.argsort(-scores[keep])]
    return faces


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift taking `src` points nearest to `dst` (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    matrix = scale * rotation
    return np.hstack([matrix, (mu_d - matrix @ mu_s)[:, None]])


def aligned_crop(image: Image.Image, points: np.ndarray) -> np.ndarray:
    """The face whose eyes, nose and mouth are `points` (pixels of the RGB `image`), aligned,
    224x224."""
    forward = np.vstack([similarity_transform(points[:4], TEMPLATE), [0, 0, 1]])
    inverse = np.linalg.inv(forward)[:2].ravel()  # PIL maps output pixels back to input ones
    crop = image.transform(
        (EMBED_SIZE, EMBED_SIZE), Image.Transform.AFFINE, tuple(inverse), Image.Resampling.BILINEAR
    )
    return np.asarray(crop)


class FaceModels:
    """The face detector and embedder, each one ONNX Runtime session, loaded once.

    `ref` names both (catalogue refs and sha256[:12]), stored with every face; `store` is the
    vector store of its embeddings, one per embedder, since another's vectors do not compare.
    """

    def __init__(
        self,
        detector: Path,
        embedder: Path,
        providers: Literal["auto", "cpu", "cuda"] = "auto",
        ref: str = "",
        store: str = "faces",
    ) -> None:
        self.detector = session(detector, providers)
        self.embedder = session(embedder, providers)
        self.ref = ref
        self.store = store

    def find(self, image: Image.Image, min_score: float = MIN_SCORE) -> list[Face]:
        """Every face in `image` (EXIF orientation already applied) scoring at least `min_score`."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        # A box filter first: resizing a 12 MP picture straight to 256 px costs 100 ms.
        box = letterboxed(image.reduce(max(1, max(image.size) // (2 * DETECT_SIZE))), DETECT_SIZE)
        scale = box.width / image.width
        scores, boxes, points = self.detector.run(
            ["scores", "boxes", "keypoints"], {"input": box.pixels[None]}
        )
        found = weighted_nms(scores[0], boxes[0], points[0], min_score, NMS_IOU)
        width, height = image.size
        offset = np.array([box.x0, box.y0])
        kept = []
        for score, box, kps in found:
            box_px = (box.reshape(2, 2) - offset) / scale
            kps_px = (kps - offset) / scale
            if min(box_px[1] - box_px[0]) < MIN_FACE_PX:
                continue
            kept.append((score, box_px, kps_px))
        if not kept:
            return []
        crops = np.stack([aligned_crop(image, kps) for _, _, kps in kept])
        (vectors,) = self.embedder.run(["embedding"], {"input": crops})
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        size = np.array([width, height])
        return [
            Face(
                score=score,
                box=tuple(np.clip(box_px / size, 0, 1).ravel().round(5).tolist()),
                landmarks=tuple(tuple(p) for p in (kps_px / size).round(5).tolist()),
                embedding=vec.astype(np.float32),
            )
            for (score, box_px, kps_px), vec in zip(kept, vectors, strict=True)
        ]


def load(cfg: Config) -> FaceModels | None:
    """The installed face models when `faces.enabled`, else None.

    Raises catalogue.ModelMissing when faces are on but a model is not installed; the caller
    says so in one line and tags without faces.
    """
    if not cfg.faces.enabled:
        return None
    detector, embedder = catalogue.resolve(DETECTOR, None), catalogue.resolve(EMBEDDER, None)
    ref = "+".join(f"{m.spec.ref}:{m.spec.sha256[:12]}" for m in (detector, embedder))
    return FaceModels(
        detector.path,
        embedder.path,
        cfg.model.providers,
        ref,
        store_of(embedder),
    )


def store_of(embedder: catalogue.InstalledModel) -> str:
    """The vector store of one embedder's descriptors (another's do not compare)."""
    return f"faces-{embedder.spec.sha256[:12]}"


def installed_store() -> str:
    """The store of the installed embedder, for commands that read faces without finding any."""
    return store_of(catalogue.resolve(EMBEDDER, None))


def records(
    photo: str, found: list[Face], models: FaceModels, old: list[FaceRecord]
) -> list[FaceRecord]:
    """Index records of the faces just found in a photo, numbered from 1.

    A face found again where one was (IoU >= CARRY_IOU with an old box) keeps its name, the
    name's source and the user's negatives, so re-tagging never loses a naming.
    """
    out = []
    boxes = np.array([f.box for f in old]) if old else np.zeros((0, 4))
    for number, face in enumerate(found, 1):
        new = FaceRecord(
            photo, number, round(face.score, 4), face.box, face.landmarks, models.ref, models.store
        )
        if len(boxes):
            overlap = iou_matrix(np.vstack([np.array(face.box), boxes]))[0, 1:]
            j = int(overlap.argmax())
            if overlap[j] >= CARRY_IOU:
                new.name, new.source = old[j].name, old[j].source
                new.similarity, new.not_names = old[j].similarity, old[j].not_names
        out.append(new)
    return out
