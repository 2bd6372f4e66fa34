"""In-memory inverted index from tag terms to photo ids, for `search`.

The persistent index (TinyDB) is the truth; this mirrors the part of it a query needs so
a term costs one dictionary lookup instead of a scan of every record. Each tag path
`animal|bird|parrot` is filed under every level name (`animal`, `bird`, `parrot`) and every
path prefix (`animal|bird`, ...), separately per source so `--source` and `--min-score`
filter without re-reading records. The index layer calls `add`/`remove` on every write.

Queries evaluate on boolean masks over the photo-id space: AND/OR/NOT are then single
vectorised passes, measured faster than sorted-array set operations or Python sets at
100 000 photos (bench/search_benchmark.py). Not thread-safe: the caller holds a lock
around writes and searches.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from phototag.library.query import (
    SOURCES,
    Filter,
    Node,
    Not,
    Or,
    SourceFilter,
    Term,
    normalise,
    path_keys,
    term_keys,
)
from phototag.records import Source, Tag

_NO_DATE = np.datetime64("NaT", "s")


@dataclass(frozen=True)
class Entry:
    """What the search index needs of one photo; `id` is the persistent index's record id."""

    id: int
    tags: tuple[Tag, ...]
    taken: str | None = None  # EXIF date taken, ISO 8601
    folder: str = ""


def date_bound(text: str, end: bool = False) -> np.datetime64:
    """Parse a date for `--from`/`--to` at the precision given.

    `2023` means the whole year: as a start it is 2023-01-01, as an end (`end=True`) the
    exclusive bound 2024-01-01, so `--from 2023-03 --to 2023-05` includes all of May.
    """
    try:
        value = np.datetime64(text.strip())
    except ValueError:
        raise ValueError(
            f"bad date {text!r}: use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS"
        ) from None
    if np.isnat(value):
        raise ValueError(f"bad date {text!r}: a date is required")
    return (value + 1 if end else value).astype("datetime64[s]")


_OFFSET = re.compile(r"(?<=\d)(Z|[+-]\d\d:?\d\d)$")


def _taken(texts: Sequence[str | None]) -> np.ndarray:
    """Wall-clock times taken as datetime64[s]; an unreadable date is NaT, not a broken index.

    The UTC offset is dropped (people search by local time); numpy parses ISO strings in
    bulk 30 times faster than datetime.fromisoformat does one by one.
    """
    local = [_OFFSET.sub("", t) if t and len(t) > 19 else t for t in texts]  # 19: no offset
    try:
        return np.array(local, "datetime64[s]")
    except ValueError:
        return np.array([_one_date(t) for t in local], "datetime64[s]")


def _one_date(text: str | None) -> np.datetime64:
    try:
        return np.datetime64(text, "s")
    except ValueError:
        return _NO_DATE


