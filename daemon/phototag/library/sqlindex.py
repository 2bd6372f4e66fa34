"""The SQLite backend (the default): one library shared by the service and any number of commands.

WAL lets readers run beside one writer; each `put_many` is one `BEGIN IMMEDIATE` transaction,
so a killed process loses at most the batch it had not committed, and a busy timeout makes a
second writer wait its turn instead of refusing. Every process sees the others' commits on
its next query: the one cache, `browse`'s path order and facet table, is checked against the
index's version in the page's read transaction, and patched from the `changes` log that
triggers keep, whoever writes.

The scalar fields of `PhotoRecord` map to `photos` columns by name; a field added to the
dataclass gets its column on the next open (`ALTER TABLE ADD COLUMN`, NULL reads back as the
field's default), so adding one costs no migration step. Strings are stored as UTF-8 BLOBs
with surrogate escapes, because photo paths need not be valid UTF-8. Search runs in SQL on
`terms`: each tag filed under every level name and path prefix, with the best score per
photo, as `tagindex` files them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import sys
import time
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phototag.library import compact
from phototag.library.index import Index, IndexUnavailable, PhotoRecord, ResultPage, locked
from phototag.library.query import (
    PEOPLE_ROOT,
    SOURCES,
    And,
    Filter,
    Node,
    Not,
    Or,
    SourceFilter,
    Term,
    path_keys,
    term_keys,
)
from phototag.records import LEVEL_SEP, Detection, FaceRecord, PhotoFile, Tag

# numpy (and `tagindex`, which needs it) load in the writes and in `browse`'s cache: a one-off
# `phototag search` opens the index and runs one query without them (tests/test_cli_imports.py).
if TYPE_CHECKING:
    import numpy as np

    from phototag.library.tagindex import FacetTable

SCHEMA_VERSION = 2
_SCHEMA = [
    """CREATE TABLE photos (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE,
        folder BLOB NOT NULL, taken_s INTEGER)""",
    "CREATE INDEX photos_folder ON photos(folder)",
    """CREATE TABLE tags (photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL, path TEXT NOT NULL, source TEXT NOT NULL, score REAL NOT NULL,
        model_version TEXT NOT NULL)""",
    "CREATE INDEX tags_photo ON tags(photo)",
    """CREATE TABLE terms (term TEXT NOT NULL, source TEXT NOT NULL,
        photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE, score REAL NOT NULL,
        PRIMARY KEY (term, source, photo)) WITHOUT ROWID""",
    "CREATE INDEX terms_photo ON terms(photo)",
    """CREATE TABLE negatives (photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL, path TEXT NOT NULL)""",
    "CREATE INDEX negatives_photo ON negatives(photo)",
    """CREATE TABLE detections (photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL, path TEXT NOT NULL, score REAL NOT NULL, x1 REAL, y1 REAL,
        x2 REAL, y2 REAL, model TEXT NOT NULL)""",
    "CREATE INDEX detections_photo ON detections(photo)",
    # Faces: filled by the face detector to come; the embedding is a row of a vector store.
    """CREATE TABLE faces (id INTEGER PRIMARY KEY,
        photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        x1 REAL, y1 REAL, x2 REAL, y2 REAL, landmarks BLOB, store TEXT, row INTEGER)""",
    "CREATE INDEX faces_photo ON faces(photo)",
    """CREATE TABLE vectors (photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        name TEXT NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (photo, name)) WITHOUT ROWID""",
    """CREATE TABLE history (id INTEGER PRIMARY KEY, at REAL NOT NULL, action TEXT NOT NULL,
        path BLOB NOT NULL, written_to BLOB, model_version TEXT, tags TEXT)""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
