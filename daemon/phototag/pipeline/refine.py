"""Bring indexed photos' auto-tags up to the current model version.

A photo's record names the `ModelVersion` that decided its auto-tags. When only the label map,
TagProp or the thresholds changed, its tags are re-decided from the class probabilities stored
at tag time: no image is read. New backbone weights need new CNN outputs, so those photos go
through the tagging pipeline again (decode + infer). Either way the keywords are written by
`metadata.write`, which keeps the user's keywords and never re-adds one the user deleted, and
each photo's record is updated as it is done, so an interrupted refine resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from phototag.config import Config
from phototag.files import metadata
from phototag.learn.train import COLOUR_DIM, COLOUR_STORE
from phototag.library.index import Index, PhotoRecord
from phototag.pipeline import places
from phototag.pipeline.infer import Batch
from phototag.pipeline.runner import Pipeline, write_tags
from phototag.pipeline.tagger import Tagger
from phototag.records import ModelVersion, PhotoFile, Refresh, Tag

CHUNK = 1024  # photos re-scored per matrix product


@dataclass
class Plan:
    """The indexed photos behind the current model version, by what catching up costs."""

    version: ModelVersion
    reanalyse: list[PhotoRecord] = field(default_factory=list)  # decode + infer
    rescore: list[PhotoRecord] = field(default_factory=list)  # stored probabilities only
    current: int = 0

    def __len__(self) -> int:
        return len(self.reanalyse) + len(self.rescore)

    def describe(self) -> str:
        """The cost, to show before starting."""
        return (
            f"{len(self.reanalyse)} photos need re-analysis with {self.version.backbone} "
            f"(decode + infer), {len(self.rescore)} need only re-scoring, "
            f"{self.current} are up to date"
        )


@dataclass
class Refined:
    """One photo brought up to date: our tags before and after."""

    path: Path
    how: Refresh
    before: list[Tag]
    after: list[Tag] = field(default_factory=list)
    written_to: str | None = None  # None: the file was left alone (its keywords stay right)
    error: str | None = None

    @property
    def added(self) -> list[str]:
        old = {t.path for t in self.before}
        return [t.path for t in self.after if t.path not in old]

    @property
    def removed(self) -> list[str]:
        new = {t.path for t in self.after}
        return [t.path for t in self.before if t.path not in new]


def plan(records: Iterable[PhotoRecord], tagger: Tagger) -> Plan:
    """Sort records by what they need; photos without auto tags of ours (undone) are left alone."""
    result = Plan(tagger.version)
    for record in records:
        if not record.model_version:
            continue
        need = tagger.version.refresh(ModelVersion.parse(record.model_version))
        if need == "rescore" and not all(s in record.vectors for s in tagger.rescore_stores):
            need = "reanalyse"  # tagged before these vectors were stored
        if need == "reanalyse":
            result.reanalyse.append(record)
        elif need == "rescore":
            result.rescore.append(record)
        else:
            result.current += 1
    return result


def run(
    todo: Plan,
    index: Index,
    tagger: Tagger,
    cfg: Config,
    on_done: Callable[[Refined], None] | None = None,
    save_every_s: float = 2.0,
) -> list[Refined]:
    """Re-score, then re-analyse, saving the index every few seconds so a kill loses little.

    Re-scored records are put in the index in batches (one TinyDB write per photo would cost
    time in proportion to the whole index); an exception, Ctrl-C included, saves them first.
    """
    results: list[Refined] = []
    pending: list[PhotoRecord] = []
    saved = time.monotonic()

    def save() -> None:
        index.put_many(pending)
        pending.clear()
        index.flush()

    def done(refined: Refined) -> None:
        nonlocal saved
        results.append(refined)
        if time.monotonic() - saved > save_every_s:
            save()
            saved = time.monotonic()
        if on_done:
            on_done(refined)

    try:
        for refined, record in rescore(todo.rescore, index, tagger, cfg):
            if record is not None:
                pending.append(record)
            done(refined)
        for refined in reanalyse(todo.reanalyse, index, tagger, cfg):
            done(refined)
    finally:
        save()
    return results


def rescore(
    records: list[PhotoRecord], index: Index, tagger: Tagger, cfg: Config
) -> Iterator[tuple[Refined, PhotoRecord | None]]:
    """Re-decide tags from the vectors stored at tag time; no image is read or decoded.

    The tags come from `Tagger.tags`, as in the pipeline. Yields each photo's outcome with its
    updated record (None on failure) for the caller to put in the index.
    """
    version = str(tagger.version)
    stores = tagger.stores
    for start in range(0, len(records), CHUNK):
        part = records[start : start + CHUNK]
        probabilities = index.vectors(stores.probability, part, stores.n_outputs)
        if tagger.learned is None:  # the CNN alone needs no embeddings or colours
            embeddings = np.zeros((len(part), 0), np.float32)
            colours = np.zeros((len(part), 0), np.float32)
        else:
            embeddings = index.vectors(stores.embedding, part, stores.embedding_dim)
            colours = index.vectors(COLOUR_STORE, part, COLOUR_DIM)
        boxes = [r.detections for r in part]
        tags = tagger.tags(Batch(probabilities, embeddings), colours, part, boxes)
        for record, photo_tags in zip(part, tags, strict=True):
            tags_ = places.with_place(photo_tags, record.position, cfg)
            yield _apply(record, tags_, version, cfg)


def _apply(
    record: PhotoRecord, tags: list[Tag], version: str, cfg: Config
) -> tuple[Refined, PhotoRecord | None]:
    """Write the photo only when its keywords change, so a threshold change rewrites few files.

    The file's phototag:ModelVersion then names the version that last changed its keywords;
    the index names the version that last decided them.
    """
    refined = Refined(Path(record.path), "rescore", record.auto)
    live = [t.path for t in tags if t.name not in record.negatives]
    try:
        if live == [t.path for t in record.auto] and _unchanged(record):
            new = replace(record, model_version=version, tagged_at=time.time())
        else:
            new = write_tags(record, tags, version, cfg)
            refined.written_to = new.written_to
    except (metadata.MetadataError, OSError) as exc:
        refined.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return refined, None
    refined.after = new.auto
    return refined, new


def _unchanged(record: PhotoRecord) -> bool:
    """The photo is as indexed, so the user cannot have edited its keywords since."""
    try:
        file = PhotoFile.stat(Path(record.path))
    except OSError:
        return False  # metadata.write reports it with the right words
    return (file.size, file.mtime_ns) == (record.size, record.mtime_ns)


def reanalyse(
    records: list[PhotoRecord], index: Index, tagger: Tagger, cfg: Config
) -> Iterator[Refined]:
    """New CNN outputs through the tagging pipeline, which writes each record as it is done."""
    before = {r.path: r.auto for r in records}
    pipeline = Pipeline(cfg, tagger, index, force=True)
    for outcome in pipeline.outcomes(Path(r.path) for r in records):
        path = str(outcome.path)
        refined = Refined(outcome.path, "reanalyse", before.get(path, []), error=outcome.error)
        if outcome.ok:
            record = index.get(path)
            refined.after = record.auto if record else []
            refined.written_to = str(outcome.written_to) if outcome.written_to else None
        yield refined
