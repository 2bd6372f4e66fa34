"""Advice on the user's keywords: ones that look imprecise, and tags that look missing.

Nothing here writes: the user decides (`phototag suggest --accept` writes one keyword the user
chose). Scores come through `ScoresFor`, a function from records to tag-path scores: the CNN's
path scores stored at tag time (`cnn_scores`), plus TagProp's probabilities of the user's own
keywords once `phototag train` has learned them (`learned_scores`). The maths are pure
functions on arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from phototag.config import WriteConfig
from phototag.files import metadata, safeopen
from phototag.learn import train
from phototag.library.index import Index, PhotoRecord
from phototag.pipeline import labels
from phototag.pipeline.runner import on_disk, with_keywords
from phototag.pipeline.tagger import Tagger
from phototag.records import LEVEL_SEP, Tag

MISSING_ABOVE = 0.5  # a tag path scoring this much, absent from the photo, looks missing
# A user keyword naming tag paths that all score less looks imprecise, when the model is
# confident (MISSING_ABOVE) of something else: an unsure model is no reason to doubt the user.
IMPRECISE_BELOW = 0.05

Kind = Literal["imprecise", "missing"]


@dataclass(frozen=True)
class TagScores:
    """Scores of tag paths for some photos: row i for the i-th record asked about."""

    paths: list[str]  # "animal|mammal|cat"; every ancestor of a path is in the list too
    values: np.ndarray  # float32 [n_photos, n_paths]


ScoresFor = Callable[[list[PhotoRecord]], TagScores]


@dataclass(frozen=True)
class Suggestion:
    path: str  # the photo
    kind: Kind
    tag: str  # imprecise: the user's keyword; missing: the tag path to add
    score: float
    instead: str | None = None  # imprecise: the photo's most confident specific tag path


def from_files(
    records: list[PhotoRecord], cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES
) -> list[PhotoRecord]:
    """The records with their keywords as the files have them now (the user may have edited
    them since they were indexed); a file that cannot be read keeps its indexed keywords."""
    out = []
    for record in records:
        try:
            out.append(with_keywords(record, metadata.read(Path(record.path), cfg, max_bytes)))
        except metadata.MetadataError:
            out.append(record)
    return out


def accept(
    path: Path,
    tag: Tag,
    index: Index | None,
    cfg: WriteConfig,
    max_bytes: int = safeopen.DEFAULT_MAX_BYTES,
) -> Path:
    """Write `tag` as the user's own keyword (the user chose it); return the file changed."""
    written_to = metadata.accept(path, tag, cfg, max_bytes)
    record = index.get(path) if index is not None else None
    if index is not None and record is not None:
        index.put(on_disk(record, cfg, max_bytes=max_bytes))
    return written_to


def cnn_scores(index: Index, tagger: Tagger) -> ScoresFor:
    """Scores from the class probabilities stored at tag time (records must have them)."""

    def scores_for(records: list[PhotoRecord]) -> TagScores:
        lm = tagger.labelmap
        probabilities = index.vectors(tagger.probability_store, records, lm.n_outputs)
        return TagScores(lm.paths, labels.path_scores(probabilities, lm))

    return scores_for


def learned_scores(index: Index, tagger: Tagger) -> ScoresFor:
    """The CNN's path scores, plus the active TagProp model's probabilities of the user's own
    keywords (flat paths) when there is one; records must have the vectors it needs."""
    cnn = cnn_scores(index, tagger)
    learned = tagger.learned
    if learned is None:
        return cnn

    def scores_for(records: list[PhotoRecord]) -> TagScores:
        stores = tagger.stores
        query = train.features_of(index, records, stores)
        mine = learned.scores(query, [r.path for r in records])
        base = cnn(records)
        return TagScores(
            base.paths + list(learned.tags),
            np.hstack([base.values, mine.astype(np.float32)]),
        )

    return scores_for


