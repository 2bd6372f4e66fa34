import dataclasses
import functools

import numpy as np
import pytest
import synthetic_library

from phototag.library.query import And, Node, Not, Or, Term, parse
from phototag.library.tagindex import Entry, Filter, TagIndex, date_bound, term_keys
from phototag.records import Tag


def entries() -> list[Entry]:
    return [
        Entry(1, (Tag("animal|bird|parrot", 0.9), Tag("beach", source="user")),
              "2023-05-01T12:00:00", "/p/2023/trip"),
        Entry(2, (Tag("animal|mammal|cat", 0.8), Tag("animal|mammal|dog", 0.15)),
              "2022-12-31T23:59:59", "/p/2022"),
        Entry(3, (Tag("food|hot dog", 0.7), Tag("Night", source="user")), None, "/p/2023-old"),
        Entry(4, (Tag("animal|mammal|cat", source="user"), Tag("beach", source="user"),
                  Tag("night", source="user")), "2023-06-30T10:00:00+02:00", "/p/2023"),
    ]  # fmt: skip


def found(index: TagIndex, query: str | None, **filters: object) -> set[int]:
    return set(index.search(parse(query) if query else None, Filter(**filters)).tolist())


@pytest.fixture
def index() -> TagIndex:
    return TagIndex.build(entries())


def test_term_keys_cover_levels_and_prefixes() -> None:
    assert set(term_keys("Animal|Bird|Parrot")) == {
        "animal", "bird", "parrot", "animal|bird", "animal|bird|parrot",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("animal", {1, 2, 4}),
        ("bird", {1}),
        ("parrot", {1}),
        ("animal|bird", {1}),
        ("ANIMAL|Bird|parrot", {1}),
        ("bird|parrot", set()),  # a path is matched from the root
        ("mammal", {2, 4}),
        ('"hot dog"', {3}),
        ("hot dog", set()),
        ("night", {3, 4}),
        ("unknown", set()),
        ("NOT animal", {3}),
        ("-night", {1, 2}),
        ("cat AND (beach OR sea) NOT night", set()),
        ("cat AND (beach OR sea)", {4}),
        ("animal beach -parrot", {4}),
        ("parrot OR food", {1, 3}),
        ("NOT (cat OR parrot)", {3}),
    ],
)
def test_queries_on_a_small_library(index: TagIndex, query: str, ids: set[int]) -> None:
    assert found(index, query) == ids


def test_source_and_min_score(index: TagIndex) -> None:
    assert found(index, "cat", source="user") == {4}
    assert found(index, "cat", source="auto") == {2}
    assert found(index, "dog") == {2}
    assert found(index, "dog", min_score=0.2) == set()
    assert found(index, "mammal", source="auto", min_score=0.5) == {2}  # best descendant: cat
    assert found(index, "NOT cat", source="user") == {1, 2, 3}


def test_date_and_folder_filters(index: TagIndex) -> None:
    assert found(index, None, taken_from=date_bound("2023")) == {1, 4}
    assert found(index, None, taken_before=date_bound("2022", end=True)) == {2}
    june = Filter(taken_from=date_bound("2023-06"), taken_before=date_bound("2023-06", end=True))
    assert set(index.search(None, june).tolist()) == {4}  # wall-clock time, offset dropped
    assert found(index, "animal", folder="/p/2023") == {1, 4}  # not /p/2023-old
    assert found(index, None, folder="/p") == {1, 2, 3, 4}
    assert found(index, None, folder="/elsewhere") == set()


def test_date_bound_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bad date '2023-13'"):
        date_bound("2023-13")
    assert date_bound("2023-06-30", end=True) == np.datetime64("2023-07-01T00:00:00")


def test_add_update_remove_stay_in_sync(index: TagIndex) -> None:
    index.add(Entry(1, (Tag("animal|bird|owl", 0.6),), "2021-01-01", "/p/2021"))
    assert found(index, "parrot") == set()
    assert found(index, "owl") == {1}
    assert found(index, "beach") == {4}
    index.remove(2)
    index.remove(2)  # unknown ids are ignored
    assert found(index, "cat") == {4}
    assert found(index, "NOT animal") == {3}
    index.add(Entry(5000, (Tag("animal|mammal|cat", 0.5),), None, "/q"))
    assert found(index, "cat") == {4, 5000}
    assert found(index, "-cat") == {1, 3}
    assert len(index) == 4 and 2 not in index and 5000 in index
    assert index.ids().tolist() == [1, 3, 4, 5000]


def test_build_rejects_a_repeated_id() -> None:
    with pytest.raises(ValueError, match="photo id 1 given twice"):
        TagIndex.build([entries()[0], entries()[0]])


# --- equivalence with a brute-force scan ----------------------------------------------------


@functools.cache
def _found_by(path: str) -> frozenset[str]:
    """Written out independently of tagindex.term_keys: every level, every root path."""
    levels = [level.strip().lower() for level in path.split("|")]
    return frozenset(levels) | {"|".join(levels[: i + 1]) for i in range(len(levels))}


