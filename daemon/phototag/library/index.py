"""The local index: one TinyDB document per photo, vectors in compact side files.

TinyDB holds what people search and what re-scans compare (path, size, mtime, content
hash, tags, model version). Embeddings and colour histograms are float16 rows in
append-only files beside it, not JSON lists: 1280 floats cost 2.5 KB, not 25 KB.
Lookups by path and by content hash go through in-memory maps, so nothing scans
every document; writes are cached and flushed atomically in batches. `search` goes through
an in-memory inverted index over tags (`tagindex.TagIndex`), built on first use and kept
current by every write, so the service answers queries without re-reading records.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
from tinydb import TinyDB
from tinydb.middlewares import CachingMiddleware
from tinydb.storages import Storage

from phototag.files.fileio import atomic_write
from phototag.library.query import Node
from phototag.library.tagindex import Entry, Filter, TagIndex
from phototag.records import Detection, PhotoFile, Tag


class IndexUnavailable(Exception):
    """The index cannot be opened (in use, unreadable); one line for the user."""


@dataclass
class PhotoRecord:
    """Everything the index knows about one photo."""

    path: str
    size: int
    mtime_ns: int
    sha256: str  # of the file as it is on disk now, after our write
    width: int = 0
    height: int = 0
    taken: str | None = None  # EXIF DateTimeOriginal, ISO 8601
    # str(ModelVersion) that decided every tag in `auto`, at `tagged_at` (refine re-decides them
    # all at once); "" when the photo has no auto tags of ours (undone), so refine leaves it.
    model_version: str = ""
    auto: list[Tag] = field(default_factory=list)  # our tags with their scores, as in the file
    user: list[str] = field(default_factory=list)  # the user's keywords in the file
    negatives: list[str] = field(default_factory=list)  # our keywords the user deleted
    written_to: str | None = None  # the file or sidecar holding the keywords
    sidecar_size: int = 0  # the photo's XMP sidecar as last seen; 0, 0: none
    sidecar_mtime_ns: int = 0
    tagged_at: float = 0.0  # Unix time
    vectors: dict[str, int] = field(default_factory=dict)  # vector store name -> row
    detections: list[Detection] = field(default_factory=list)  # boxes the detector found

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["auto"] = [[t.path, round(t.score, 4)] for t in self.auto]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PhotoRecord:
        values = dict(doc)
        values["auto"] = [Tag(p, s, "auto") for p, s in doc.get("auto", [])]
        values["detections"] = [
            Detection(d["path"], d["score"], tuple(d["box"]), d.get("model", ""))
            for d in doc.get("detections", [])
        ]
        return cls(**values)


def search_entry(doc_id: int, doc: dict[str, Any]) -> Entry:
    """What the tag index keeps of one stored document: auto tags, the user's keywords as flat
    tags, the date taken and the folder. Reads the document, not a PhotoRecord: it needs none
    of the rest, and making records costs 0.7 s per 100 000 photos (docs/benchmarks.md)."""
    tags = [Tag(path, score, "auto") for path, score in doc.get("auto", [])]
    tags += [Tag(keyword, 1.0, "user") for keyword in doc.get("user", [])]
    return Entry(doc_id, tuple(tags), doc.get("taken"), os.path.dirname(doc["path"]))


def under(records: Iterable[PhotoRecord], roots: Sequence[Path]) -> list[PhotoRecord]:
    """The records of photos at or below `roots` (files or folders); all of them when no roots."""
    if not roots:
        return list(records)
    wanted = {Path(os.path.abspath(root)) for root in roots}
    return [r for r in records if not wanted.isdisjoint(_and_parents(r.path))]


def _and_parents(path: str) -> set[Path]:
    full = Path(os.path.abspath(path))
    return {full, *full.parents}


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


class VectorStore:
    """Fixed-width float16 rows appended to a raw file; a torn last row is dropped on open."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * 2
        size = path.stat().st_size if path.exists() else 0
        if size % self.row_bytes:
            with path.open("r+b") as f:
                f.truncate(size - size % self.row_bytes)
        self.rows = size // self.row_bytes
        self._map: np.ndarray | None = None

    def append(self, vectors: np.ndarray) -> int:
        """Append rows, returning the index of the first."""
        data = np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1, self.dim)
        with self.path.open("ab") as f:
            f.write(data.tobytes())
        first, self.rows = self.rows, self.rows + len(data)
        self._map = None
        return first

    def get(self, rows: np.ndarray | list[int], dtype: type = np.float32) -> np.ndarray:
        if self._map is None or len(self._map) < self.rows:
            self._map = np.memmap(self.path, np.float16, "r", shape=(self.rows, self.dim))
        return np.asarray(self._map[np.asarray(rows, dtype=np.int64)], dtype=dtype)


P = ParamSpec("P")
R = TypeVar("R")