def suggest(
    records: list[PhotoRecord],
    scores_for: ScoresFor,
    missing_above: float = MISSING_ABOVE,
    imprecise_below: float = IMPRECISE_BELOW,
) -> list[Suggestion]:
    """Imprecise user keywords and likely-missing tags, per photo, best evidence first.

    Keywords match tag paths by their last level, case-insensitively. A tag is not missing
    when the photo has it or something more specific under it, as the user's keyword or ours,
    or when the user deleted it. A keyword is only called imprecise when the model is confident
    of something else, which the suggestion names.
    """
    if not records:
        return []
    scores = scores_for(records)
    names, group = leaf_groups(scores.paths)
    column = {name: i for i, name in enumerate(names)}
    user = _mask(records, column, lambda r: r.user)
    known = _mask(records, column, lambda r: [*r.user, *_levels(r), *r.negatives])
    descends = ancestry(scores.paths)
    missing = missing_mask(scores.values, known[:, group], descends, missing_above)
    best = best_specific(scores.values, descends, missing_above)
    by_name = name_scores(scores.values, group, len(names))
    imprecise = user & (by_name < imprecise_below) & (best >= 0)[:, None]

    out = []
    for i, record in enumerate(records):
        cols = np.flatnonzero(missing[i])
        for j in cols[np.argsort(-scores.values[i, cols], kind="stable")]:
            out.append(
                Suggestion(record.path, "missing", scores.paths[j], float(scores.values[i, j]))
            )
        flagged = {names[g] for g in np.flatnonzero(imprecise[i])}
        instead = scores.paths[best[i]] if best[i] >= 0 else None
        for keyword in record.user:
            name = keyword.casefold()
            if name in flagged:
                flagged.discard(name)
                score = float(by_name[i, column[name]])
                out.append(Suggestion(record.path, "imprecise", keyword, score, instead))
    return out


def _levels(record: PhotoRecord) -> list[str]:
    """Every keyword our tags put in the file, ancestors included."""
    return [level for t in record.auto for level in t.levels]


def _mask(
    records: Sequence[PhotoRecord],
    column: dict[str, int],
    words: Callable[[PhotoRecord], list[str]],
) -> np.ndarray:
    """bool [n_records, n_names]: which leaf names each record's words hit."""
    mask = np.zeros((len(records), len(column)), dtype=bool)
    hits = [
        (i, j)
        for i, r in enumerate(records)
        for w in words(r)
        if (j := column.get(w.casefold())) is not None
    ]
    if hits:
        rows, cols = zip(*hits, strict=True)
        mask[list(rows), list(cols)] = True
    return mask


def leaf_groups(paths: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct last levels (case-folded) and, per path, the index of its own."""
    leaves = [p.rsplit(LEVEL_SEP, 1)[-1].casefold() for p in paths]
    names = sorted(set(leaves))
    column = {name: i for i, name in enumerate(names)}
    return names, np.array([column[leaf] for leaf in leaves], dtype=np.int64)


def ancestry(paths: Sequence[str]) -> np.ndarray:
    """float32 [P, P]: [q, p] is 1 where path p is a strict ancestor of path q."""
    index = {p: i for i, p in enumerate(paths)}
    out = np.zeros((len(paths), len(paths)), dtype=np.float32)
    for q, path in enumerate(paths):
        levels = path.split(LEVEL_SEP)
        for depth in range(1, len(levels)):
            parent = index.get(LEVEL_SEP.join(levels[:depth]))
            if parent is not None:
                out[q, parent] = 1.0
    return out


def missing_mask(
    values: np.ndarray, known: np.ndarray, descends: np.ndarray, threshold: float
) -> np.ndarray:
    """bool [N, P]: confident paths that neither the photo has nor anything it has implies.

    A confident path is implied by a confident descendant (that one is suggested instead), and
    a path is covered when the photo has it or any path below it (`known` marks the first).
    """
    above = values >= threshold
    implied = (above.astype(np.float32) @ descends) > 0
    covered = known | ((known.astype(np.float32) @ descends) > 0)
    return above & ~implied & ~covered


def best_specific(values: np.ndarray, descends: np.ndarray, threshold: float) -> np.ndarray:
    """int [N]: per photo, the best-scoring confident path with no confident descendant; -1: none."""
    above = values >= threshold
    leafmost = above & ~((above.astype(np.float32) @ descends) > 0)
    ranked = np.where(leafmost, values, -np.inf)
    best = np.argmax(ranked, axis=1)
    return np.where(leafmost.any(axis=1), best, -1)


def name_scores(values: np.ndarray, group: np.ndarray, n_names: int) -> np.ndarray:
    """float32 [N, n_names]: per leaf name, the best score of the paths ending in it."""
    out = np.zeros((n_names, values.shape[0]), dtype=np.float32)
    np.maximum.at(out, group, values.T.astype(np.float32))
    return out.T
