"""Suggestions: the maths on small arrays, then the advice and --accept on real photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from phototag.config import WriteConfig
from phototag.files import metadata
from phototag.learn import suggest
from phototag.learn.suggest import Suggestion, TagScores
from phototag.library.index import PhotoRecord
from phototag.records import Tag
from tests.albums import copy_photos, records, run
from tests.conftest import exiftool, keyword_sets

PATHS = ["animal", "animal|bird", "animal|mammal", "animal|mammal|cat", "animal|mammal|dog", "food"]


def test_ancestry_and_leaf_groups() -> None:
    d = suggest.ancestry(PATHS)
    assert d[3].tolist() == [1, 0, 1, 0, 0, 0]  # cat is below mammal and animal
    assert d[0].sum() == 0 and d[5].sum() == 0
    names, group = suggest.leaf_groups(["a|Cat", "b|cat", "dog"])
    assert names == ["cat", "dog"] and group.tolist() == [0, 0, 1]


def test_missing_mask_skips_implied_and_covered_paths() -> None:
    d = suggest.ancestry(PATHS)
    values = np.array([[0.9, 0.0, 0.9, 0.8, 0.1, 0.0], [0.9, 0.0, 0.9, 0.8, 0.1, 0.0]])
    known = np.zeros((2, 6), dtype=bool)
    known[1, 3] = True  # the second photo has "cat" already
    missing = suggest.missing_mask(values, known, d, 0.5)
    assert missing[0].tolist() == [False, False, False, True, False, False]  # cat, not mammal
    assert not missing[1].any()
    known[1] = [False, False, True, False, False, False]  # only "mammal": cat is more precise
    assert suggest.missing_mask(values, known, d, 0.5)[1].tolist()[3]
    assert suggest.best_specific(values, d, 0.5).tolist() == [3, 3]
    assert suggest.best_specific(np.full((1, 6), 0.1), d, 0.5).tolist() == [-1]


def test_name_scores_take_the_best_path_of_a_name() -> None:
    values = np.array([[0.1, 0.7, 0.2], [0.0, 0.0, 0.5]], dtype=np.float32)
    got = suggest.name_scores(values, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(got, [[0.7, 0.2], [0.0, 0.5]])


def test_suggest_with_pluggable_scores() -> None:
    values = np.array(
        [
            [0.95, 0.01, 0.93, 0.90, 0.02, 0.0],  # a cat photo the user called "Dog" and "Grandma"
            [0.95, 0.01, 0.93, 0.90, 0.02, 0.0],  # a cat photo where the user deleted our "cat"
            [0.30, 0.10, 0.20, 0.10, 0.01, 0.4],  # an unsure model doubts nobody
        ],
        dtype=np.float32,
    )
    recs = [
        PhotoRecord("a.jpg", 1, 1, "a", user=["Grandma", "Dog"]),
        PhotoRecord("b.jpg", 1, 1, "b", auto=[Tag("animal|mammal", 0.9)], negatives=["cat"]),
        PhotoRecord("c.jpg", 1, 1, "c", user=["dog"]),
    ]
    asked: list[list[PhotoRecord]] = []

    def scores_for(records: list[PhotoRecord]) -> TagScores:
        asked.append(records)
        return TagScores(PATHS, values)

    got = suggest.suggest(recs, scores_for)
    assert asked == [recs]
    assert got == [
        Suggestion("a.jpg", "missing", "animal|mammal|cat", pytest.approx(0.9)),
        Suggestion("a.jpg", "imprecise", "Dog", pytest.approx(0.02), "animal|mammal|cat"),
    ]
    assert suggest.suggest([], scores_for) == []


def test_advice_changes_nothing_and_a_typed_or_accepted_tag_is_the_users(
    tmp_path: Path, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat, parrot, pets = copy_photos(tmp_path / "album", ["cat_720p.jpg", "parrot.jpg", "pets.jpg"])
    assert run(capsys, "scan", str(tmp_path / "album"))[0] == 0
    exiftool(cat, "-XMP:Subject+=dog", "-IPTC:Keywords+=dog")  # the user's mistake
    assert run(capsys, "undo", str(parrot))[0] == 0  # parrot now lacks its tags
    files = [cat, parrot, pets]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    status, out, err = run(capsys, "suggest")
    assert status == 0, err
    assert f"{cat}: looks imprecise: dog (" in out and "the model sees animal|mammal|cat" in out
    assert f"{parrot}: likely missing: animal|bird|parrot (" in out
    assert str(pets) not in out
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == before

    # The user types the suggested keyword; tagging again leaves it theirs, and undo keeps it.
    exiftool(parrot, "-XMP:Subject+=parrot", "-IPTC:Keywords+=parrot")
    assert run(capsys, "tag", str(parrot))[0] == 0
    got = metadata.read(parrot, WriteConfig())
    assert "parrot" in got.user_keywords and "parrot" not in got.our_keywords
    assert "parrot" in records([parrot])[parrot].user
    assert "likely missing" not in run(capsys, "suggest", str(parrot))[1]
    assert run(capsys, "undo", str(parrot))[0] == 0
    assert keyword_sets([parrot])[parrot]["Subject"] == ["parrot"]

    # Accepting a tag that was ours makes it the user's, in its place: undo leaves it.
    status, out, _ = run(capsys, "suggest", "--accept", "animal|mammal|cat", str(cat))
    assert status == 0 and "cat is now your keyword" in out
    got = metadata.read(cat, WriteConfig())
    assert got.user_keywords == ["cat", "dog"] and "cat" not in got.our_keywords
    assert records([cat])[cat].user == ["cat", "dog"]
    assert run(capsys, "undo", str(cat))[0] == 0
    seen = keyword_sets([cat])[cat]
    assert seen["Subject"] == ["cat", "dog"]
    assert seen["Keywords"] == ["dog"]  # "cat" is a level of animal|mammal|cat: not in IPTC
    assert seen["HierarchicalSubject"] == ["animal|mammal|cat", "dog"]  # flat "dog" mirrored

    status, _, err = run(capsys, "suggest", "--accept", "animal||cat", str(cat))
    assert status == 2 and "empty" in err
