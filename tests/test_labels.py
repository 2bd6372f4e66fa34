"""The ImageNet label map and the path-scoring maths."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phototag.pipeline import labels
from phototag.pipeline.labels import LabelMap, LabelMapError

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared"
TSV = ROOT / "models" / "imagenet_tags.tsv"
TOP_LEVELS = {
    "animal",
    "plant",
    "food",
    "place",
    "person",
    "architecture",
    "vehicle",
    "clothing",
    "object",
}
# WordNet's abstract nodes: no photographer searches for these.
ABSTRACT = {
    "entity",
    "physical entity",
    "whole",
    "artifact",
    "instrumentality",
    "organism",
    "living thing",
    "vertebrate",
    "chordate",
    "placental",
    "device",
    "covering",
    "structure",
    "equipment",
    "implement",
    "conveyance",
    "commodity",
}


@pytest.fixture(scope="module")
def imagenet() -> LabelMap:
    return labels.load()


def own_paths(labelmap: LabelMap, label: str) -> list[str]:
    """The paths a class is filed under: what `select` gives for a one-hot photo of it."""
    [index] = [i for i, raw in enumerate(labelmap.labels) if raw.split(", ")[0] == label]
    onehot = np.zeros(labelmap.n_outputs, dtype=np.float32)
    onehot[index] = 1.0
    [tags] = labels.select(labels.path_scores(onehot, labelmap), labelmap, 0.999, 10)
    return sorted(path for path, _ in tags)


def test_map_covers_every_class_in_model_order(imagenet: LabelMap) -> None:
    lines = [ln for ln in TSV.read_text().splitlines() if not ln.startswith("#")]
    wnids = (ROOT / "models" / "imagenet_wnids.txt").read_text().split()
    assert [ln.split("\t")[1] for ln in lines] == ["", *wnids]
    assert imagenet.labels == (ROOT / "models" / "imagenet_labels.txt").read_text().splitlines()
    assert imagenet.version == "1"
    assert imagenet.membership.shape == (1001, len(imagenet.paths))
    assert imagenet.membership[0].sum() == 0  # background has no tags
    assert (imagenet.membership[1:].sum(axis=1) >= 2).all()  # a top level and below


def test_paths_are_plain_words_two_to_four_levels(imagenet: LabelMap) -> None:
    assert {p for p in imagenet.paths if "|" not in p} == TOP_LEVELS
    for path in imagenet.paths:
        levels = path.split("|")
        assert len(levels) <= 4, path
        assert all(re.fullmatch(r"[a-z0-9' -]+", lv) for lv in levels), path
        assert not ABSTRACT & set(levels), path
    # No class is filed under a bare top level.
    leaves = [p for p in imagenet.paths if not any(q.startswith(p + "|") for q in imagenet.paths)]
    assert all("|" in p for p in leaves)


@pytest.mark.parametrize(
    ("classes", "path"),
    [
        (["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"], "animal|mammal|cat"),
        (["macaw", "African grey", "sulphur-crested cockatoo", "lorikeet"], "animal|bird|parrot"),
        (
            ["golden retriever", "Chihuahua", "pug", "Siberian husky", "Cardigan"],
            "animal|mammal|dog",
        ),
        (["hotdog"], "food|hot dog"),
        (["seashore"], "place|beach"),
        (["daisy"], "plant|flower|daisy"),
        (["military uniform"], "clothing|uniform"),
        (["cab"], "vehicle|car|taxi"),
    ],
)
def test_required_examples(imagenet: LabelMap, classes: list[str], path: str) -> None:
    for cls in classes:
        assert own_paths(imagenet, cls) == [path], cls


def test_every_dog_breed_is_a_dog_and_nothing_else_is(imagenet: LabelMap) -> None:
    dog = imagenet.paths.index("animal|mammal|dog")
    members = np.flatnonzero(imagenet.membership[:, dog])
    # ImageNet's 118 dog classes are outputs 152 (Chihuahua) .. 269 (Mexican hairless).
    assert members.tolist() == list(range(152, 270))


def test_path_scores_add_up_the_classes_below(imagenet: LabelMap) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(1001), size=6).astype(np.float32)
    scores = labels.path_scores(probs, imagenet)
    assert scores.shape == (6, len(imagenet.paths))
    # Independently of the matrices: a path sums the classes whose TSV paths start with it.
    rows = [ln.split("\t") for ln in TSV.read_text().splitlines() if not ln.startswith("#")]
    for path in ["animal|mammal|cat", "animal", "object|electronics", "vehicle|car|taxi"]:
        idx = [
            int(r[0])
            for r in rows
            if any(p == path or p.startswith(path + "|") for p in r[3].split(";") if p)
        ]
        expected = probs[:, idx].sum(axis=1)
        np.testing.assert_allclose(scores[:, imagenet.paths.index(path)], expected, rtol=1e-5)
    # Every class sits under exactly one top level, so top levels share all but background.
    top = [imagenet.paths.index(t) for t in sorted(TOP_LEVELS)]
    np.testing.assert_allclose(scores[:, top].sum(axis=1), 1 - probs[:, 0], rtol=1e-5)


@pytest.fixture
def tiny() -> LabelMap:
    return labels.build(
        "t1",
        ["background", "tabby", "egyptian cat", "macaw", "sports car"],
        [[], ["animal|mammal|cat"], ["animal|mammal|cat"], ["animal|bird|parrot"], ["vehicle|car"]],
    )


def test_build_adds_every_ancestor(tiny: LabelMap) -> None:
    assert tiny.paths == [
        "animal",
        "animal|bird",
        "animal|bird|parrot",
        "animal|mammal",
        "animal|mammal|cat",
        "vehicle",
        "vehicle|car",
    ]
    assert tiny.membership[1].tolist() == [1, 0, 0, 1, 1, 0, 0]
    assert tiny.membership[0].sum() == 0


def test_select_sums_classes_and_prefers_descendants(tiny: LabelMap) -> None:
    probs = np.array([[0.0, 0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    scores = labels.path_scores(probs, tiny)
    [tags] = labels.select(scores, tiny, threshold=0.5, max_tags=5)
    # No single cat class reaches 0.5, their sum does; animal (0.9) and mammal are implied.
    assert [p for p, _ in tags] == ["animal|mammal|cat"]
    assert tags[0][1] == pytest.approx(0.7)


def test_select_keeps_an_ancestor_when_no_descendant_qualifies(tiny: LabelMap) -> None:
    probs = np.array([[0.0, 0.15, 0.15, 0.3, 0.4]], dtype=np.float32)
    [tags] = labels.select(labels.path_scores(probs, tiny), tiny, threshold=0.35, max_tags=5)
    assert [(p, round(s, 3)) for p, s in tags] == [("animal", 0.6), ("vehicle|car", 0.4)]


def test_select_threshold_and_max_tags_per_photo(tiny: LabelMap) -> None:
    probs = np.array(
        [
            [0.0, 0.05, 0.05, 0.5, 0.4],  # parrot and car both qualify at 0.3
            [0.1, 0.1, 0.1, 0.1, 0.1],  # nothing specific; animal 0.3
            [1.0, 0.0, 0.0, 0.0, 0.0],  # background only
        ],
        dtype=np.float32,
    )
    scores = labels.path_scores(probs, tiny)
    got = labels.select(scores, tiny, threshold=0.3, max_tags=5)
    assert [[p for p, _ in row] for row in got] == [
        ["animal|bird|parrot", "vehicle|car"],
        ["animal"],
        [],
    ]
    assert [[p for p, _ in row] for row in labels.select(scores, tiny, 0.3, 1)] == [
        ["animal|bird|parrot"],
        ["animal"],
        [],
    ]
    assert labels.select(scores, tiny, 0.3, 0) == [[], [], []]
    assert labels.select(scores, tiny, 0.95, 5) == [[], [], []]


def test_bad_input_is_a_clear_error(tiny: LabelMap) -> None:
    with pytest.raises(LabelMapError, match="5 outputs"):
        labels.path_scores(np.zeros((2, 1001), dtype=np.float32), tiny)
    with pytest.raises(LabelMapError, match="paths"):
        labels.select(np.zeros((1, 3)), tiny, 0.2, 5)
    with pytest.raises(LabelMapError, match="threshold"):
        labels.select(np.zeros((1, 7)), tiny, 0.0, 5)
    with pytest.raises(LabelMapError, match="max_tags"):
        labels.select(np.zeros((1, 7)), tiny, 0.2, -1)
    with pytest.raises(LabelMapError, match="no label map named 'nonesuch'"):
        labels.load("nonesuch")
    with pytest.raises(LabelMapError, match="bad label map name"):
        labels.load("../x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0\t\tbackground\t\n", "no '# version:' line"),
        ("# version: 2\n", "no classes"),
        ("# version: 2\n0\t\tbackground\n", "line 2: 3 fields"),
        ("# version: 2\n0\t\tbackground\t\n2\tn1\tcat\ta|b\n", "line 3: index '2', expected 1"),
        ("# version: 2\n0\t\tcat\ta||b\n", "empty level"),
    ],
)
def test_parse_rejects_malformed_maps(text: str, message: str) -> None:
    with pytest.raises(LabelMapError, match=re.escape(message)):
        labels.parse(text, source="x.tsv")


def test_generator_is_deterministic_and_matches_the_committed_map(tmp_path: Path) -> None:
    wordnet = Path("/usr/share/wordnet/data.noun")
    if not wordnet.is_file():
        pytest.skip(f"WordNet 3.0 noun data not installed at {wordnet}")
    out = tmp_path / "tags.tsv"
    subprocess.run(
        [sys.executable, str(ROOT / "models" / "make_labelmap.py"), "--out", str(out)],
        check=True,
    )
    assert out.read_text() == TSV.read_text()


def test_real_model_photos_get_the_expected_tags(imagenet: LabelMap) -> None:
    model = SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx"
    if not model.is_file():
        pytest.skip(f"reference model and photos not present at {SHARED}")
    import onnxruntime as ort
    from PIL import Image

    expected = {
        "cat_720p.jpg": ("cat",),
        "parrot.jpg": ("parrot", "bird"),
        "hot_dog.jpg": ("hot dog",),
        "kite_and_cold.jpg": ("beach",),
    }
    pixels = np.stack(
        [
            np.asarray(
                Image.open(SHARED / "photos" / name)
                .convert("RGB")
                .resize((224, 224), Image.Resampling.BILINEAR)
            )
            for name in expected
        ]
    )
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    [probs] = session.run(["probabilities"], {"input": pixels})
    chosen = labels.select(labels.path_scores(probs, imagenet), imagenet, 0.2, 5)
    for (name, wanted), tags in zip(expected.items(), chosen, strict=True):
        levels = {level for path, _ in tags for level in path.split("|")}
        assert levels & set(wanted), (name, tags)
