"""`Index.browse`: a page of a search with its total and facets, as a library page shows it.

Both backends answer as `search` and a count by name over it do; the SQLite backend keeps its
facet table and path order in memory, so every test here also checks that a write by this
connection, another connection or another process is seen by the next page.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import synthetic_library

from phototag.library.index import Index, PhotoRecord, open_index
from phototag.library.query import Node, Term, parse
from phototag.library.sqlindex import SqliteIndex
from phototag.library.tagindex import Filter, SourceFilter, date_bound, path_keys
from phototag.records import Tag

QUERIES = ["", "t0", "r1", "t3 OR m4", "(t0 OR t1) AND NOT r2", '"r0|m0"', "NOT t0"]


def record(path: str, *tags: str, user: tuple[str, ...] = ()) -> PhotoRecord:
    return PhotoRecord(
        path, 1, 1, path.ljust(64, "0"), auto=[Tag(t, 0.9) for t in tags], user=list(user)
    )


def by_name(
    index: Index, records: list[PhotoRecord], found: list[str], source: SourceFilter, limit: int
) -> list[tuple[str, int]]:
    """The facets as their definition says: each hierarchical name, how many of `found` a
    search for it finds; most first, then by name."""
    names = {n for r in records for t in [*(a.path for a in r.auto), *r.user] for n in path_keys(t)}
    chosen = set(found)
    counts = [
        (name, len(chosen.intersection(index.search(Term(name), Filter(source=source)))))
        for name in names
    ]
    return sorted(((n, c) for n, c in counts if c), key=lambda nc: (-nc[1], nc[0]))[:limit]


@pytest.fixture(scope="module")
def records() -> list[PhotoRecord]:
    return synthetic_library.photo_records(synthetic_library.library(400, dim=0, seed=3))


@pytest.mark.parametrize(
    "flt",
    [
        Filter(),
        Filter(source="user"),
        Filter(source="auto"),
        Filter(taken_from=date_bound("2016"), taken_before=date_bound("2018", end=True)),
        Filter(folder="/photos/2017"),
    ],
    ids=["any", "user", "auto", "dates", "folder"],
)
def test_browse_is_search_paged_with_its_facets(
    backend: str, tmp_path: Path, records: list[PhotoRecord], flt: Filter
) -> None:
    with open_index(tmp_path, backend) as index:
        index.put_many(records)
        finding = 0
        for text in QUERIES:
            node: Node | None = parse(text) if text else None
            found = index.search(node, flt)
            finding += bool(found)
            for offset in (0, 7, len(found) - 3, len(found) + 5):
                page = index.browse(node, flt, offset, 10, 25)
                assert page.total == len(found), (text, offset)
                assert page.paths == found[offset : offset + 10], (text, offset)
            assert page.facets == by_name(index, records, found, flt.source, 25), text
            assert page.facets == index.facets(node, flt, 25)
        assert finding >= 4  # most queries find photos: the comparisons mean something


def test_the_next_page_sees_every_writer(tmp_path: Path) -> None:
    """The cached table is dropped when this connection, another one or another process
    commits: the service and the CLI write one library at once."""
    with open_index(tmp_path, "sqlite") as index:
        index.put_many([record(f"/p/{i}.jpg", "animal|cat") for i in range(3)])
        assert index.browse(None).facets == [("animal", 3), ("animal|cat", 3)]
        index.put(record("/p/9.jpg", "animal|dog"))  # this connection
        assert dict(index.browse(None).facets)["animal"] == 4
        with open_index(tmp_path, "sqlite") as other:  # another connection
            other.put(record("/p/0.jpg", "plant", user=("Grandma",)))
        page = index.browse(parse("cat"))
        assert page.total == 2 and page.paths == ["/p/1.jpg", "/p/2.jpg"]
        assert dict(index.browse(None).facets) == {
            "animal": 3,
            "animal|cat": 2,
            "animal|dog": 1,
            "plant": 1,
            "grandma": 1,
        }
        script = (
            "import sys; from pathlib import Path; from phototag.library.index import open_index\n"
            "with open_index(Path(sys.argv[1]), 'sqlite') as index: index.remove('/p/1.jpg')"
        )
        subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
        page = index.browse(parse("animal"), None, 0, 10, 10)
        assert page.paths == ["/p/2.jpg", "/p/9.jpg"]
        assert page.facets == [("animal", 2), ("animal|cat", 1), ("animal|dog", 1)]


def test_a_patched_cache_answers_as_a_fresh_one(
    tmp_path: Path, records: list[PhotoRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes by this connection and another patch the cache with the photos they changed
    (a tag name that comes or goes rebuilds it); every page then equals a fresh index's."""
    built = []
    make = SqliteIndex._built
    monkeypatch.setattr(
        SqliteIndex, "_built", lambda self, *a: built.append(self) or make(self, *a)
    )
    rng = np.random.default_rng(5)
    common = synthetic_library.vocabulary()[:8]  # held by many photos: no name comes or goes
    cases = [(None, Filter()), (parse("t0 OR r1"), Filter()), (None, Filter(source="user"))]
    with open_index(tmp_path, "sqlite") as index, open_index(tmp_path, "sqlite") as other:
        index.put_many(records)
        for node, flt in cases:
            index.browse(node, flt)
        built.clear()
        for step in range(12):
            writer = other if step % 2 else index
            chosen = [records[int(i)] for i in rng.choice(len(records), size=4, replace=False)]
            if step:
                writer.remove(f"/photos/new/{step - 1}.jpg")
            tags = [Tag(common[int(i)], 0.5) for i in rng.integers(len(common), size=3)]
            changed = [dataclasses.replace(r, auto=[*r.auto, *tags]) for r in chosen]
            changed.append(record(f"/photos/new/{step}.jpg", common[step % 8]))
            if step == 6:
                changed.append(record("/photos/new/fresh.jpg", "brand|new"))  # a new name
            writer.put_many(changed)
            with open_index(tmp_path, "sqlite", readonly=True) as fresh:
                for node, flt in cases:
                    for offset in (0, 150):
                        assert index.browse(node, flt, offset) == fresh.browse(node, flt, offset)
        assert built.count(index) == 1  # only the new name rebuilt it; the rest patched it
