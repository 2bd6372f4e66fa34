"""The contract of the local index: what it stores per photo and the calls every backend answers.

Two backends keep it: SQLite (`sqlindex`, the default: many processes at once, commits per
batch, search in SQL) and TinyDB (`tinyindex`, one readable JSON file, one writer process).
Both keep embeddings and colour histograms as float16 rows in append-only files beside the
index, not in it: 1280 floats cost 2.5 KB, and `similar` maps the file instead of reading rows.
"""

from __future__ import annotations

import abc
import fcntl
import functools
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from phototag.library.query import Filter, Node
from phototag.records import Detection, FaceRecord, PhotoFile, Position, Tag

if TYPE_CHECKING:  # numpy loads where vectors are read or written: `search` reads none
    import numpy as np

Backend = Literal["sqlite", "tinydb"]


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
    sidecar_sha256: str = ""  # its content hash ("" in records from before it was kept)
    tagged_at: float = 0.0  # Unix time
    vectors: dict[str, int] = field(default_factory=dict)  # vector store name -> row
    detections: list[Detection] = field(default_factory=list)  # boxes the detector found
    position: Position | None = None  # GPS, so refine re-decides the place without reading
    people: list[str] = field(default_factory=list)  # names on its faces: search finds them

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
        values["position"] = Position(**doc["position"]) if doc.get("position") else None
        return cls(**values)


@dataclass(frozen=True)
class ResultPage:
    """How many photos a search finds, some of their paths (sorted), and its facets."""

    total: int
    paths: list[str]
    facets: list[tuple[str, int]]  # as `Index.facets`


def under(records: Iterable[PhotoRecord], roots: Sequence[Path]) -> list[PhotoRecord]:
    """The records of photos at or below `roots` (files or folders); all of them when no roots."""
    if not roots:
        return list(records)
    wanted = {Path(os.path.abspath(root)) for root in roots}
    return [r for r in records if not wanted.isdisjoint(_and_parents(r.path))]


def _and_parents(path: str) -> set[Path]:
    full = Path(os.path.abspath(path))
    return {full, *full.parents}