def _postings_of(
    entries: Sequence[Entry],
) -> Iterator[tuple[tuple[Source, str], np.ndarray, np.ndarray]]:
    """(source, term), sorted photo ids and their best scores, for every term these photos hold.

    A photo's score for `animal` is the best of its tags below `animal`. Vectorised: one
    Python step per tag, then numpy sorts and groups the (term, photo) rows.
    """
    tags = [tag for entry in entries for tag in entry.tags]
    if not tags:
        return
    per_photo = [len(entry.tags) for entry in entries]
    tag_photo = np.repeat(np.array([entry.id for entry in entries], np.int64), per_photo)
    path_code: dict[str, int] = {}
    paths = np.array([path_code.setdefault(t.path, len(path_code)) for t in tags], np.int64)
    tag_user = np.array([t.source == "user" for t in tags], np.int64)
    tag_score = np.array([t.score for t in tags], np.float32)
    key_code: dict[str, int] = {}
    path_keys = [[key_code.setdefault(k, len(key_code)) for k in term_keys(p)] for p in path_code]
    per_path = np.array([len(keys) for keys in path_keys], np.int64)
    first_key = np.concatenate([[0], np.cumsum(per_path)[:-1]]).astype(np.int64)
    flat_keys = np.array([k for keys in path_keys for k in keys], np.int64)
    counts = per_path[paths]
    row = np.repeat(np.arange(len(paths)), counts)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    key = flat_keys[np.repeat(first_key[paths], counts) + offset]
    slot = key * 2 + tag_user[row]
    photo = tag_photo[row]
    score = tag_score[row]
    pair = slot * (int(photo.max()) + 1) + photo  # one sortable key per (slot, photo)
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    first = np.flatnonzero(np.diff(pair, prepend=-1))
    score = np.maximum.reduceat(score[order], first)  # best of a photo's tags under one term
    slot, photo = slot[order][first], photo[order][first]
    keys = list(key_code)
    starts = np.flatnonzero(np.diff(slot, prepend=-1)).tolist()
    for start, stop in zip(starts, [*starts[1:], len(slot)], strict=True):
        code = int(slot[start])
        source: Source = "user" if code % 2 else "auto"
        yield (source, keys[code // 2]), photo[start:stop], score[start:stop]


@dataclass(frozen=True)
class FacetTable:
    """Every hierarchical name (sorted) and the (name, photo) pairs holding it, as two flat
    arrays: the facets of any result set are then one `bincount`, not a pass per name. A search
    page with facets took 116 ms p50 name by name at 100 000 photos, 22 ms so (web_latency.py).
    """

    names: list[str]
    name_of: np.ndarray  # int, into `names`
    photos: np.ndarray  # int photo ids, one per pair; no pair twice

    @classmethod
    def of(cls, names: list[str], held: Sequence[np.ndarray]) -> FacetTable:
        """The table from each name's photo ids (`held[i]` holds `names[i]`, without repeats)."""
        name_of = np.repeat(np.arange(len(names)), [len(h) for h in held])
        photos = np.concatenate(held).astype(np.int64) if held else np.empty(0, np.int64)
        return cls(names, name_of, photos)

    def replaced(self, gone: np.ndarray, name_of: np.ndarray, photos: np.ndarray) -> FacetTable:
        """The table with the pairs of photos `gone` taken out and new pairs added."""
        keep = ~np.isin(self.photos, gone)
        return FacetTable(
            self.names,
            np.concatenate([self.name_of[keep], name_of]),
            np.concatenate([self.photos[keep], photos]),
        )

    def count(self, ids: np.ndarray | None, limit: int) -> list[tuple[str, int]]:
        """The names most held among photos `ids` (None: every photo), with how many hold each:
        what searching the name would add among them (`animal` counts `animal|bird|parrot`).
        Most first, then by name; none with zero."""
        pairs = self.name_of
        if ids is not None:
            size = max(int(self.photos.max(initial=-1)), int(ids.max(initial=-1))) + 1
            chosen = np.zeros(size, bool)
            chosen[ids] = True
            pairs = self.name_of[chosen[self.photos]]
        counts = np.bincount(pairs, minlength=len(self.names))
        order = np.argsort(-counts, kind="stable")[:limit]  # names are sorted: ties by name
        return [(self.names[i], int(counts[i])) for i in order.tolist() if counts[i]]


class _Posting:
    """Ids of the photos holding one term from one source, sorted, with their scores.

    Single-photo edits wait in `pending` (id -> score, None for removed) and merge on the next
    read, so a burst of writes costs one re-sort rather than one per write.
    """

    __slots__ = ("ids", "pending", "scores")

    def __init__(self, ids: np.ndarray, scores: np.ndarray) -> None:
        self.ids = ids
        self.scores = scores
        self.pending: dict[int, float | None] = {}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pending:
            changed = np.array(sorted(self.pending), np.int64)
            at = np.searchsorted(self.ids, changed)
            held = at < len(self.ids)
            held[held] = self.ids[at[held]] == changed[held]
            ids, scores = np.delete(self.ids, at[held]), np.delete(self.scores, at[held])
            added = [(i, s) for i, s in sorted(self.pending.items()) if s is not None]
            new_ids = np.array([i for i, _ in added], np.int64)
            at = np.searchsorted(ids, new_ids)  # insert in place: no re-sort of the posting
            self.ids = np.insert(ids, at, new_ids)
            self.scores = np.insert(scores, at, np.array([s for _, s in added], np.float32))
            self.pending.clear()
        return self.ids, self.scores


def _empty_posting() -> _Posting:
    return _Posting(np.empty(0, np.int64), np.empty(0, np.float32))


class TagIndex:
    """Terms -> photo ids for boolean queries, plus date and folder per photo for filters."""

    def __init__(self) -> None:
        self._entries: dict[int, Entry] = {}
        self._postings: dict[tuple[Source, str], _Posting] = {}
        self._alive = np.zeros(0, bool)  # indexed by photo id
        self._taken = np.full(0, _NO_DATE)
        self._folder = np.zeros(0, np.int32)
        self._folder_codes: dict[str, int] = {}
        self._folder_parts: list[tuple[str, ...]] = []  # path components, by folder code
        self._paths: set[str] = set()  # hierarchical names held (`animal`, `animal|bird`, ...)
        self._facet_tables: dict[SourceFilter, FacetTable] = {}

    @classmethod
    def build(cls, entries: Iterable[Entry]) -> TagIndex:
        """Index many photos at once: postings come out of one vectorised pass, no merges."""
        index = cls()
        entries = list(entries)
        index._store(entries)
        index._paths.update(p for entry in entries for t in entry.tags for p in path_keys(t.path))
        for slot, ids, scores in _postings_of(entries):
            index._postings[slot] = _Posting(ids, scores)
        return index

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, photo_id: int) -> bool:
        return photo_id in self._entries

    def add(self, entry: Entry) -> None:
        """Index one photo; a photo already indexed under that id is replaced."""
        self.remove(entry.id)
        self._facet_tables.clear()
        self._store([entry])
        self._paths.update(p for t in entry.tags for p in path_keys(t.path))
        for slot, _, scores in _postings_of([entry]):
            self._postings.setdefault(slot, _empty_posting()).pending[entry.id] = float(scores[0])

    def remove(self, photo_id: int) -> None:
        """Forget one photo; unknown ids are ignored so the caller can remove unconditionally."""
        entry = self._entries.pop(photo_id, None)
        if entry is None:
            return
        self._facet_tables.clear()
        for slot, _, _ in _postings_of([entry]):
            self._postings[slot].pending[photo_id] = None
        self._alive[photo_id] = False
        self._taken[photo_id] = _NO_DATE

    def ids(self) -> np.ndarray:
        """All indexed photo ids, ascending."""
        return np.flatnonzero(self._alive)

    def term_ids(
        self, term: str, source: SourceFilter = "any", min_score: float = 0.0
    ) -> np.ndarray:
        """Sorted ids of the photos one term (a name or a path from the root) finds."""
        parts = self._term_arrays(normalise(term), source, min_score)
        return functools.reduce(np.union1d, parts, np.empty(0, np.int64))

    def search(self, query: Node | None, flt: Filter | None = None) -> np.ndarray:
        """Ids of the photos matching `query` (None: every photo) and the filter, ascending."""
        flt = flt or Filter()
        found = self._alive.copy() if query is None else self._mask(query, flt)
        ids = np.flatnonzero(found)
        keep = np.ones(len(ids), bool)
        if flt.taken_from is not None:
            keep &= self._taken[ids] >= flt.taken_from  # NaT compares False: undated drop out
        if flt.taken_before is not None:
            keep &= self._taken[ids] < flt.taken_before
        if flt.folder is not None:
            keep &= np.isin(self._folder[ids], self._folders_under(flt.folder))
        return ids[keep]

    def facets(
        self, ids: np.ndarray, source: SourceFilter = "any", limit: int = 40
    ) -> list[tuple[str, int]]:
        """The hierarchical names most held among photos `ids`, with how many of them hold each
        (`FacetTable.count`); the table is kept until the next add or remove."""
        table = self._facet_tables.get(source)
        if table is None:
            names = sorted(self._paths)
            held = [
                functools.reduce(
                    np.union1d, self._term_arrays(n, source, 0.0), np.empty(0, np.int64)
                )
                for n in names
            ]
            table = self._facet_tables[source] = FacetTable.of(names, held)
        return table.count(ids, limit)

    def _store(self, entries: list[Entry]) -> None:
        """Record photos' ids, dates and folders; checks ids before changing anything."""
        ids = np.array([entry.id for entry in entries], np.int64)
        unique, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"photo id {unique[counts > 1][0]} given twice")
        known = [i for i in unique.tolist() if i in self._entries]
        if known:
            raise ValueError(f"photo id {known[0]} is already indexed")
        if len(ids) and ids.min() < 0:
            raise ValueError(f"photo id {ids.min()} is negative")
        if len(ids) and ids.max() >= len(self._alive):
            self._grow(int(ids.max()) + 1)
        self._entries.update((entry.id, entry) for entry in entries)
        self._alive[ids] = True
        self._taken[ids] = _taken([entry.taken for entry in entries])
        self._folder[ids] = [self._folder_code(entry.folder) for entry in entries]

    def _folder_code(self, folder: str) -> int:
        code = self._folder_codes.get(folder)
        if code is None:
            code = self._folder_codes[folder] = len(self._folder_parts)
            self._folder_parts.append(PurePath(folder).parts)
        return code

    def _grow(self, size: int) -> None:
        """Double the per-id arrays so n single adds cost O(n) copies in total."""
        size = max(size, 2 * len(self._alive), 1024)
        grown = len(self._alive)
        self._alive = np.concatenate([self._alive, np.zeros(size - grown, bool)])
        self._taken = np.concatenate([self._taken, np.full(size - grown, _NO_DATE)])
        self._folder = np.concatenate([self._folder, np.zeros(size - grown, np.int32)])

    def _folders_under(self, folder: str) -> np.ndarray:
        """Codes of folders at or below `folder`, by path components (`2023` is no `2023-old`)."""
        top = PurePath(folder).parts
        depth = len(top)
        under = [code for code, parts in enumerate(self._folder_parts) if parts[:depth] == top]
        return np.array(under, np.int32)

    def _term_arrays(self, term: str, source: SourceFilter, min_score: float) -> list[np.ndarray]:
        parts = []
        for src in SOURCES[source]:
            posting = self._postings.get((src, term))
            if posting is None:
                continue
            ids, scores = posting.arrays()
            parts.append(ids[scores >= min_score] if min_score > 0 else ids)
        return parts

    def _mask(self, node: Node, flt: Filter) -> np.ndarray:
        if isinstance(node, Term):
            mask = np.zeros(len(self._alive), bool)
            for ids in self._term_arrays(node.text, flt.source, flt.min_score):
                mask[ids] = True
            return mask
        if isinstance(node, Not):
            return self._alive & ~self._mask(node.operand, flt)
        if isinstance(node, Or):
            mask = self._mask(node.operands[0], flt)
            for child in node.operands[1:]:
                mask |= self._mask(child, flt)
            return mask
        # AND: intersect the positive operands, then take out the negated ones, so
        # `cat NOT night` never builds the complement of `night`.
        positive = [c for c in node.operands if not isinstance(c, Not)]
        negative = [c.operand for c in node.operands if isinstance(c, Not)]
        mask = self._mask(positive[0], flt) if positive else self._alive.copy()
        for child in positive[1:]:
            mask &= self._mask(child, flt)
        for child in negative:
            mask &= ~self._mask(child, flt)
        return mask
