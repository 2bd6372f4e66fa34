import json
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from phototag.library.index import IndexUnavailable, PhotoRecord, VectorStore, open_index
from phototag.records import FaceRecord, PhotoFile, Tag


def record(path: str, sha: str = "a" * 64) -> PhotoRecord:
    return PhotoRecord(
        path=path,
        size=10,
        mtime_ns=5,
        sha256=sha,
        auto=[Tag("animal|mammal|cat", 0.9)],
        user=["Grandma"],
    )


def test_put_get_and_reopen(backend: str, tmp_path: Path) -> None:
    emb = np.random.default_rng(0).random((1, 1280)).astype(np.float32)
    with open_index(tmp_path, backend) as index:
        index.put(record("/p/cat.jpg"), {"embedding-x": emb[0]})
    with open_index(tmp_path, backend) as index:
        got = index.get("/p/cat.jpg")
        assert got is not None
        assert got.auto == [Tag("animal|mammal|cat", 0.9)] and got.user == ["Grandma"]
        assert index.paths() == ["/p/cat.jpg"]
        np.testing.assert_allclose(index.vectors("embedding-x", [got], 1280)[0], emb[0], rtol=1e-3)
    assert (tmp_path / "embedding-x.f16").stat().st_size == 1280 * 2  # float16, not JSON


def test_an_index_is_true_when_it_holds_a_photo(backend: str, tmp_path: Path) -> None:
    with open_index(tmp_path, backend) as index:
        assert not index and len(index) == 0
        index.put(record("/p/a.jpg"))
        assert index and len(index) == 1
        index.remove("/p/a.jpg")
        assert not index


def test_unchanged_compares_size_and_mtime(backend: str, tmp_path: Path) -> None:
    with open_index(tmp_path, backend) as index:
        index.put(record("/p/a.jpg"))
        assert index.unchanged(PhotoFile(Path("/p/a.jpg"), 10, 5))
        assert not index.unchanged(PhotoFile(Path("/p/a.jpg"), 10, 6))
        assert not index.unchanged(PhotoFile(Path("/p/b.jpg"), 10, 5))


def test_move_keeps_tags_and_vectors_and_hash_lookup(backend: str, tmp_path: Path) -> None:
    with open_index(tmp_path, backend) as index:
        index.put(record("/p/a.jpg", "f" * 64), {"colour": np.ones(64, np.float32)})
        moved = index.move("/p/a.jpg", PhotoFile(Path("/q/b.jpg"), 10, 7))
        assert index.get("/p/a.jpg") is None
        assert moved.vectors == {"colour": 0} and moved.auto[0].name == "cat"
        assert [r.path for r in index.with_sha("f" * 64)] == ["/q/b.jpg"]
        index.remove("/q/b.jpg")
        assert len(index) == 0 and index.with_sha("f" * 64) == []


def face(photo: str, number: int, name: str = "") -> FaceRecord:
    marks = ((0.3, 0.4), (0.5, 0.4), (0.4, 0.5), (0.4, 0.6), (0.2, 0.45), (0.6, 0.45))
    return FaceRecord(photo, number, 0.9, (0.1, 0.2, 0.7, 0.8), marks, "m", "faces-x", name=name)