# Version 2: faces get their score, model, name (with its source), negatives and group.
# Version 1's faces table was never filled (no face model then), so it is made anew.
_FACES_V2 = [
    "DROP TABLE faces",
    """CREATE TABLE faces (id INTEGER PRIMARY KEY,
        photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE, number INTEGER NOT NULL,
        score REAL NOT NULL, x1 REAL, y1 REAL, x2 REAL, y2 REAL, landmarks TEXT NOT NULL,
        model TEXT NOT NULL, store TEXT NOT NULL, row INTEGER NOT NULL,
        name TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '',
        similarity REAL NOT NULL DEFAULT 0, not_names TEXT NOT NULL DEFAULT '[]',
        grp INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX faces_photo ON faces(photo)",
    "CREATE INDEX faces_name ON faces(name)",
]
# Schema steps by the version they lead to; version 1 is the schema above.
MIGRATIONS: dict[int, list[str]] = {1: _SCHEMA, 2: _FACES_V2}
_FACE_COLUMNS = (
    "faces.id, photos.path, number, score, x1, y1, x2, y2, landmarks, model, store, row, "
    "name, source, similarity, not_names, grp"
)
PERSON_SOURCE = "person"  # a name on the photo's faces, in `tags` beside the keywords
# The photos each commit changed, kept by triggers (whoever writes), so a process's cache is
# patched with what others changed; created on open when missing, so no schema step. By
# name, so an open can see that they are all there without writing.
_CHANGE_LOG = {
    "changes": "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "photo INTEGER NOT NULL)",
    "tags_path": "CREATE INDEX IF NOT EXISTS tags_path ON tags(path)",
    # `paths_of_rows`: which photo an ANN hit (a store row) is, without a scan of `vectors`
    "vectors_row": "CREATE INDEX IF NOT EXISTS vectors_row ON vectors(name, row)",
    **{
        f"photos_{name}": f"CREATE TRIGGER IF NOT EXISTS photos_{name} AFTER {event} ON photos "
        f"BEGIN INSERT INTO changes (photo) VALUES ({row}.id); END"
        for name, event, row in (
            ("added", "INSERT", "NEW"),
            ("changed", "UPDATE", "NEW"),
            ("removed", "DELETE", "OLD"),
        )
    },
}
KEEP_CHANGES = 100_000  # rows of the log kept; a cache older than them is rebuilt
PATCH_AT_MOST = 2_000  # changed photos a cache is patched with; more: rebuilt
_CHILDREN = ("tags", "terms", "negatives", "detections", "vectors")
_LISTS = {"auto", "user", "negatives", "vectors", "detections", "people"}  # in child tables


def _scalars() -> dict[str, dataclasses.Field[Any]]:
    """PhotoRecord's fields that are one column each (everything but its lists and maps)."""
    return {f.name: f for f in dataclasses.fields(PhotoRecord) if f.name not in _LISTS}


SCALARS = _scalars()
_HINTS = typing.get_type_hints(PhotoRecord)


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogateescape")


def _s(blob: bytes | None) -> str | None:
    return None if blob is None else blob.decode("utf-8", "surrogateescape")


def _record_type(name: str) -> type | None:
    """The dataclass a field holds (e.g. `Position` of `position: Position | None`), if any."""
    hint = _HINTS[name]
    return next((h for h in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(h)), None)


def _column_value(value: Any) -> Any:
    """A field as one column: a small record (a dataclass such as Position) as JSON text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = json.dumps(dataclasses.asdict(value))
    return _b(value) if isinstance(value, str) else value


def _field_value(name: str, value: Any) -> Any:
    if value is None:
        f = SCALARS[name]
        return f.default if f.default is not dataclasses.MISSING else None
    value = _s(value) if isinstance(value, bytes) else value
    kind = _record_type(name)
    return kind(**json.loads(value)) if kind is not None else value


def _taken_s(taken: str | None) -> int | None:
    import numpy as np

    from phototag.library.tagindex import _one_date

    stamp = _one_date(taken)
    return None if np.isnat(stamp) else int(stamp.astype("datetime64[s]").astype(np.int64))


def _terms(photo: int, record: PhotoRecord) -> Iterator[tuple[str, str, int, float]]:
    """(term, source, photo, best score) rows: each tag under every level name and prefix."""
    best: dict[tuple[str, str], float] = {}
    tags = [(t.path, "auto", t.score) for t in record.auto]
    tags += [(keyword, "user", 1.0) for keyword in record.user]
    tags += [(f"{PEOPLE_ROOT}{LEVEL_SEP}{name}", "auto", 1.0) for name in record.people]
    for path, source, score in tags:
        for term in term_keys(path):
            key = (term, source)
            best[key] = max(score, best.get(key, score))
    for (term, source), score in best.items():
        yield term, source, photo, score


@dataclass
class _Cache:
    """What pages need of one version of the index, as arrays: the order of paths, and the
    (name, photo) tables of facets by source (built on first need)."""

    version: tuple[int, int]  # (PRAGMA data_version, total_changes) when made
    seq: int  # the last `changes` row it holds
    names: list[str]  # every hierarchical name, sorted
    paths: list[bytes]  # every path, sorted (as SQLite sorts BLOBs)
    by_path: np.ndarray  # photo ids, in path order
    rank: np.ndarray  # by photo id: its place in path order
    facets: dict[SourceFilter, FacetTable] = dataclasses.field(default_factory=dict)


def _ordered(rows: list[tuple[int, bytes]]) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Paths, ids and ranks by id of (id, path) rows sorted by path."""
    import numpy as np

    by_path = np.array([i for i, _ in rows], np.int64)
    rank = np.zeros(int(by_path.max(initial=-1)) + 1, np.int64)
    rank[by_path] = np.arange(len(by_path))
    return [path for _, path in rows], by_path, rank


class SqliteIndex(Index):
    """The photo index as one SQLite database (`index.sqlite`) in WAL mode."""

    def __init__(
        self,
        folder: Path,
        readonly: bool = False,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    ) -> None:
        super().__init__(folder, readonly)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                folder / "index.sqlite", timeout=60, isolation_level=None, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # a kill loses nothing committed
            self.db.execute("PRAGMA foreign_keys=ON")
            self._upgrade()
            self._columns = list(SCALARS)
            self._cached: _Cache | None = None
            from phototag.library.migrate import migrate_tinydb

            migrate_tinydb(self, log)
            self._lock, alone = compact.hold(folder, readonly)
            if alone:
                for done in compact.compact(self.db, folder):
                    compact.log.info(
                        "index: dropped %d of %d %s rows no photo uses",
                        done.before - done.after,
                        done.before,
                        done.store,
                    )
            if self._lock is not None:
                compact.share(self._lock)
            if readonly:
                self.db.execute("PRAGMA query_only=ON")
        except (OSError, sqlite3.Error) as exc:
            raise IndexUnavailable(f"{folder}: cannot open index: {exc}") from None

    def _store_path(self, name: str) -> Path:
        return compact.store_path(self.folder, name, self.meta(f"file:{name}"))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (IMMEDIATE) so it never fails half-way on a lock."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"{self.folder}: cannot write the index: {exc}") from None
        try:
            yield self.db
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:  # a full disk, a damaged file: one line, nothing half-done
            self._rollback()
            raise IndexUnavailable(f"{self.folder}: cannot write the index: {exc}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.db.in_transaction:  # SQLite may have rolled back already (a failed COMMIT)
            self.db.execute("ROLLBACK")

    def _upgrade(self) -> None:
        """Bring the schema to SCHEMA_VERSION, and give new PhotoRecord fields their column."""
        if self._current():
            return
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise IndexUnavailable(
                    f"{self.folder}: the index has schema {version}, newer than this phototag "
                    f"({SCHEMA_VERSION}): upgrade phototag"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for statement in _CHANGE_LOG.values():
                db.execute(statement)
            have = {row[1] for row in db.execute("PRAGMA table_info(photos)")}
            for name in SCALARS:
                if name not in have:
                    db.execute(f"ALTER TABLE photos ADD COLUMN {name}")
                    if name == "sha256":
                        db.execute("CREATE INDEX photos_sha ON photos(sha256)")

    def _current(self) -> bool:
        """Whether the schema is up to date, found by reading: writing it again at every open
        made each `phototag search` commit a page, then checkpoint it at close (four fsyncs)."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        named = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(photos)")}
        return version == SCHEMA_VERSION and named >= set(_CHANGE_LOG) and columns >= set(SCALARS)

    @locked
    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM photos").fetchone()[0]

    @locked
    def __bool__(self) -> bool:
        """Whether any photo is indexed: one row read, where count(*) reads them all (0.4 s
        at 1 000 000 photos, most of a one-off `phototag search`)."""
        return self.db.execute("SELECT 1 FROM photos LIMIT 1").fetchone() is not None

    @locked
    def get(self, path: Path | str) -> PhotoRecord | None:
        found = self._load("path = ?", (_b(str(path)),))
        return found[0] if found else None

    @locked
    def with_sha(self, sha256: str) -> list[PhotoRecord]:
        return self._load("sha256 = ?", (_b(sha256),))

    @locked
    def unchanged(self, file: PhotoFile) -> bool:
        row = self.db.execute(
            "SELECT size, mtime_ns FROM photos WHERE path = ?", (_b(str(file.path)),)
        ).fetchone()
        return row is not None and tuple(row) == (file.size, file.mtime_ns)

    @locked
    def records(self) -> list[PhotoRecord]:
        return self._load("1", ())

    @locked
    def paths(self) -> list[str]:
        return [_s(path) for (path,) in self.db.execute("SELECT path FROM photos")]  # type: ignore[misc]

    def _load(self, where: str, params: tuple[Any, ...]) -> list[PhotoRecord]:
        """Records of the photos `where` selects, children read one query per table."""
        cols = ", ".join(self._columns)
        rows = self.db.execute(f"SELECT id, {cols} FROM photos WHERE {where}", params).fetchall()
        if not rows:
            return []
        chosen = f"SELECT id FROM photos WHERE {where}"
        tags: dict[int, list[tuple[str, str, float]]] = defaultdict(list)
        query = f"SELECT photo, path, source, score FROM tags WHERE photo IN ({chosen}) "
        for photo, path, source, score in self.db.execute(query + "ORDER BY photo, ord", params):
            tags[photo].append((path, source, score))
        children: dict[str, dict[int, list[Any]]] = {}
        for table, fields in (
            ("negatives", "path"),
            ("detections", "path, score, x1, y1, x2, y2, model"),
            ("vectors", "name, row"),
        ):
            children[table] = defaultdict(list)
            order = "ORDER BY photo, ord" if table != "vectors" else ""
            sql = f"SELECT photo, {fields} FROM {table} WHERE photo IN ({chosen}) {order}"
            for photo, *values in self.db.execute(sql, params):
                children[table][photo].append(values)
        out = []
        for photo, *values in rows:
            record = PhotoRecord(
                **{
                    name: _field_value(name, v)
                    for name, v in zip(self._columns, values, strict=True)
                }
            )
            record.auto = [Tag(p, s, "auto") for p, src, s in tags[photo] if src == "auto"]
            record.user = [p for p, src, _ in tags[photo] if src == "user"]
            record.people = [p for p, src, _ in tags[photo] if src == PERSON_SOURCE]
            record.negatives = [p for (p,) in children["negatives"][photo]]
            record.detections = [
                Detection(p, s, (x1, y1, x2, y2), m)
                for p, s, x1, y1, x2, y2, m in children["detections"][photo]
            ]
            record.vectors = {name: row for name, row in children["vectors"][photo]}
            out.append(record)
        return out

    @locked
    def put_many(
        self, records: list[PhotoRecord], vectors: list[dict[str, np.ndarray]] | None = None
    ) -> None:
        """One transaction for the batch: all of it is committed, or none of it."""
        if self.readonly:
            raise IndexUnavailable(f"{self.folder}: the index is open read-only")
        self._append_vectors(records, vectors)
        latest = list({r.path: r for r in records}.values())
        with self.transaction() as db:
            self.write_records(db, latest)
            db.execute(
                "DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?",
                (KEEP_CHANGES,),
            )
            # a store's row width, so compaction can read it without the model
            db.executemany(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                [
                    (f"dim:{n}", str(self._stores[n].dim))
                    for n in {n for v in vectors or [] for n in v}
                ],
            )
            db.executemany(
                "INSERT INTO history (at, action, path, written_to, model_version, tags) "
                "VALUES (?, 'tagged', ?, ?, ?, ?)",
                [
                    (
                        r.tagged_at or time.time(),
                        _b(r.path),
                        _b(r.written_to),
                        r.model_version,
                        "\n".join(t.path for t in r.auto),
                    )
                    for r in latest
                ],
            )

    def write_records(self, db: sqlite3.Connection, records: Iterable[PhotoRecord]) -> None:
        """Upsert records with their children, inside the caller's transaction."""
        names = ["folder", "taken_s", *self._columns]
        cols = ", ".join(names)
        marks = ", ".join("?" * len(names))
        update = ", ".join(f"{n} = excluded.{n}" for n in names if n != "path")
        upsert = (
            f"INSERT INTO photos ({cols}) VALUES ({marks}) "
            f"ON CONFLICT(path) DO UPDATE SET {update} RETURNING id"
        )
        for r in records:
            values = [_b(os.path.dirname(r.path)), _taken_s(r.taken)]
            values += [_column_value(getattr(r, n)) for n in self._columns]
            photo = db.execute(upsert, values).fetchone()[0]
            for table in _CHILDREN:
                db.execute(f"DELETE FROM {table} WHERE photo = ?", (photo,))
            db.executemany(
                "INSERT INTO tags VALUES (?, ?, ?, ?, ?, ?)",
                [(photo, i, t.path, "auto", t.score, r.model_version) for i, t in enumerate(r.auto)]
                + [(photo, i, k, "user", 1.0, "") for i, k in enumerate(r.user)]
                + [(photo, i, n, PERSON_SOURCE, 1.0, "") for i, n in enumerate(r.people)],
            )
            db.executemany("INSERT INTO terms VALUES (?, ?, ?, ?)", _terms(photo, r))
            db.executemany(
                "INSERT INTO negatives VALUES (?, ?, ?)",
                [(photo, i, p) for i, p in enumerate(r.negatives)],
            )
            db.executemany(
                "INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(photo, i, d.path, d.score, *d.box, d.model) for i, d in enumerate(r.detections)],
            )
            db.executemany(
                "INSERT INTO vectors VALUES (?, ?, ?)",
                [(photo, name, row) for name, row in r.vectors.items()],
            )

    @locked
    def remove(self, path: Path | str) -> PhotoRecord | None:
        record = self.get(path)
        if record is not None:
            with self.transaction() as db:
                db.execute("DELETE FROM photos WHERE path = ?", (_b(record.path),))
                db.execute(
                    "INSERT INTO history (at, action, path) VALUES (?, 'removed', ?)",
                    (time.time(), _b(record.path)),
                )
        return record

    @locked
    def faces(self, path: Path | str | None = None) -> list[FaceRecord]:
        where, params = (
            ("WHERE photos.path = ?", (_b(str(path)),)) if path is not None else ("", ())
        )
        sql = (
            f"SELECT {_FACE_COLUMNS} FROM faces JOIN photos ON photos.id = faces.photo "
            f"{where} ORDER BY photos.path, number"
        )
        return [_face(row) for row in self.db.execute(sql, params)]

    def _replace_faces(self, path: str, faces: list[FaceRecord]) -> list[FaceRecord]:
        out = []
        with self.transaction() as db:
            row = db.execute("SELECT id FROM photos WHERE path = ?", (_b(path),)).fetchone()
            if row is None:
                raise KeyError(path)
            db.execute("DELETE FROM faces WHERE photo = ?", (row[0],))
            for f in faces:
                (face_id,) = db.execute(
                    "INSERT INTO faces (photo, number, score, x1, y1, x2, y2, landmarks, model, "
                    "store, row, name, source, similarity, not_names, grp) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        row[0],
                        f.number,
                        f.score,
                        *f.box,
                        json.dumps(f.landmarks),
                        f.model,
                        f.store,
                        f.row,
                        f.name,
                        f.source,
                        f.similarity,
                        json.dumps(f.not_names),
                        f.group,
                    ),
                ).fetchone()
                out.append(dataclasses.replace(f, photo=path, id=face_id))
        return out

    @locked
    def update_faces(self, faces: list[FaceRecord]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE faces SET name = ?, source = ?, similarity = ?, not_names = ?, grp = ? "
                "WHERE id = ?",
                [
                    (f.name, f.source, f.similarity, json.dumps(f.not_names), f.group, f.id)
                    for f in faces
                ],
            )

    @locked
    def forget_faces(self) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM faces").rowcount

    @locked
    def search(self, query: Node | None, flt: Filter | None = None) -> list[str]:
        """One SQL query: the boolean query as compound SELECTs on `terms`, filters as WHERE."""
        params: list[Any] = []
        sql = (
            f"SELECT path FROM photos WHERE {_where(query, flt or Filter(), params)} ORDER BY path"
        )
        return [_s(path) for (path,) in self.db.execute(sql, params)]  # type: ignore[misc]

    @locked
    def browse(
        self,
        query: Node | None,
        flt: Filter | None = None,
        offset: int = 0,
        limit: int = 60,
        facets: int = 40,
    ) -> ResultPage:
        """The search's ids from SQL, then numpy on a cached `_Cache`, in one snapshot: sorted
        by path rank, not by path, and the facets one `bincount` over the (name, photo) table.

        A `GROUP BY` on `terms` for the facets cost 700 ms a page at 100 000 photos, sorting
        every path 80 ms; cached, the library page costs ~25 ms (bench/web_latency.py).
        """
        import numpy as np

        flt = flt or Filter()
        with self._snapshot():
            cache = self._cache()
            table = cache.facets.get(flt.source)
            if table is None:
                table = cache.facets[flt.source] = self._facet_table(flt.source, cache.names)
            if query is None and flt.taken_from is flt.taken_before is flt.folder is None:
                ordered, found = cache.by_path, None  # every photo
            else:
                params: list[Any] = []
                if flt.taken_from is flt.taken_before is flt.folder is None and query is not None:
                    # the query's rows as they come: half the time of `photos WHERE id IN`
                    sql = f"SELECT group_concat(id) FROM ({_compile(query, flt, params)})"
                else:
                    sql = f"SELECT group_concat(id) FROM photos WHERE {_where(query, flt, params)}"
                found = np.unique(_ids(self.db.execute(sql, params).fetchone()[0]))
                ordered = found[np.argsort(cache.rank[found], kind="stable")]
            chosen = ordered[offset : offset + limit].tolist()
            rows = self.db.execute(
                f"SELECT id, path FROM photos WHERE id IN ({', '.join('?' * len(chosen))})",
                chosen,
            )
            path_of = {i: _s(path) for i, path in rows}
            paths = [path_of[i] for i in chosen]
            return ResultPage(len(ordered), paths, table.count(found, facets))  # type: ignore[arg-type]

    @locked
    def facets(
        self, query: Node | None, flt: Filter | None = None, limit: int = 40
    ) -> list[tuple[str, int]]:
        return self.browse(query, flt, 0, 0, limit).facets

    def _cache(self) -> _Cache:
        """The cache of this snapshot of the index, kept while the index is unchanged, which
        `PRAGMA data_version` (moves when another connection commits) and the connection's
        `total_changes` (when this one writes) tell. After a change it is patched with the
        photos the `changes` log names, or rebuilt (~1 s at 100 000 photos) when new tag
        names came or went, or too many photos changed."""
        version = (self.db.execute("PRAGMA data_version").fetchone()[0], self.db.total_changes)
        cache = self._cached
        if cache is None or cache.version != version:
            seq = self.db.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
            names = self._names()
            cache = (cache and self._patched(cache, seq, names)) or self._built(seq, names)
            cache.version = version
            self._cached = cache
        return cache

    def _names(self) -> list[str]:
        """Every hierarchical name of the keywords (not the names on faces, as `facets` has it):
        one seek per distinct tag path on `tags_path` (a skip scan),
        not a scan of every tag."""
        rows = self.db.execute(
            "WITH RECURSIVE held(path) AS (SELECT min(path) FROM tags WHERE source != ? "
            "UNION ALL SELECT (SELECT min(path) FROM tags WHERE path > held.path AND source != ?) "
            "FROM held WHERE held.path IS NOT NULL) SELECT path FROM held WHERE path IS NOT NULL",
            (PERSON_SOURCE, PERSON_SOURCE),
        )
        return sorted({name for (path,) in rows for name in path_keys(path)})

    def _built(self, seq: int, names: list[str]) -> _Cache:
        rows = self.db.execute("SELECT id, path FROM photos ORDER BY path").fetchall()
        return _Cache((0, 0), seq, names, *_ordered(rows))

    def _patched(self, cache: _Cache, seq: int, names: list[str]) -> _Cache | None:
        """The cache with the photos changed since it was made read again; None when that
        cannot be done (names changed, too many photos, log rows pruned before it read them)."""
        if names != cache.names or seq - cache.seq > PATCH_AT_MOST:
            return None
        if seq == cache.seq:
            return cache  # other tables changed, not photos
        oldest = self.db.execute("SELECT min(seq) FROM changes").fetchone()[0]
        if oldest is None or oldest > cache.seq + 1:
            return None
        import numpy as np

        rows = self.db.execute("SELECT DISTINCT photo FROM changes WHERE seq > ?", (cache.seq,))
        changed = sorted(photo for (photo,) in rows)
        marks = ", ".join("?" * len(changed))
        now = self.db.execute(f"SELECT id, path FROM photos WHERE id IN ({marks})", changed)
        gone = np.array(changed, np.int64)
        keep = (~np.isin(cache.by_path, gone)).tolist()
        ids = cache.by_path.tolist()
        kept = [(i, path) for i, path, k in zip(ids, cache.paths, keep, strict=True) if k]
        order = sorted(kept + now.fetchall(), key=lambda row: row[1])  # two sorted runs merged
        code = {name: i for i, name in enumerate(names)}
        facets = {}
        for source, table in cache.facets.items():
            sources = SOURCES[source]
            pairs = [
                (code[term], photo)
                for term, photo in self.db.execute(
                    f"SELECT DISTINCT term, photo FROM terms WHERE photo IN ({marks}) "
                    f"AND source IN ({', '.join('?' * len(sources))})",
                    [*changed, *sources],
                )
                if term in code
            ]
            held = np.array(pairs, np.int64).reshape(-1, 2)
            facets[source] = table.replaced(gone, held[:, 0], held[:, 1])
        return _Cache(cache.version, seq, names, *_ordered(order), facets)

    def _facet_table(self, source: SourceFilter, names: list[str]) -> FacetTable:
        """Each hierarchical name's photos (a prefix of a tag path from the root,
        `query.path_keys`; not mid-level names), one `group_concat` per name."""
        from phototag.library.tagindex import FacetTable

        sources = SOURCES[source]
        rows = dict(
            self.db.execute(
                "SELECT term, group_concat(DISTINCT photo) FROM terms "
                f"WHERE source IN ({', '.join('?' * len(sources))}) GROUP BY term",
                sources,
            ).fetchall()
        )
        return FacetTable.of(names, [_ids(rows.get(name)) for name in names])

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: the queries inside see the same commits of other processes."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")  # nothing was written: this only ends the read

    @locked
    def tagged(self, term: str) -> bool:
        row = self.db.execute("SELECT 1 FROM terms WHERE term = ? LIMIT 1", (term,)).fetchone()
        return row is not None

    @locked
    def vector_count(self, name: str) -> int:
        return self.db.execute("SELECT count(*) FROM vectors WHERE name = ?", (name,)).fetchone()[0]

    @locked
    def paths_of_rows(self, name: str, rows: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if not rows:
            return out
        sql = (
            "SELECT row, path FROM vectors JOIN photos ON photos.id = vectors.photo "
            f"WHERE name = ? AND row IN ({', '.join('?' * len(rows))})"
        )
        for row, path in self.db.execute(sql, [name, *rows]):
            out.setdefault(row, []).append(_s(path))
        return out

    @locked
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @locked
    def flush(self) -> None:
        """Nothing to do: every `put_many` and `remove` commits."""

    @locked
    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _face(row: tuple[Any, ...]) -> FaceRecord:
    face_id, path, number, score, x1, y1, x2, y2, marks, model, store, vec, *rest = row
    name, source, similarity, not_names, group = rest
    return FaceRecord(
        _s(path),  # type: ignore[arg-type]
        number,
        score,
        (x1, y1, x2, y2),
        tuple(tuple(p) for p in json.loads(marks)),
        model,
        store,
        vec,
        name,
        source,
        similarity,
        json.loads(not_names),
        group,
        face_id,
    )


def _ids(joined: str | None) -> np.ndarray:
    """Photo ids from a `group_concat` (None when no row matched)."""
    import numpy as np

    return np.fromstring(joined, np.int64, sep=",") if joined else np.empty(0, np.int64)


def _where(query: Node | None, flt: Filter, params: list[Any]) -> str:
    """The WHERE clause on `photos` for a query and filter; appends its parameters."""
    where = ["1"] if query is None else [f"id IN ({_compile(query, flt, params)})"]
    if flt.taken_from is not None:
        where.append("taken_s >= ?")
        params.append(int(flt.taken_from.astype("datetime64[s]").astype("int64")))
    if flt.taken_before is not None:
        where.append("taken_s < ?")
        params.append(int(flt.taken_before.astype("datetime64[s]").astype("int64")))
    if flt.folder is not None:
        top = _b(flt.folder.rstrip("/")) or b""
        where.append("(folder = ? OR substr(folder, 1, ?) = ?)")
        params += [top or b"/", len(top) + 1, top + b"/"]
    return " AND ".join(where)


def _compile(node: Node, flt: Filter, params: list[Any]) -> str:
    """The ids `node` finds, as one SELECT; operands are wrapped so compounds nest safely."""
    if isinstance(node, Term):
        sources = SOURCES[flt.source]
        params += [node.text, *sources, flt.min_score]
        marks = ", ".join("?" * len(sources))
        return (
            f"SELECT photo AS id FROM terms WHERE term = ? AND source IN ({marks}) AND score >= ?"
        )
    if isinstance(node, Not):
        return f"SELECT id FROM photos EXCEPT {_wrap(node.operand, flt, params)}"
    if isinstance(node, Or):
        return " UNION ".join(_wrap(child, flt, params) for child in node.operands)
    assert isinstance(node, And)
    positive = [c for c in node.operands if not isinstance(c, Not)]
    negative = [c.operand for c in node.operands if isinstance(c, Not)]
    parts = [_wrap(c, flt, params) for c in positive] or ["SELECT id FROM photos"]
    sql = " INTERSECT ".join(parts)
    for child in negative:
        sql += f" EXCEPT {_wrap(child, flt, params)}"
    return sql


def _wrap(node: Node, flt: Filter, params: list[Any]) -> str:
    return f"SELECT * FROM ({_compile(node, flt, params)})"