def _locked(method: Callable[P, R]) -> Callable[P, R]:
    """Serialise index calls: the pipeline's writer thread and its reader share one Index."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._mutex:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class Index:
    """The photo index in one folder; one writer process at a time (a lock file says who)."""

    def __init__(self, folder: Path, readonly: bool = False) -> None:
        self.folder = folder
        self.readonly = readonly
        self._lock: int | None = None
        self._mutex = threading.RLock()
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
        self._stores: dict[str, VectorStore] = {}
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

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: Path | str) -> PhotoRecord | None:
        doc_id = self._by_path.get(str(path))
        return None if doc_id is None else PhotoRecord.from_doc(self.db.get(doc_id=doc_id))

    @_locked
    def with_sha(self, sha256: str) -> list[PhotoRecord]:
        return [PhotoRecord.from_doc(self.db.get(doc_id=i)) for i in self._by_sha.get(sha256, ())]

    @_locked
    def unchanged(self, file: PhotoFile) -> bool:
        """True when the file is indexed with this exact size and mtime: nothing to do."""
        doc_id = self._by_path.get(str(file.path))
        if doc_id is None:
            return False
        doc = self.db.get(doc_id=doc_id)
        return doc["size"] == file.size and doc["mtime_ns"] == file.mtime_ns

    @_locked
    def records(self) -> list[PhotoRecord]:
        with _gc_paused():  # 0.7 s at 100 000 photos, 2.3 s through `db.all()` without the pause
            return [PhotoRecord.from_doc(doc) for doc in self._documents().values()]

    @_locked
    def put(self, record: PhotoRecord, vectors: dict[str, np.ndarray] | None = None) -> None:
        """Insert or replace the record for `record.path`, appending its vectors."""
        self.put_many([record], [vectors or {}])

    @_locked
    def put_many(
        self, records: list[PhotoRecord], vectors: list[dict[str, np.ndarray]] | None = None
    ) -> None:
        """Insert or replace many records at once (of one path, the last wins), with their vectors.

        TinyDB rebuilds its whole table on every insert or remove, so a batch costs one rebuild
        here instead of two per record: in an index of 10 000 photos that is ~17 ms per call.
        """
        for record, named in zip(records, vectors or [{}] * len(records), strict=True):
            for name, vector in named.items():
                record.vectors[name] = self.store(name, vector.shape[-1]).append(vector)
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

    @_locked
    def move(self, old: str, new: PhotoFile, written_to: str | None = None) -> PhotoRecord:
        """Re-point a record at its new path; tags and vectors come along, no inference."""
        record = self.get(old)
        if record is None:
            raise KeyError(old)
        self.remove(old)
        record.path, record.size, record.mtime_ns = str(new.path), new.size, new.mtime_ns
        record.written_to = written_to
        self.put(record)
        return record

    @_locked
    def remove(self, path: Path | str) -> PhotoRecord | None:
        record = self.get(path)
        if record is not None:
            doc_id = self._by_path[record.path]
            self._forget(record.path, record.sha256)
            self.db.remove(doc_ids=[doc_id])
            if self._tags is not None:
                self._tags.remove(doc_id)
        return record

    @_locked
    def tag_index(self) -> TagIndex:
        """The inverted index over tags, built from every record on first use."""
        if self._tags is None:
            with _gc_paused():
                docs = self._documents().items()
                self._tags = TagIndex.build(search_entry(int(i), doc) for i, doc in docs)
        return self._tags

    @_locked
    def search(self, query: Node | None, flt: Filter | None = None) -> list[str]:
        """Paths of the photos matching a parsed query (None: all) and the filter, sorted.

        Paths, not records: printing them is what most searches do, and records cost 0.7 s
        per 100 000 photos to make; `get` has the rest.
        """
        return sorted(map(self._path_of.__getitem__, self.tag_index().search(query, flt).tolist()))

    @_locked
    def store(self, name: str, dim: int) -> VectorStore:
        store = self._stores.get(name)
        if store is None:
            store = self._stores[name] = VectorStore(self.folder / f"{name}.f16", dim)
        if store.dim != dim:
            raise IndexUnavailable(f"vector store {name} holds {store.dim}-d rows, not {dim}-d")
        return store

    @_locked
    def vectors(
        self, name: str, records: list[PhotoRecord], dim: int, dtype: type = np.float32
    ) -> np.ndarray:
        """The stored rows of `name` for these records (all must have one), as `dtype`.

        float16 keeps a whole library's embeddings at half the memory; `similarity` converts
        them in chunks.
        """
        return self.store(name, dim).get([r.vectors[name] for r in records], dtype)

    @_locked
    def flush(self) -> None:
        if not self.readonly:
            self.db.storage.flush()

    @_locked
    def close(self) -> None:
        if self.readonly:
            self.db.storage.storage.close()
        else:
            self.db.close()  # flushes the write cache
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
