"""Faces: detection, alignment and embedding on real photos; naming by neighbour vote."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, SHARED, need_shared
from PIL import Image, ImageOps

from phototag.learn import faces as naming
from phototag.pipeline import faces

FACES = SHARED / "faces"


@pytest.fixture(scope="module")
def models() -> faces.FaceModels:
    return faces.FaceModels(
        need_shared(MODELS / "face_blazeface.onnx"), need_shared(MODELS / "face_faceres.onnx")
    )


def load(path: Path) -> Image.Image:
    image = Image.open(path)
    image.draft("RGB", (1600, 1600))
    return ImageOps.exif_transpose(image).convert("RGB")


def test_similarity_transform_recovers_a_known_one() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[10.0, 20.0], [40.0, 22.0], [25.0, 35.0], [26.0, 50.0]])
    found = faces.similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(found, np.hstack([rot, shift[:, None]]), atol=1e-9)


def test_weighted_nms_merges_overlaps_and_keeps_the_best_score() -> None:
    scores = np.array([0.9, 0.8, 0.95, 0.1])
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.0]])
    points = np.zeros((4, 6, 2))
    found = faces.weighted_nms(scores, boxes, points, threshold=0.5, overlap=0.3)
    assert [round(s, 2) for s, _, _ in found] == [0.95, 0.9]
    merged = found[1][1]
    np.testing.assert_allclose(merged, (0.9 * boxes[0] + 0.8 * boxes[1]) / 1.7)


def test_named_people_are_recognised_in_unseen_photos_and_strangers_stay_nameless(
    models: faces.FaceModels,
) -> None:
    need_shared(FACES)
    named, names = [], []
    for path in sorted((FACES / "train").iterdir()):
        found = models.find(load(path))
        assert len(found) == 1, path.name  # one face each, as the README says
        named.append(found[0].embedding)
        names.append(path.stem.rsplit("_", 1)[0])
    named_m = np.stack(named)
    threshold = naming.calibrate(named_m, names)
    assert naming.THRESHOLD_RANGE[0] <= threshold <= naming.THRESHOLD_RANGE[1]

    right = wrong = missed = 0
    with open(FACES / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            people = set(row["people"].split(";"))
            found = models.find(load(FACES / row["file"]))
            proposals = naming.propose(
                np.stack([x.embedding for x in found]),
                named_m,
                names,
                threshold,
                photos=[row["file"]] * len(found),
            )
            given = {p.name for p in proposals if p.name}
            right += len(given & people)
            wrong += len(given - people)
            missed += len(people - given)
    precision, recall = right / (right + wrong), right / (right + missed)
    print(f"names on test faces: precision {precision:.2f}, recall {recall:.2f}")
    assert (precision, recall) == (1.0, 1.0)

    strangers = models.find(load(SHARED / "photos" / "face.jpg"))
    assert len(strangers) == 4
    proposals = naming.propose(
        np.stack([x.embedding for x in strangers]), named_m, names, threshold
    )
    assert [p.name for p in proposals] == [None] * 4


def test_animal_faces_stay_below_the_face_threshold(models: faces.FaceModels) -> None:
    for name in ("pets.jpg", "cat_720p.jpg"):
        assert models.find(load(need_shared(SHARED / "photos" / name))) == []


def test_boxes_are_fractions_around_the_landmarks(models: faces.FaceModels) -> None:
    (face,) = models.find(load(need_shared(SHARED / "photos" / "grace_hopper.bmp")))
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
    for x, y in face.landmarks[:4]:  # eyes, nose, mouth lie inside the box
        assert x1 < x < x2 and y1 < y < y2


def test_votes_respect_negatives_and_one_name_per_photo() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    named, names = np.stack([a, b]), ["Ann", "Bob"]
    close_to_a = np.stack([a * 0.99 + b * 0.14, a * 0.97 + b * 0.24])
    close_to_a /= np.linalg.norm(close_to_a, axis=1, keepdims=True)
    one_photo = naming.propose(close_to_a, named, names, 0.6, photos=["p", "p"])
    assert [p.name for p in one_photo] == ["Ann", None]  # the better match keeps the name
    two_photos = naming.propose(close_to_a, named, names, 0.6, photos=["p", "q"])
    assert [p.name for p in two_photos] == ["Ann", "Ann"]
    refused = naming.propose(close_to_a[:1], named, names, 0.6, not_names=[{"Ann"}])
    assert refused[0].name is None  # Bob is below the threshold, Ann is refused
    assert naming.propose(close_to_a, named[:0], [], 0.6)[0].name is None


def test_calibration_falls_back_without_both_kinds_of_pair() -> None:
    one = np.eye(3)
    assert naming.calibrate(one, ["a", "b", "c"]) == naming.DEFAULT_THRESHOLD
    assert naming.calibrate(one[:2], ["a", "a"]) == naming.DEFAULT_THRESHOLD


def test_groups_grow_incrementally_and_new_people_start_new_groups() -> None:
    a, b, c = np.eye(3)
    near = lambda v, w: naming.unit(v + 0.2 * w)  # noqa: E731
    first = naming.assign_groups(np.stack([a, near(a, b), b]), np.zeros((0, 3)), 0.8)
    assert first.tolist() == [0, 0, 1]
    centroids = np.stack([a + near(a, b), b])  # the two groups so far (sums: means scaled)
    second = naming.assign_groups(np.stack([near(b, c), c, near(c, a), a]), centroids, 0.8)
    assert second.tolist() == [1, 2, 2, 0]  # joins b's group; c starts group 2, its twin joins
    assert naming.assign_groups(np.zeros((0, 3)), centroids, 0.8).size == 0


def test_a_name_the_photo_already_has_is_not_proposed_again() -> None:
    named, names = np.eye(2), ["Ann", "Bob"]
    face = naming.unit(np.array([[1.0, 0.1]]))
    assert naming.propose(face, named, names, 0.6, photos=["p"])[0].name == "Ann"
    taken = {("p", "Ann")}
    assert naming.propose(face, named, names, 0.6, photos=["p"], taken=taken)[0].name is None
