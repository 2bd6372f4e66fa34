"""Species specialists: the gate, findings and overruling on arrays, the species lists, and
the real iNaturalist bird model on real photos (owl.jpg is a Burrowing Owl, not a grouse)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from phototag import catalogue
from phototag.pipeline import decode, detect, infer, labels, specialist
from phototag.records import Detection, ModelVersion, Tag
from tests.albums import copy_photos, records, run
from tests.conftest import MODELS, keyword_sets, mwg_keywords, need_shared

OWL = "animal|bird|owl|Burrowing Owl"


def test_gate_takes_the_classifier_or_a_box_in_the_domain() -> None:
    paths = ["animal", "animal|bird", "animal|bird|grouse", "animal|mammal"]
    scores = np.array([[0.9, 0.1, 0.1, 0.8], [0.9, 0.6, 0.5, 0.0], [0.2, 0.0, 0.0, 0.2]])
    boxes = [
        [Detection("animal|bird", 0.64, (0, 0, 1, 1))],
        [],
        [Detection("animal", 0.9, (0, 0, 1, 1))],
    ]
    gate = specialist.gate_scores(scores.astype(np.float32), paths, boxes, "animal|bird")
    assert gate.tolist() == pytest.approx([0.64, 0.6, 0.0])
    insects = specialist.gate_scores(scores.astype(np.float32), paths, boxes, "animal|insect")
    assert insects.tolist() == [0.0, 0.0, 0.0]  # a domain the label map lacks gates nothing


def test_findings_are_the_best_named_species_above_the_floor() -> None:
    species = [
        "animal|bird|owl|Burrowing Owl",
        "animal|bird|jay|Blue Jay",
        "animal|bird|hawk|Red Hawk",
        "",
    ]
    probs = np.array([[0.8, 0.05, 0.1, 0.05], [0.1, 0.1, 0.1, 0.7]], np.float32)
    found = specialist.findings(probs, species, 0.08, "inat-bird@x")
    assert [(d.path, d.score) for d in found[0]] == [(species[0], 0.8), (species[2], 0.1)]
    assert all(d.box == specialist.WHOLE and d.model == "inat-bird@x" for d in found[0])
    assert [d.path for d in found[1]] == [species[0], species[1], species[2]]  # never background


def test_a_confident_species_overrules_other_guesses_in_its_domain_only() -> None:
    tags = [Tag("animal|bird|grouse", 0.66), Tag("place|meadow", 0.3), Tag("animal|bird", 0.6)]
    species = [Tag(OWL, 0.96)]
    out = specialist.overrule(tags, species, "animal|bird", 5)
    assert [t.path for t in out] == [OWL, "place|meadow"]
    assert specialist.overrule(tags, [], "animal|bird", 5) == tags  # nothing confident: no say
    stored = [
        Detection(OWL, 0.96, specialist.WHOLE, "inat-bird@v"),
        Detection("animal|bird", 0.64, (0, 0, 1, 1), "det"),
    ]
    assert specialist.species_tags(stored, "inat-bird@v", 0.5) == [Tag(OWL, 0.96)]
    assert specialist.species_tags(stored, "inat-bird@v", 0.97) == []


def test_species_lists_file_each_species_under_its_group() -> None:
    spec = importlib.util.spec_from_file_location(
        "make", Path(labels.__file__).parents[3] / "models" / "make_specieslist.py"
    )
    assert spec is not None and spec.loader is not None
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert (
        make.path("Megascops asio (Eastern Screech-Owl)", "animal|bird")
        == "animal|bird|owl|Eastern Screech-Owl"
    )
    assert make.path("Circus cyaneus hudsonius (Northern Harrier (American))", "animal|bird") == (
        "animal|bird|harrier|Northern Harrier (American)"
    )
    assert make.path("Syntomoides imaon ()", "animal|insect") == "animal|insect|Syntomoides imaon"
    assert make.path("background", "animal|bird") == ""
    for name, n in (("inat_bird", 965), ("inat_insect", 1022)):
        labelmap = labels.load(name)
        assert labelmap.n_outputs == n and labelmap.labels[-1] == "background"
        assert not labelmap.membership[-1].any()  # background files nothing


def test_the_catalogue_knows_the_specialists_and_their_domains() -> None:
    bird, insect = catalogue.find("inat-bird"), catalogue.find("inat-insect")
    assert (bird.kind, bird.domain, bird.input.size, bird.labels) == (
        "specialist",
        "animal|bird",
        224,
        "inat_bird",
    )
    assert (insect.domain, insect.labels) == ("animal|insect", "inat_insect")
    text = (Path(labels.__file__).parents[3] / "models" / "inat-bird@coral-quant.yaml").read_text()
    with pytest.raises(catalogue.CatalogueError, match="needs a domain"):
        catalogue.parse(text.replace("domain: animal|bird\n", ""), "x.yaml")


def test_the_specialists_are_part_of_the_model_version() -> None:
    old = ModelVersion("m@1", "a" * 64, "1", detector="d@1:abc")
    new = ModelVersion(
        "m@1", "a" * 12, "1", detector="d@1:abc", specialists="inat-bird@v:123,gate0.30"
    )
    assert ModelVersion.parse(str(new)) == new
    assert new.refresh(old) == "reanalyse" and new.refresh(new) == "current"


@pytest.fixture
def models(installed_model: Path) -> None:
    for name, model in (
        ("coco_nanodet", "coco-nanodet"),
        ("inat_bird", "inat-bird"),
        ("inat_insect", "inat-insect"),
    ):
        catalogue.import_file(need_shared(MODELS / f"{name}.onnx"), model)


def test_owl_gets_its_species_the_grouse_loses_and_refine_rescores_without_decoding(
    tmp_path: Path,
    models: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos = copy_photos(
        tmp_path / "photos", ["owl.jpg", "cat_720p.jpg", "bird.bmp", "dragonfly.bmp"]
    )
    status, _out, err = run(capsys, "tag", *map(str, photos))
    assert status == 0, err
    before = records(photos)
    owl, cat, chickadee, dragonfly = (before[p] for p in photos)
    assert OWL in [t.path for t in owl.auto]
    assert not any("grouse" in t.path for t in owl.auto)  # the classifier's top-1 lost
    assert "animal|bird|chickadee|Black-capped Chickadee" in [t.path for t in chickadee.auto]
    assert not any(d.model.startswith("inat-") for d in cat.detections)  # not gated in
    # the insect model names the dragonfly; the bird model, gated in by a detector box, is unsure
    assert "animal|insect|dasher|Thornbush Dasher" in [t.path for t in dragonfly.auto]
    assert not any(t.path.startswith("animal|bird") for t in dragonfly.auto)
    seen = keyword_sets([Path(r.written_to or r.path) for r in (owl, cat)])
    owl_fields = seen[Path(owl.written_to or owl.path)]
    assert {"owl", "Burrowing Owl"} <= set(owl_fields["Subject"]), owl_fields
    assert OWL in owl_fields["HierarchicalSubject"]
    assert "Burrowing Owl" in mwg_keywords(Path(owl.written_to or owl.path))
    assert not any("Owl" in k for k in seen[Path(cat.written_to or cat.path)]["Subject"])

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a threshold-only refine decoded or inferred")

    monkeypatch.setattr(decode, "load", no_decoding)
    monkeypatch.setattr(infer.Model, "run", no_decoding)
    monkeypatch.setattr(detect.Detector, "run", no_decoding)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("specialists:\n  threshold: 0.99\n")  # no species is that sure
    status, _out, err = run(capsys, "--config", str(cfg), "refine")
    assert status == 0 and "0 photos need re-analysis" in err, err
    after = records(photos)
    assert not any("Owl" in t.path for t in after[photos[0]].auto)
    assert any(d.path == OWL for d in after[photos[0]].detections)  # still stored for later
