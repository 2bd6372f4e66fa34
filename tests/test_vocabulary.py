"""The user's vocabulary: exclusions, generic roots, renames and per-tag thresholds, applied
to every model's tags, and re-applied by refine from stored outputs without decoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from phototag import catalogue
from phototag.config import TagsConfig
from phototag.pipeline import decode, detect, infer, tagger, vocabulary
from phototag.pipeline.vocabulary import Vocabulary
from phototag.records import Tag
from tests.albums import copy_photos, records, run
from tests.conftest import MODELS, keyword_sets, need_shared


def paths(tags: list[Tag]) -> list[str]:
    return [t.path for t in tags]


def apply(tags: list[Tag], **settings: object) -> list[str]:
    return paths(vocabulary.apply(tags, Vocabulary(TagsConfig(**settings))))  # type: ignore[arg-type]


def test_exclude_by_path_drops_a_subtree_and_by_word_every_path_with_it() -> None:
    tags = [Tag("animal|mammal|dog", 0.9), Tag("clothing|tie", 0.5), Tag("food|pizza", 0.4)]
    assert apply(tags, exclude=["animal|mammal"]) == ["clothing|tie", "food|pizza"]
    assert apply(tags, exclude=["Clothing", "pizza"]) == ["animal|mammal|dog"]
    assert apply(tags, exclude=["animal|cat"]) == paths(tags)


def test_generic_roots_alone_are_dropped_but_their_children_stay() -> None:
    tags = [Tag("object", 0.6), Tag("place|beach", 0.5), Tag("place", 0.3)]
    assert apply(tags) == ["place|beach"]
    assert apply(tags, generic=[]) == paths(tags)


def test_rename_by_path_or_word_and_merging_two_into_one() -> None:
    rename = {"person": "People", "food|hot dog": "food|snack|hot dog"}
    tags = [Tag("people|person", 0.8), Tag("person", 0.3), Tag("food|hot dog", 0.7)]
    out = vocabulary.apply(tags, Vocabulary(TagsConfig(rename=rename)))
    assert [(t.path, t.score) for t in out] == [("People", 0.8), ("food|snack|hot dog", 0.7)]
    assert apply([Tag("food|hot dog", 0.7)], exclude=["snack"]) == ["food|hot dog"]
    assert (
        apply([Tag("animal|mammal|dog", 0.9)], rename={"dog": "pets|dog"}, exclude=["pets"]) == []
    )


def test_per_tag_thresholds() -> None:
    tags = [Tag("object|toy|kite", 0.4), Tag("beach", 0.3)]
    assert apply(tags, thresholds={"kite": 0.5}) == ["beach"]


def test_a_translation_table_translates_every_level(tmp_path: Path) -> None:
    table = tmp_path / "de.tsv"
    table.write_text("# English -> German\nanimal\tTier\nmammal\tSäugetier\ndog\tHund\n")
    vocab = Vocabulary.load(TagsConfig(translations=str(table), rename={"cat": "pets|cat"}))
    out = vocabulary.apply([Tag("animal|mammal|dog", 0.9), Tag("animal|mammal|cat", 0.8)], vocab)
    assert paths(out) == ["Tier|Säugetier|Hund", "pets|cat"]
    table.write_text("dog Hund\n")
    with pytest.raises(vocabulary.VocabularyError, match="line 1: expected word<TAB>translation"):
        Vocabulary.load(TagsConfig(translations=str(table)))
    with pytest.raises(vocabulary.VocabularyError, match="cannot read"):
        Vocabulary.load(TagsConfig(translations=str(tmp_path / "missing.tsv")))


def test_every_vocabulary_setting_changes_the_settings_hash(tmp_path: Path) -> None:
    base = tagger.settings_hash(tagger.TaggingConfig())
    assert tagger.settings_hash(tagger.TaggingConfig(), vocab=Vocabulary()) == base
    table = tmp_path / "de.tsv"
    table.write_text("dog\tHund\n")
    variants = [
        Vocabulary(TagsConfig(exclude=["dog"])),
        Vocabulary(TagsConfig(generic=[])),
        Vocabulary(TagsConfig(rename={"dog": "Hund"})),
        Vocabulary(TagsConfig(thresholds={"dog": 0.5})),
        Vocabulary.load(TagsConfig(translations=str(table))),
    ]
    hashes = {tagger.settings_hash(tagger.TaggingConfig(), vocab=v) for v in variants}
    assert len(hashes) == len(variants) and base not in hashes
    table.write_text("dog\tChien\n")  # a new table is a new version
    assert (
        tagger.settings_hash(
            tagger.TaggingConfig(), vocab=Vocabulary.load(TagsConfig(translations=str(table)))
        )
        not in hashes
    )


@pytest.fixture
def models(installed_model: Path) -> None:
    catalogue.import_file(need_shared(MODELS / "coco_nanodet.onnx"), "coco-nanodet")


def test_excluded_tag_never_reaches_a_file(
    tmp_path: Path, models: None, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = copy_photos(tmp_path / "photos", ["kite_and_cold.jpg", "face.jpg"])
    cfg = tmp_path / "config.yaml"
    cfg.write_text("tags:\n  exclude: [kite, people]\n")
    status, out, err = run(capsys, "tag", "-n", str(photos[0]))
    assert status == 0 and "kite 0." in out, err  # the detector does see the kites
    status, out, err = run(capsys, "--config", str(cfg), "tag", *map(str, photos))
    assert status == 0, err
    assert not [word for word in ("kite 0.", "people 0.", "person 0.") if word in out], out
    written = [Path(r.written_to or p) for p, r in records(photos).items()]
    for name, fields in keyword_sets(written).items():
        for field, words in fields.items():
            levels = {level.casefold() for w in words for level in w.split("|")}
            assert not {"kite", "people"} & levels, (name, field, words)
        assert fields["Subject"], name  # other tags are still written (beach, ...)
        assert not {"object", "place", "clothing"} & set(fields["Subject"]), fields  # generic
        assert not {"object", "place", "clothing"} & set(fields["Keywords"]), fields


def test_rename_applies_and_refine_reapplies_it_without_decoding(
    tmp_path: Path,
    models: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos = copy_photos(tmp_path / "photos", ["face.jpg", "pets.jpg", "grace_hopper.bmp"])
    status, _out, err = run(capsys, "tag", *map(str, photos))
    assert status == 0, err
    before = records(photos)
    assert all("people|person" in paths(before[p].auto) for p in (photos[0], photos[2]))
    assert len(before[photos[1]].detections) >= 2  # the boxes refine will re-score from

    cfg = tmp_path / "config.yaml"
    cfg.write_text('tags:\n  rename: {person: People, dog: "pets|dog"}\n')

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a vocabulary-only refine decoded or inferred")

    monkeypatch.setattr(decode, "load", no_decoding)
    monkeypatch.setattr(decode, "decode", no_decoding)
    monkeypatch.setattr(infer.Model, "run", no_decoding)
    monkeypatch.setattr(detect.Detector, "run", no_decoding)
    status, _out, err = run(capsys, "--config", str(cfg), "refine")
    assert status == 0, err
    assert "0 photos need re-analysis" in err and "3 need only re-scoring" in err
    after = records(photos)
    assert "People" in paths(after[photos[0]].auto) and "People" in paths(after[photos[2]].auto)
    assert "pets|dog" in paths(after[photos[1]].auto)
    seen = keyword_sets([Path(after[p].written_to or p) for p in photos])
    for fields in seen.values():
        assert (
            "person" not in fields["Subject"]
            and "people|person" not in fields["HierarchicalSubject"]
        )
    face = seen[Path(after[photos[0]].written_to or photos[0])]
    assert "People" in face["Subject"] and "People" in face["HierarchicalSubject"]
    assert "People" in face["Keywords"] and "People" in face["TagsList"]
    pets = seen[Path(after[photos[1]].written_to or photos[1])]
    assert "pets|dog" in pets["HierarchicalSubject"] and "dog" in pets["Subject"]