class VectorStore:
    """Fixed-width float16 rows appended to a raw file, shared by every process of a library.

    Appends hold an exclusive `flock` on the file, so rows of two processes never interleave;
    a torn last row (a writer killed mid-row) is cut off by the next append, under that lock.
    The index stores a row number only after the row is written, so readers never see a torn
    row; rows of a writer killed before its commit are orphans nothing points to.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * 2
        self.rows = (path.stat().st_size if path.exists() else 0) // self.row_bytes
        self._map: np.ndarray | None = None

    def append(self, vectors: np.ndarray) -> int:
        """Append rows, returning the index of the first."""
        import numpy as np

        data = np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1, self.dim)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size % self.row_bytes:
                os.ftruncate(fd, size - size % self.row_bytes)
            first = size // self.row_bytes
            view = memoryview(data.tobytes())
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)  # releases the lock
        self.rows = first + len(data)
        return first

    def get(self, rows: np.ndarray | list[int], dtype: type | str = "float32") -> np.ndarray:
        import numpy as np

        wanted = np.asarray(rows, dtype=np.int64)
        if self._map is None or (len(wanted) and int(wanted.max()) >= len(self._map)):
            self.rows = self.path.stat().st_size // self.row_bytes  # others may have appended
            self._map = np.memmap(self.path, np.float16, "r", shape=(self.rows, self.dim))
        return np.asarray(self._map[wanted], dtype=dtype)


P = ParamSpec("P")
R = TypeVar("R")


def locked(method: Callable[P, R]) -> Callable[P, R]:
    """Serialise index calls: the pipeline's writer thread and its reader share one Index."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._mutex:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class Index(abc.ABC):
    """The photo index in one folder: records by path, vectors in stores beside them."""

    def __init__(self, folder: Path, readonly: bool = False) -> None:
        self.folder = folder
        self.readonly = readonly
        self._mutex = threading.RLock()
        self._stores: dict[str, VectorStore] = {}

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def get(self, path: Path | str) -> PhotoRecord | None: ...

    @abc.abstractmethod
    def with_sha(self, sha256: str) -> list[PhotoRecord]: ...

    @abc.abstractmethod
    def unchanged(self, file: PhotoFile) -> bool:
        """True when the file is indexed with this exact size and mtime: nothing to do."""

    @abc.abstractmethod
    def records(self) -> list[PhotoRecord]: ...

    @abc.abstractmethod
    def paths(self) -> list[str]:
        """Every indexed path: what a catch-up compares with the disk, without making records."""

    @abc.abstractmethod
    def put_many(
        self, records: list[PhotoRecord], vectors: list[dict[str, np.ndarray]] | None = None
    ) -> None:
        """Insert or replace many records at once (of one path, the last wins), with their vectors."""

    @abc.abstractmethod
    def remove(self, path: Path | str) -> PhotoRecord | None: ...

    @abc.abstractmethod
    def search(self, query: Node | None, flt: Filter | None = None) -> list[str]:
        """Paths of the photos matching a parsed query (None: all) and the filter, sorted."""

    def browse(
        self,
        query: Node | None,
        flt: Filter | None = None,
        offset: int = 0,
        limit: int = 60,
        facets: int = 40,
    ) -> ResultPage:
        """A page of a search (what a library page shows): `limit` paths from `offset` on."""
        found = self.search(query, flt)
        return ResultPage(
            len(found), found[offset : offset + limit], self.facets(query, flt, facets)
        )

    @abc.abstractmethod
    def facets(
        self, query: Node | None, flt: Filter | None = None, limit: int = 40
    ) -> list[tuple[str, int]]:
        """The hierarchical tag names most held by the photos a search finds, with how many
        hold each (what searching the name would find among them); most first, then by name."""

    @abc.abstractmethod
    def tagged(self, term: str) -> bool:
        """Whether any photo is found by this one term (for "no photo is tagged ..." hints)."""

    @abc.abstractmethod
    def faces(self, path: Path | str | None = None) -> list[FaceRecord]:
        """The faces of one photo (by number), or of every photo (None)."""

    @abc.abstractmethod
    def _replace_faces(self, path: str, faces: list[FaceRecord]) -> list[FaceRecord]:
        """Make `faces` the photo's faces (none: it has none), returning them with their ids."""

    @abc.abstractmethod
    def update_faces(self, faces: list[FaceRecord]) -> None:
        """Store the names, negatives, similarity and group of faces already indexed (by id)."""

    @abc.abstractmethod
    def forget_faces(self) -> int:
        """Remove every face record; returns how many there were."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Make every write so far durable for other processes."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @locked
    def put(self, record: PhotoRecord, vectors: dict[str, np.ndarray] | None = None) -> None:
        """Insert or replace the record for `record.path`, appending its vectors."""
        self.put_many([record], [vectors or {}])

    @locked
    def move(self, old: str, new: PhotoFile, written_to: str | None = None) -> PhotoRecord:
        """Re-point a record at its new path; tags, vectors and faces come along, no inference."""
        record = self.get(old)
        if record is None:
            raise KeyError(old)
        faces = self.faces(old)
        self.remove(old)
        record.path, record.size, record.mtime_ns = str(new.path), new.size, new.mtime_ns
        record.written_to = written_to
        self.put(record)
        if faces:
            self.put_faces(record.path, [replace(f, photo=record.path) for f in faces])
        return record

    @locked
    def put_faces(
        self, path: str, faces: list[FaceRecord], embeddings: np.ndarray | None = None
    ) -> list[FaceRecord]:
        """Replace the faces of an indexed photo; `embeddings` (one row each) go to `store`."""
        if embeddings is not None and len(faces):
            first = self.store(faces[0].store, embeddings.shape[-1]).append(embeddings)
            faces = [replace(f, row=first + i) for i, f in enumerate(faces)]
        return self._replace_faces(path, faces)

    @locked
    def face_vectors(self, faces: list[FaceRecord], dim: int) -> np.ndarray:
        """The embeddings of faces (of one store), float32 [len(faces), dim]."""
        if not faces:
            import numpy as np

            return np.zeros((0, dim), np.float32)
        return self.store(faces[0].store, dim).get([f.row for f in faces])

    def _append_vectors(
        self, records: list[PhotoRecord], vectors: list[dict[str, np.ndarray]] | None
    ) -> None:
        for record, named in zip(records, vectors or [{}] * len(records), strict=True):
            for name, vector in named.items():
                record.vectors[name] = self.store(name, vector.shape[-1]).append(vector)

    def _store_path(self, name: str) -> Path:
        """The file of a vector store (SQLite names a compacted one in its meta table)."""
        return self.folder / f"{name}.f16"

    @locked
    def store(self, name: str, dim: int) -> VectorStore:
        store = self._stores.get(name)
        if store is None:
            store = self._stores[name] = VectorStore(self._store_path(name), dim)
        if store.dim != dim:
            raise IndexUnavailable(f"vector store {name} holds {store.dim}-d rows, not {dim}-d")
        return store

    @locked
    def vector_count(self, name: str) -> int:
        """How many photos have a `name` vector: what `similar` without loading records
        needs to say how many photos it cannot compare."""
        return sum(name in r.vectors for r in self.records())

    @locked
    def paths_of_rows(self, name: str, rows: Sequence[int]) -> dict[int, list[str]]:
        """The photos whose `name` vector is one of `rows`, by row: what an ANN hit (a row
        number) is now. A row no photo names (removed, re-analysed) is not in the answer."""
        wanted = set(rows)
        out: dict[int, list[str]] = {}
        for r in self.records():
            row = r.vectors.get(name)
            if row in wanted:
                out.setdefault(row, []).append(r.path)
        return out

    @locked
    def vectors(
        self, name: str, records: list[PhotoRecord], dim: int, dtype: type | str = "float32"
    ) -> np.ndarray:
        """The stored rows of `name` for these records (all must have one), as `dtype`.

        float16 keeps a whole library's embeddings at half the memory; `similarity` converts
        them in chunks.
        """
        return self.store(name, dim).get([r.vectors[name] for r in records], dtype)


def open_index(folder: Path, backend: Backend = "sqlite", readonly: bool = False) -> Index:
    """The index in `folder` through the configured backend (`index.backend`)."""
    if backend == "tinydb":
        from phototag.library.tinyindex import TinyDBIndex

        return TinyDBIndex(folder, readonly)
    from phototag.library.sqlindex import SqliteIndex

    return SqliteIndex(folder, readonly)
