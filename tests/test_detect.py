"""The object detector stage: NMS and box maths on arrays, and the real NanoDet on real photos."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag import catalogue
from phototag.config import Config
from phototag.pipeline import decode, detect, labels
from phototag.records import Detection, Letterbox, Tag
from tests.conftest import ROOT, SHARED, exiftool_keywords, need_shared

DETECTOR = SHARED / "models" / "coco_nanodet.onnx"


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]], float)
    iou = detect.iou_matrix(boxes)
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[0, 2] == 0.0
    assert iou[0, 3] == pytest.approx(50 / 150)


def test_nms_suppresses_overlaps_within_a_class_only() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.6, 0.9, 0.8, 0.5])
    classes = np.array([0, 0, 1, 0])
    kept = detect.nms(boxes, scores, classes, iou=0.6)
    assert list(kept) == [1, 2, 3]  # box 0 lost to box 1 (same class); box 2 is another class


def test_nms_matches_the_greedy_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (60, 2))], axis=1)
    scores, classes = rng.uniform(0, 1, 60), rng.integers(0, 3, 60)
    expected: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        same = [k for k in expected if classes[k] == classes[i]]
        if not same or detect.iou_matrix(boxes[[i, *same]])[0, 1:].max() <= 0.5:
            expected.append(int(i))
    assert list(detect.nms(boxes, scores, classes, 0.5)) == expected


def test_boxes_come_back_as_fractions_of_the_photo() -> None:
    frame = Letterbox(np.zeros((416, 416, 3), np.uint8), x0=0, y0=104, width=416, height=208)
    box = detect.to_fractions(np.array([104.0, 104.0, 416.0, 312.0]), frame)
    assert box == (0.25, 0.0, 1.0, 1.0)


def test_letterbox_keeps_the_aspect_and_centres_on_black() -> None:
    img = Image.new("RGB", (800, 400), (200, 100, 50))
    frame = decode.letterboxed(img, 416)
    assert (frame.width, frame.height, frame.x0, frame.y0) == (416, 208, 0, 104)
    assert frame.pixels[:104].max() == 0 and frame.pixels[312:].max() == 0
    assert tuple(frame.pixels[208, 208]) == (200, 100, 50)


def test_fitted_cuts_the_square_to_the_photo_on_multiples_of_the_stride() -> None:
    img = Image.new("RGB", (640, 480), (200, 100, 50))
    frame = decode.letterboxed(img, 416)  # 416x312 of photo, 52 rows of black above and below
    cut = detect.fitted(frame, 32)
    assert cut.pixels.shape == (320, 416, 3)
    assert (cut.x0, cut.y0, cut.width, cut.height) == (0, 4, 416, 312)
    assert np.array_equal(cut.pixels, frame.pixels[48:368])  # the same pixels, less black
    # a box keeps its place in the photo: the same fractions from either frame
    box = np.array([104.0, 52.0 + 78.0, 312.0, 52.0 + 234.0])
    assert detect.to_fractions(box - [0, 48, 0, 48], cut) == detect.to_fractions(box, frame)
    portrait = detect.fitted(decode.letterboxed(Image.new("RGB", (300, 400)), 416), 32)
    assert portrait.pixels.shape == (416, 320, 3) and portrait.x0 == 4
    square = decode.letterboxed(Image.new("RGB", (500, 500)), 416)
    assert detect.fitted(square, 32).pixels.shape == (416, 416, 3)


def test_draft_mode_keeps_the_letterbox_size_on_the_long_side_only() -> None:
    # 4000x3000 for a 224 stretch and a 416 letterbox: 416x312 is enough (1/8 scale decodes
    # 500x375), not 416x416 (which forces 1/4, four times the pixels)
    assert decode._draft_size((4000, 3000), 224, 416) == (416, 312)
    assert decode._draft_size((3000, 4000), 224, 416) == (312, 416)
    assert decode._draft_size((4000, 3000), 224, 0) == (224, 224)
    assert decode._draft_size((4000, 3000), 224, 1600) == (1600, 1200)
    img = Image.new("RGB", (4000, 3000))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG")
    jpeg = Image.open(buffer)
    jpeg.draft("RGB", decode._draft_size(jpeg.size, 224, 416))
    assert jpeg.size == (500, 375)


def test_tags_from_boxes_best_score_per_class_and_people_for_two_persons() -> None:
    found = [
        Detection("people|person", 0.9, (0, 0, 1, 1)),
        Detection("people|person", 0.5, (0, 0, 1, 1)),
        Detection("animal|mammal|dog", 0.4, (0, 0, 1, 1)),
        Detection("animal|mammal|dog", 0.6, (0, 0, 1, 1)),
        Detection("object|toy|kite", 0.2, (0, 0, 1, 1)),
    ]
    tags = {t.path: t.score for t in detect.detection_tags(found, threshold=0.35)}
    assert tags == {"people|person": 0.9, "animal|mammal|dog": 0.6, "people": 0.5}
    assert "people" not in {t.path for t in detect.detection_tags(found[:1], 0.35)}


def test_merge_is_one_tag_per_path_and_drops_implied_parents() -> None:
    classified = [Tag("animal|mammal|dog", 0.7), Tag("animal", 0.3)]
    detected = [Tag("animal|mammal|dog", 0.8), Tag("people|person", 0.6), Tag("people", 0.5)]
    merged = detect.merge(classified, detected, max_tags=5)
    assert [(t.path, t.score) for t in merged] == [
        ("animal|mammal|dog", 0.8),
        ("people|person", 0.6),
        ("people", 0.5),
    ]


def test_coco_classes_share_the_imagenet_hierarchy() -> None:
    coco, imagenet = labels.load("coco"), labels.load("imagenet")
    assert coco.n_outputs == 80
    shared = set(coco.paths) & set(imagenet.paths)
    assert {"animal|mammal|dog", "animal|mammal|cat", "food|pizza", "clothing|tie"} <= shared
    assert "people|person" in coco.paths


def test_the_catalogue_knows_the_detector_and_its_input() -> None:
    spec = catalogue.find("coco-nanodet")
    assert (spec.kind, spec.input.size, spec.labels) == ("detector", 416, "coco")
    assert catalogue.find("mobilenet-v2").kind == "classifier"


def phototag(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "phototag", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def int8_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The int8 detector as models/make_nanodet_int8.py derives it (about a minute on 2 cores)."""
    out = tmp_path_factory.mktemp("int8") / "coco_nanodet_int8.onnx"
    make = [sys.executable, str(ROOT / "models" / "make_nanodet_int8.py")]
    calibration = need_shared(SHARED / "coco256" / "train")
    subprocess.run([*make, str(need_shared(DETECTOR)), str(calibration), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def rect_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The any-shape detector as models/make_nanodet_rect.py derives it (a second)."""
    out = tmp_path_factory.mktemp("rect") / "coco_nanodet_rect.onnx"
    make = [sys.executable, str(ROOT / "models" / "make_nanodet_rect.py")]
    subprocess.run([*make, str(need_shared(DETECTOR)), str(out)], check=True)
    return out


@pytest.fixture(
    params=["float", "rect", pytest.param("int8", marks=pytest.mark.slow)],
    ids=["float", "rect", "int8"],
)
def detector_installed(
    request: pytest.FixtureRequest, installed_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The detector imported through the catalogue: the float file, or a derived one."""
    if request.param == "float":
        return catalogue.import_file(need_shared(DETECTOR), "coco-nanodet").path
    derived = request.getfixturevalue(f"{request.param}_detector")
    return catalogue.import_file(derived, "coco-nanodet").path


def test_the_any_shape_detector_runs_when_named_and_is_the_same_model_on_any_shape(
    rect_detector: Path, photos: Path
) -> None:
    installed = catalogue.import_file(rect_detector, "coco-nanodet")  # sha256 matched
    assert (installed.spec.ref, installed.spec.input.stride) == ("coco-nanodet@g-416-rect", 32)
    catalogue.import_file(need_shared(DETECTOR), "coco-nanodet")
    cfg = Config()
    square = detect.load(cfg)  # the square float one is preferred
    assert square is not None and square.ref.startswith("coco-nanodet@g-416:")
    assert square.stride == 0
    cfg.detector.name = "coco-nanodet@g-416-rect"
    rect = detect.load(cfg)
    assert rect is not None and rect.ref.startswith("coco-nanodet@g-416-rect:")
    frames = [decode.load(photos / n, 224, 10**9, 416).letterbox for n in ("pets.jpg", "owl.jpg")]
    same = {"input": np.stack([f.pixels for f in frames if f is not None])}  # 416x416
    for x, y in zip(square.session.run(None, same), rect.session.run(None, same), strict=True):  # type: ignore[attr-defined]
        assert np.array_equal(x, y)  # bit-identical on the square
    # cut to the photos' shapes (416x352, 416x320: two inferences), the same objects found
    for x, y in zip(square.run(frames), rect.run(frames), strict=True):  # type: ignore[arg-type]
        confident = sorted(d.path for d in x if d.score >= 0.5)  # pets: 2 dogs; owl: a bird
        assert confident and confident == sorted(d.path for d in y if d.score >= 0.5)
        best_x, best_y = x[0], y[0]  # best first
        assert best_x.path == best_y.path and abs(best_x.score - best_y.score) < 0.05
        assert np.allclose(best_x.box, best_y.box, atol=0.02)


@pytest.fixture
def people_photos(tmp_path: Path, photos: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("face.jpg", "grace_hopper.bmp", "kite_and_cold.jpg", "pets.jpg"):
        shutil.copyfile(photos / name, folder / name)
    return folder


def test_people_and_dogs_are_tagged_boxed_and_written(
    detector_installed: Path, people_photos: Path
) -> None:
    result = phototag("tag", "--json", *sorted(map(str, people_photos.iterdir())))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    found = {Path(d["path"]).name: d for d in lines if "summary" not in d}
    for name in ("face.jpg", "grace_hopper.bmp", "kite_and_cold.jpg"):
        assert "person" in [t["tag"] for t in found[name]["tags"]], found[name]
    assert "dog" in [t["tag"] for t in found["pets.jpg"]["tags"]]
    assert "people" in [t["tag"] for t in found["face.jpg"]["tags"]]  # four people
    dogs = [d for d in found["pets.jpg"]["detections"] if d["tag"] == "animal|mammal|dog"]
    assert len(dogs) == 2 and all(d["score"] > 0.6 for d in dogs)
    for d in dogs:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
    left, right = sorted(dogs, key=lambda d: d["box"][0])
    assert left["box"][2] <= right["box"][2]  # two dogs side by side, not one box twice
    # exiftool, an independent reader, sees the tag, and `dog` from both models is one keyword
    keywords = exiftool_keywords(Path(found["pets.jpg"]["written_to"]))
    assert keywords["Subject"].count("dog") == 1
    assert "animal|mammal|dog" in keywords["HierarchicalSubject"]
    assert (
        "people|person"
        in exiftool_keywords(Path(found["face.jpg"]["written_to"]))["HierarchicalSubject"]
    )
    text = phototag("tag", "-n", str(people_photos / "pets.jpg"))
    assert "seen: 2 dog" in text.stdout


def test_without_the_detector_installed_the_classifier_alone_tags(
    installed_model: Path, people_photos: Path
) -> None:
    result = phototag("tag", "--json", "-n", str(people_photos / "pets.jpg"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    found = json.loads(result.stdout)
    assert "dog" in [t["tag"] for t in found["tags"]] and found["detections"] == []