def _scan(node: Node, entry: Entry, flt: Filter) -> bool:
    if isinstance(node, Term):
        sources = ("user", "auto") if flt.source == "any" else (flt.source,)
        return any(
            node.text in _found_by(t.path) and t.source in sources and t.score >= flt.min_score
            for t in entry.tags
        )
    if isinstance(node, Not):
        return not _scan(node.operand, entry, flt)
    if isinstance(node, And):
        return all(_scan(child, entry, flt) for child in node.operands)
    assert isinstance(node, Or)
    return any(_scan(child, entry, flt) for child in node.operands)


def _brute_force(library: list[Entry], node: Node, flt: Filter) -> list[int]:
    def keep(entry: Entry) -> bool:
        taken = np.datetime64(entry.taken) if entry.taken else None
        if flt.taken_from is not None and (taken is None or taken < flt.taken_from):
            return False
        if flt.taken_before is not None and (taken is None or taken >= flt.taken_before):
            return False
        if flt.folder is not None and not (entry.folder + "/").startswith(flt.folder + "/"):
            return False
        return _scan(node, entry, flt)

    return sorted(entry.id for entry in library if keep(entry))


QUERIES = [
    ("t0", Filter()),
    ("r1 AND NOT m7", Filter()),
    ("(t3 OR t10 OR kw2) -r0", Filter(source="user")),
    ("r2|m2 t2 OR NOT (r3 r4)", Filter(min_score=0.5)),
    ("m1 AND NOT t1", Filter(folder="/photos/2019", taken_from=date_bound("2019-03"))),
    ("t299 OR t150 OR t5", Filter(taken_before=date_bound("2016", end=True), source="auto")),
]


@pytest.fixture(scope="module")
def big_library() -> list[Entry]:
    return synthetic_library.library(100_000, dim=0).entries


def test_100k_library_matches_brute_force(big_library: list[Entry]) -> None:
    index = TagIndex.build(big_library)
    for query, flt in QUERIES:
        node = parse(query)
        expected = _brute_force(big_library, node, flt)
        assert index.search(node, flt).tolist() == expected, query
    assert len(index.search(parse("t0"))) > 10_000  # the Zipf head is large


def test_edited_index_equals_a_rebuilt_one() -> None:
    library = synthetic_library.library(3000, dim=0, seed=3).entries
    rng = np.random.default_rng(4)
    edited = TagIndex.build(library)
    current = {entry.id: entry for entry in library}
    for photo_id in rng.choice(list(current), 600, replace=False).tolist():
        if rng.random() < 0.4:
            edited.remove(photo_id)
            del current[photo_id]
        else:
            donor = library[int(rng.integers(len(library)))]
            current[photo_id] = dataclasses.replace(donor, id=photo_id)
            edited.add(current[photo_id])
        if rng.random() < 0.05:  # queries between edits merge pending changes midway
            edited.search(parse("t0 OR t1 OR r3"))
    rebuilt = TagIndex.build(current.values())
    for query, flt in QUERIES:
        assert (
            edited.search(parse(query), flt).tolist() == rebuilt.search(parse(query), flt).tolist()
        )
        assert edited.search(parse(query), flt).tolist() == _brute_force(
            list(current.values()), parse(query), flt
        )


def test_an_empty_index_grows_from_single_adds() -> None:
    index = TagIndex()
    assert found(index, "cat") == set() and found(index, "NOT cat") == set()
    index.add(Entry(7, (Tag("animal|cat", 0.4), Tag("animal|dog", 0.9))))
    index.add(Entry(3, ()))
    assert found(index, "animal") == {7} and found(index, "-cat") == {3}
    assert found(index, "animal", min_score=0.5) == {7}  # via dog
    index.add(Entry(7, (Tag("animal|cat", 0.4),)))
    assert found(index, "animal", min_score=0.5) == set()
    index.remove(7)
    assert found(index, "animal") == set() and found(index, None) == {3}
    with pytest.raises(ValueError, match="photo id -1 is negative"):
        index.add(Entry(-1, ()))


def test_facets_count_hierarchical_names_in_the_result_set() -> None:
    index = TagIndex.build(
        [
            Entry(0, (Tag("animal|bird|parrot", 0.9), Tag("Parrot", 1.0, "user"))),
            Entry(1, (Tag("animal|mammal|cat", 0.8),)),
            Entry(2, (Tag("animal|bird|owl", 0.7),)),
        ]
    )
    index.add(Entry(3, (Tag("plant|flower", 0.6),)))
    everything = dict(index.facets(index.ids()))
    assert everything["animal"] == 3 and everything["animal|bird"] == 2
    assert everything["parrot"] == 1  # the user's flat keyword is a name too; counted once
    assert everything["plant|flower"] == 1 and "bird" not in everything  # no mid-level names
    birds = index.facets(index.search(parse('"animal|bird"')))
    assert birds[:2] == [("animal", 2), ("animal|bird", 2)]  # most first, then by name
    assert "animal|mammal" not in dict(birds)
    assert dict(index.facets(index.ids(), source="user")) == {"parrot": 1}
    index.remove(3)
    assert "plant" not in dict(index.facets(index.ids()))  # no name with nothing behind it
    assert len(index.facets(index.ids(), limit=2)) == 2