def test_faces_are_stored_named_moved_and_forgotten(backend: str, tmp_path: Path) -> None:
    vectors = np.random.default_rng(1).random((2, 1024)).astype(np.float32)
    with open_index(tmp_path, backend) as index:
        index.put(record("/p/a.jpg", "f" * 64))
        index.put(record("/p/b.jpg"))
        stored = index.put_faces("/p/a.jpg", [face("/p/a.jpg", 1), face("/p/a.jpg", 2)], vectors)
        assert [f.row for f in stored] == [0, 1] and len({f.id for f in stored}) == 2
        index.put(record("/p/a.jpg", "f" * 64))  # re-tagging the photo keeps its faces
        named = [
            replace(stored[0], name="Ann", source="user", group=3),
            replace(stored[1], not_names=["Ann"]),
        ]
        index.update_faces(named)
    with open_index(tmp_path, backend) as index:
        got = index.faces("/p/a.jpg")
        assert got == named and index.faces("/p/b.jpg") == []
        np.testing.assert_allclose(index.face_vectors(got, 1024), vectors, rtol=1e-3)
        index.move("/p/a.jpg", PhotoFile(Path("/q/a.jpg"), 10, 7))
        assert [(f.photo, f.name, f.row) for f in index.faces()] == [
            ("/q/a.jpg", "Ann", 0),
            ("/q/a.jpg", "", 1),
        ]
        index.put_faces("/p/b.jpg", [face("/p/b.jpg", 1, "Bob")], vectors[:1])
        index.remove("/q/a.jpg")  # a photo's faces go with it
        assert [f.name for f in index.faces()] == ["Bob"]
        assert index.forget_faces() == 1 and index.faces() == []
        with pytest.raises(KeyError):
            index.put_faces("/p/none.jpg", [face("/p/none.jpg", 1)])


def test_replacing_a_record_does_not_duplicate(backend: str, tmp_path: Path) -> None:
    with open_index(tmp_path, backend) as index:
        index.put(record("/p/a.jpg", "1" * 64))
        index.put(record("/p/a.jpg", "2" * 64))
        assert len(index) == 1 and index.with_sha("1" * 64) == []


def test_tinydb_has_one_writer_at_a_time(tmp_path: Path) -> None:
    with (
        open_index(tmp_path, "tinydb"),
        pytest.raises(IndexUnavailable, match="in use by another phototag"),
    ):
        open_index(tmp_path, "tinydb")
    with open_index(tmp_path, "tinydb", readonly=True):
        pass


def test_sqlite_writers_share_the_index(tmp_path: Path) -> None:
    """Two open writers (the service and a command): each sees the other's commits at once."""
    with open_index(tmp_path) as service, open_index(tmp_path) as command:
        service.put(record("/p/a.jpg"))
        command.put(record("/p/b.jpg"))
        assert service.get("/p/b.jpg") is not None and len(command) == 2
        with open_index(tmp_path, readonly=True) as reader:
            assert reader.search(None) == ["/p/a.jpg", "/p/b.jpg"]
            with pytest.raises(IndexUnavailable, match="read-only"):
                reader.put(record("/p/c.jpg"))


def test_non_utf8_path_survives_a_round_trip(backend: str, tmp_path: Path) -> None:
    odd = os.fsdecode(b"/p/caf\xe9.jpg")  # Latin-1 name: not valid UTF-8
    with open_index(tmp_path, backend) as index:
        index.put(record(odd))
    with open_index(tmp_path, backend) as index:
        assert index.get(odd) is not None


def test_torn_vector_row_is_dropped(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "v.f16", 4)
    store.append(np.ones((2, 4)))
    with (tmp_path / "v.f16").open("ab") as f:
        f.write(b"\x00\x01\x02")  # a crash in the middle of a row
    again = VectorStore(tmp_path / "v.f16", 4)
    assert again.rows == 2 and again.append(np.zeros(4)) == 2


def test_corrupt_index_is_a_clear_error(backend: str, tmp_path: Path) -> None:
    name = "photos.json" if backend == "tinydb" else "index.sqlite"
    (tmp_path / name).write_text("{not json" * 200)
    with pytest.raises(IndexUnavailable, match=r"corrupt|not a database"):
        open_index(tmp_path, backend)


