"""The TinyDB backend (`index.backend: tinydb`): one readable JSON document per photo.

For small libraries and for people who want to read their index. Lookups by path and by
content hash go through in-memory maps, so nothing scans every document; writes are cached
and flushed atomically in batches, rewriting the whole file, so one process writes at a time.
`search` goes through an in-memory inverted index over tags (`tagindex.TagIndex`), built on
first use and kept current by every write.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tinydb import TinyDB
from tinydb.middlewares import CachingMiddleware
from tinydb.storages import Storage
from tinydb.table import Table

from phototag.files.fileio import atomic_write
from phototag.library.index import Index, IndexUnavailable, PhotoRecord, locked
from phototag.library.query import PEOPLE_ROOT, Node, Term
from phototag.library.tagindex import Entry, Filter, TagIndex
from phototag.records import LEVEL_SEP, FaceRecord, PhotoFile, Tag


def search_entry(doc_id: int, doc: dict[str, Any]) -> Entry:
    """What the tag index keeps of one stored document: auto tags, the user's keywords as flat
    tags, the date taken and the folder. Reads the document, not a PhotoRecord: it needs none
    of the rest, and making records costs 0.7 s per 100 000 photos (docs/benchmarks.md)."""
    tags = [Tag(path, score, "auto") for path, score in doc.get("auto", [])]
    tags += [Tag(keyword, 1.0, "user") for keyword in doc.get("user", [])]
    tags += [Tag(f"{PEOPLE_ROOT}{LEVEL_SEP}{n}", 1.0, "auto") for n in doc.get("people", [])]
    return Entry(doc_id, tuple(tags), doc.get("taken"), os.path.dirname(doc["path"]))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector while loading or indexing every record: each of its full
    passes walks all the objects already made, so at 100 000 photos it made opening the
    index, building the tag index and `records()` 1.7 to 4.6 times slower
    (docs/benchmarks.md). The records hold no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class AtomicJSONStorage(Storage):
    """TinyDB's JSON storage, but written to a temp file and renamed, so a crash never truncates it."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise IndexUnavailable(f"{self.path}: index file is corrupt: {exc}") from None

    def write(self, data: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(data, separators=(",", ":")).encode())


