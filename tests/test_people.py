"""library/people.py's pure parts: naming from files, the vote over records, groups."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from phototag.files.regions import Region
from phototag.learn.faces import unit
from phototag.library import people
from phototag.records import FaceRecord

MARKS = ((0.0, 0.0),) * 6


def face(
    photo: str, number: int, box: tuple[float, float, float, float], **kw: object
) -> FaceRecord:
    return FaceRecord(
        photo, number, 0.9, box, MARKS, "m", "s", id=hash((photo, number)) % 10_000, **kw
    )  # type: ignore[arg-type]


def test_a_region_names_the_face_its_centre_is_in_and_ours_are_written_as_ours() -> None:
    left, right = face("p", 1, (0.1, 0.1, 0.4, 0.5)), face("p", 2, (0.5, 0.1, 0.9, 0.5))
    named = people.from_file([left, right], [Region("Ann", 0.7, 0.3, 0.3, 0.4)])
    assert [(f.name, f.source) for f in named] == [("", ""), ("Ann", "file")]
    assert people.from_file([left, right], [Region("Me", 0.7, 0.3, 0.3, 0.4, ours=True)]) == [
        left,
        right,
    ]
    # PersonInImage alone: only the one name left on the one face left.
    assert people.from_file(named, [], ["Ann", "Bob"])[0].name == "Bob"
    assert people.from_file([left, right], [], ["Bob"]) == [left, right]
    mine = [replace(named[0], name="Cy", source="user"), named[1]]
    (region,) = people.ours(mine)  # Ann is the file's already: not ours to write
    assert region == Region("Cy", 0.25, 0.3, pytest.approx(0.3), 0.4, ours=True)


def test_the_vote_renames_only_faces_the_user_did_not_name() -> None:
    a, b = np.eye(2)
    vectors = unit(np.stack([a, b, a + 0.1 * b, b + 0.1 * a, a + 0.05 * b]))
    faces = [
        face("p1", 1, (0, 0, 1, 1), name="Ann", source="user"),
        face("p2", 1, (0, 0, 1, 1), name="Bob", source="file"),
        face("p3", 1, (0, 0, 1, 1), name="Bob", source="propagated"),  # wrong: re-voted
        face("p4", 1, (0, 0, 1, 1), not_names=["Bob"]),  # refused Bob
        face("p1", 2, (0, 0, 1, 1)),  # Ann-like, but the photo has Ann already
    ]
    changed = people.propagate(faces, vectors)
    assert [(f.photo, f.name, f.source) for f in changed] == [
        ("p3", "Ann", "propagated"),
        ("p3", "Ann", "propagated"),
    ][:1]


def test_unnamed_faces_join_groups_and_the_most_typical_shows_each() -> None:
    a, b = np.eye(2)
    vectors = unit(np.stack([a, a + 0.1 * b, b, a + 0.2 * b]))
    faces = [
        face("p1", 1, (0, 0, 1, 1), group=4),
        face("p2", 1, (0, 0, 1, 1)),
        face("p3", 1, (0, 0, 1, 1)),
        face("p4", 1, (0, 0, 1, 1), name="Ann", source="user"),
    ]
    grouped = {f.photo: f.group for f in people.regroup(faces, vectors, 0.8)}
    assert grouped == {"p2": 4, "p3": 5}  # named faces are in no group
    regrouped = [
        f.__class__(**{**f.__dict__, "group": grouped.get(f.photo, f.group)}) for f in faces
    ]
    shown = people.groups(regrouped, vectors)
    assert [(g.id, g.size) for g in shown] == [(4, 2), (5, 1)]


def test_names_are_one_line_without_the_hierarchy_separator() -> None:
    assert people.check_name("  Aunt   Jo ") == "Aunt Jo"
    for bad in ("", "  ", "A|B"):
        with pytest.raises(ValueError):
            people.check_name(bad)