def test_kill_during_writes_leaves_a_readable_index(backend: str, tmp_path: Path) -> None:
    """A killed writer leaves the index as of its last commit (TinyDB: the JSON file is
    replaced atomically; SQLite: its journal), and vector rows the index points to exist."""
    script = f"""
import numpy as np, sys
sys.path.insert(0, {str(Path(__file__).parents[1] / "daemon")!r})
from phototag.library.index import PhotoRecord, open_index
index = open_index(__import__("pathlib").Path({str(tmp_path)!r}), {backend!r})
i = 0
while True:
    index.put(PhotoRecord(path=f"/p/{{i}}.jpg", size=i, mtime_ns=i, sha256=str(i)), {{"colour": np.ones(64)}})
    index.flush()
    if i == 20:
        print("go", flush=True)
    i += 1
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if backend == "tinydb":
        json.loads((tmp_path / "photos.json").read_text())
    with open_index(tmp_path, backend) as index:
        assert len(index) >= 21
        rows = [r.vectors["colour"] for r in index.records()]
        assert max(rows) < index.store("colour", 64).rows


def test_a_new_record_field_gets_its_column_on_open(tmp_path: Path) -> None:
    """An index written before a scalar field existed (here: its column dropped) reads the
    field's default, and stores it from then on: no migration step to write."""
    with open_index(tmp_path) as index:
        index.put(record("/p/a.jpg"))
    db = sqlite3.connect(tmp_path / "index.sqlite")
    db.execute("ALTER TABLE photos DROP COLUMN tagged_at")
    db.close()
    with open_index(tmp_path) as index:
        old = index.get("/p/a.jpg")
        assert old is not None and old.tagged_at == 0.0 and old.auto[0].name == "cat"
        old.tagged_at = 12.5
        index.put(old)
    with open_index(tmp_path, readonly=True) as index:
        again = index.get("/p/a.jpg")
        assert again is not None and again.tagged_at == 12.5


def test_a_version_1_index_gets_the_faces_schema(tmp_path: Path) -> None:
    from phototag.library import sqlindex

    db = sqlite3.connect(tmp_path / "index.sqlite")
    for statement in sqlindex.MIGRATIONS[1]:
        db.execute(statement)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with open_index(tmp_path, "sqlite") as index:
        index.put(record("/p/a.jpg"))
        index.put_faces("/p/a.jpg", [face("/p/a.jpg", 1, "Ann")], np.ones((1, 8), np.float32))
        assert [f.name for f in index.faces()] == ["Ann"]
    db = sqlite3.connect(tmp_path / "index.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == sqlindex.SCHEMA_VERSION == 2


def test_opening_an_up_to_date_index_writes_nothing(tmp_path: Path) -> None:
    """A one-off `search` commits nothing, so its close has no page to checkpoint (fsync);
    an index that lacks part of the schema still gets it on open."""
    from phototag.library.query import parse

    with open_index(tmp_path, "sqlite") as index:
        index.put(record("/p/a.jpg"))
    other = sqlite3.connect(tmp_path / "index.sqlite", isolation_level=None)
    version = other.execute("PRAGMA data_version").fetchone()[0]  # moves on others' commits
    for readonly in (True, False):
        with open_index(tmp_path, "sqlite", readonly=readonly) as index:
            assert index.search(parse("cat")) == ["/p/a.jpg"]
    assert other.execute("PRAGMA data_version").fetchone()[0] == version
    other.execute("DROP TRIGGER photos_added")
    with open_index(tmp_path, "sqlite", readonly=True) as index:
        assert index.search(parse("cat")) == ["/p/a.jpg"]
    assert other.execute("PRAGMA data_version").fetchone()[0] != version
    named = {name for (name,) in other.execute("SELECT name FROM sqlite_master")}
    assert "photos_added" in named


def test_names_on_faces_are_found_by_search(backend: str, tmp_path: Path) -> None:
    from phototag.library.query import parse

    with open_index(tmp_path, backend) as index:
        index.put(replace(record("/p/a.jpg"), people=["Aunt Jo"]))
        index.put(record("/p/b.jpg"))
        for query in ('"person:Aunt Jo"', '"aunt jo"', '"person:aunt jo" AND cat'):
            assert index.search(parse(query)) == ["/p/a.jpg"]
        assert index.search(parse("person:Grandma")) == []
        got = index.get("/p/a.jpg")
        assert got is not None and got.people == ["Aunt Jo"] and got.user == ["Grandma"]