class TinyDBIndex(Index):
    """The photo index as one TinyDB JSON file; one writer process at a time (a lock file
    says who), since every flush rewrites the whole file."""

    def __init__(self, folder: Path, readonly: bool = False) -> None:
        super().__init__(folder, readonly)
        self._lock: int | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not readonly:
                self._take_lock()
        except OSError as exc:
            raise IndexUnavailable(f"{folder}: cannot open index: {exc.strerror or exc}") from None
        storage = CachingMiddleware(AtomicJSONStorage)
        storage.WRITE_CACHE_SIZE = 1_000_000  # we flush ourselves, once per batch
        self.db = TinyDB(str(folder / "photos.json"), storage=storage)
        self._by_path: dict[str, int] = {}
        self._path_of: dict[int, str] = {}  # the reverse, for search results
        self._by_sha: dict[str, set[int]] = {}
        with _gc_paused():
            for doc_id, doc in self._documents().items():
                self._remember(doc["path"], doc["sha256"], int(doc_id))
        self._tags: TagIndex | None = None  # built by the first search, then kept current

    def _take_lock(self) -> None:
        self._lock = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise IndexUnavailable(
                f"{self.folder}: the index is in use by another phototag process "
                "(is the service running? stop it, or let it do the work)"
            ) from None

    def _documents(self) -> dict[str, dict[str, Any]]:
        """The stored documents by id, as cached: TinyDB's `all()` copies every one of them,
        and opening the index, searching and making records only read them."""
        return (self.db.storage.read() or {}).get(self.db.default_table_name, {})

    def _remember(self, path: str, sha: str, doc_id: int) -> None:
        self._by_path[path] = doc_id
        self._path_of[doc_id] = path
        self._by_sha.setdefault(sha, set()).add(doc_id)

    def _forget(self, path: str, sha: str) -> None:
        doc_id = self._by_path.pop(path)
        del self._path_of[doc_id]
        ids = self._by_sha.get(sha, set())
        ids.discard(doc_id)
        if not ids:
            self._by_sha.pop(sha, None)

    def __len__(self) -> int:
        return len(self._by_path)

    def get(self, path: Path | str) -> PhotoRecord | None:
        doc_id = self._by_path.get(str(path))
        return None if doc_id is None else PhotoRecord.from_doc(self.db.get(doc_id=doc_id))

    @locked
    def with_sha(self, sha256: str) -> list[PhotoRecord]:
        return [PhotoRecord.from_doc(self.db.get(doc_id=i)) for i in self._by_sha.get(sha256, ())]

    @locked
    def unchanged(self, file: PhotoFile) -> bool:
        """True when the file is indexed with this exact size and mtime: nothing to do."""
        doc_id = self._by_path.get(str(file.path))
        if doc_id is None:
            return False
        doc = self.db.get(doc_id=doc_id)
        return doc["size"] == file.size and doc["mtime_ns"] == file.mtime_ns

    @locked
    def records(self) -> list[PhotoRecord]:
        with _gc_paused():  # 0.7 s at 100 000 photos, 2.3 s through `db.all()` without the pause
            return [PhotoRecord.from_doc(doc) for doc in self._documents().values()]

    @locked
    def paths(self) -> list[str]:
        return list(self._by_path)

    @locked
    def put_many(
        self, records: list[PhotoRecord], vectors: list[dict[str, np.ndarray]] | None = None
    ) -> None:
        """Insert or replace many records at once (of one path, the last wins), with their vectors.

        TinyDB rebuilds its whole table on every insert or remove, so a batch costs one rebuild
        here instead of two per record: in an index of 10 000 photos that is ~17 ms per call.
        """
        self._append_vectors(records, vectors)
        latest = list({r.path: r for r in records}.values())
        old = [self._by_path[r.path] for r in latest if r.path in self._by_path]
        for doc_id in old:
            doc = self.db.get(doc_id=doc_id)
            self._forget(doc["path"], doc["sha256"])
            if self._tags is not None:
                self._tags.remove(doc_id)
        if old:
            self.db.remove(doc_ids=old)
        if latest:
            docs = [r.to_doc() for r in latest]
            doc_ids = self.db.insert_multiple(docs)
            for record, doc, doc_id in zip(latest, docs, doc_ids, strict=True):
                self._remember(record.path, record.sha256, doc_id)
                if self._tags is not None:
                    self._tags.add(search_entry(doc_id, doc))

    @locked
    def remove(self, path: Path | str) -> PhotoRecord | None:
        record = self.get(path)
        if record is not None:
            doc_id = self._by_path[record.path]
            self._forget(record.path, record.sha256)
            self.db.remove(doc_ids=[doc_id])
            if self._tags is not None:
                self._tags.remove(doc_id)
            self._faces().remove(doc_ids=self._face_ids(record.path))
        return record

    def _faces(self) -> Table:
        """Faces in their own table of the same file, one document each."""
        return self.db.table("faces")

    def _face_ids(self, path: str) -> list[int]:
        return [f.doc_id for f in self._faces().all() if f["photo"] == path]

    @locked
    def faces(self, path: Path | str | None = None) -> list[FaceRecord]:
        found = [
            FaceRecord.from_doc({**doc, "id": doc.doc_id})
            for doc in self._faces().all()
            if path is None or doc["photo"] == str(path)
        ]
        return sorted(found, key=lambda f: (f.photo, f.number))

    def _replace_faces(self, path: str, faces: list[FaceRecord]) -> list[FaceRecord]:
        if path not in self._by_path:
            raise KeyError(path)
        table = self._faces()
        table.remove(doc_ids=self._face_ids(path))
        docs = [{**f.to_doc(), "photo": path, "id": 0} for f in faces]
        ids = table.insert_multiple(docs)
        return [FaceRecord.from_doc({**d, "id": i}) for d, i in zip(docs, ids, strict=True)]

    @locked
    def update_faces(self, faces: list[FaceRecord]) -> None:
        table = self._faces()
        for f in faces:
            fields = {"name": f.name, "source": f.source, "similarity": f.similarity}
            table.update(fields | {"not_names": f.not_names, "group": f.group}, doc_ids=[f.id])

    @locked
    def forget_faces(self) -> int:
        table = self._faces()
        count = len(table)
        table.truncate()
        return count

    @locked
    def tag_index(self) -> TagIndex:
        """The inverted index over tags, built from every record on first use."""
        if self._tags is None:
            with _gc_paused():
                docs = self._documents().items()
                self._tags = TagIndex.build(search_entry(int(i), doc) for i, doc in docs)
        return self._tags

    @locked
    def search(self, query: Node | None, flt: Filter | None = None) -> list[str]:
        """Paths of the photos matching a parsed query (None: all) and the filter, sorted.

        Paths, not records: printing them is what most searches do, and records cost 0.7 s
        per 100 000 photos to make; `get` has the rest.
        """
        return sorted(map(self._path_of.__getitem__, self.tag_index().search(query, flt).tolist()))

    @locked
    def facets(
        self, query: Node | None, flt: Filter | None = None, limit: int = 40
    ) -> list[tuple[str, int]]:
        tags = self.tag_index()
        return tags.facets(tags.search(query, flt), flt.source if flt else "any", limit)

    @locked
    def tagged(self, term: str) -> bool:
        return bool(self.tag_index().search(Term(term)).size)

    @locked
    def flush(self) -> None:
        if not self.readonly:
            self.db.storage.flush()

    @locked
    def close(self) -> None:
        if self.readonly:
            self.db.storage.storage.close()
        else:
            self.db.close()  # flushes the write cache
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
