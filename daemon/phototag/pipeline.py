"""The tagging pipeline for `tag`, `scan` and the service: decode -> infer -> tag -> write -> index.

Decoding runs in a thread pool ahead of inference (Pillow and ONNX Runtime both release
the GIL), photos are inferred in batches, and every stage turns a failure into a
one-line `Outcome.error` for that photo while the others go on.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phototag import decode, metadata, moves
from phototag.config import Config, ScanConfig
from phototag.index import Index, PhotoRecord
from phototag.records import Decoded, Outcome, PhotoFile
from phototag.tagger import Tagger

COLOUR_STORE = "colour"


def discover(roots: Iterable[Path], scan: ScanConfig) -> Iterator[Path | Outcome]:
    """Photos below `roots` by extension, skipping hidden files and our temp files.

    Symlinked folders are followed only when configured, and then each real folder is
    visited once, so a symlink loop ends instead of recursing forever.
    """
    extensions = {e.lower() for e in scan.extensions}
    seen: set[tuple[int, int]] = set()
    for root in roots:
        if root.is_file():
            yield root
            continue
        if not root.exists():
            yield Outcome(root, error="no such file or folder")
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = folder.stat()
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                yield Outcome(folder, error=f"cannot list folder: {exc.strerror or exc}")
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=scan.follow_symlinks):
                        stack.append(Path(entry.path))
                    elif entry.is_file() and Path(entry.name).suffix.lower() in extensions:
                        yield Path(entry.path)
                except OSError:  # vanished or unreadable entry: the next stage reports it
                    yield Path(entry.path)


@dataclass
class Pipeline:
    """One configured run over many photos; owns the decode pool for its lifetime."""

    cfg: Config
    tagger: Tagger
    index: Index | None  # None: tag without remembering (URLs, dry runs)
    dry_run: bool = False
    force: bool = False  # re-tag even when the index says the file is unchanged
    flush: bool = True  # flush the index when a run ends; the service flushes on its own clock

    def run(
        self, paths: Iterable[Path], on_done: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        outcomes = []
        for outcome in self.outcomes(paths):
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
        return outcomes

    def outcomes(self, paths: Iterable[Path]) -> Iterator[Outcome]:
        workers = self.cfg.scan.workers or os.cpu_count() or 2
        batch_size = self.cfg.model.batch_size
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            batch: list[Decoded] = []
            for item in self._decoded(paths, pool, window=2 * batch_size + workers):
                if isinstance(item, Outcome):
                    yield item
                    continue
                batch.append(item)
                if len(batch) == batch_size:
                    yield from self._finish(batch)
                    batch = []
            if batch:
                yield from self._finish(batch)
        if self.index is not None and self.flush and not self.dry_run:
            self.index.flush()

    def _decoded(
        self, paths: Iterable[Path], pool: ThreadPoolExecutor, window: int
    ) -> Iterator[Decoded | Outcome]:
        """Decoded photos in order, with up to `window` decodes in flight ahead of the consumer."""
        size = self.tagger.model.input_size
        max_pixels = self.cfg.scan.max_pixels
        pending: deque[tuple[Path, Future[Decoded]]] = deque()
        for item in paths:
            if isinstance(item, Outcome):
                yield item
                continue
            skip = self._skip(item)
            if skip is not None:
                yield skip
                continue
            pending.append((item, pool.submit(decode.load, item, size, max_pixels)))
            if len(pending) >= window:
                yield self._result(*pending.popleft())
        while pending:
            yield self._result(*pending.popleft())

    def _skip(self, path: Path) -> Outcome | None:
        if self.index is None or self.force:
            return None
        try:
            file = PhotoFile.stat(path)
        except OSError:
            return None  # decode reports it with the right words
        return Outcome(path, skipped="unchanged") if self.index.unchanged(file) else None

    def _result(self, path: Path, future: Future[Decoded]) -> Decoded | Outcome:
        try:
            decoded = future.result()
        except decode.DecodeError as exc:
            return Outcome(path, error=str(exc))
        moved = self._moved_from(decoded)
        if moved is None:
            return decoded
        moves.move(self.index, Path(moved.path), path, same_content=True)  # type: ignore[arg-type]
        return Outcome(path, tags=moved.auto, skipped=f"moved from {moved.path}")

    def _moved_from(self, decoded: Decoded) -> PhotoRecord | None:
        """An indexed photo with the same content whose old path is gone: a move, not a new photo."""
        if self.index is None or self.dry_run or self.index.get(decoded.file.path) is not None:
            return None
        return next(
            (r for r in self.index.with_sha(decoded.sha256) if not os.path.lexists(r.path)), None
        )

    def _finish(self, batch: list[Decoded]) -> Iterator[Outcome]:
        inferred = self.tagger.model.run(np.stack([d.pixels for d in batch]))
        for i, (decoded, tags) in enumerate(zip(batch, self.tagger.tags(inferred), strict=True)):
            outcome = Outcome(decoded.file.path, tags=tags)
            if self.dry_run:
                outcome.skipped = "dry run"
            else:
                try:
                    self._write(
                        decoded,
                        outcome,
                        {
                            self.tagger.embedding_store: inferred.embeddings[i],
                            COLOUR_STORE: decoded.colour,
                        },
                    )
                except (metadata.MetadataError, OSError) as exc:
                    outcome.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            yield outcome

    def _write(self, decoded: Decoded, outcome: Outcome, vectors: dict[str, np.ndarray]) -> None:
        path = decoded.file.path
        version = str(self.tagger.version)
        outcome.written_to = metadata.write(
            path, outcome.tags, version, self.cfg.write, self.cfg.tagging.ancestors
        )
        if self.index is None:
            return
        keywords = metadata.read(path, self.cfg.write)
        file, sha256 = decoded.file, decoded.sha256
        if outcome.written_to == path:  # the photo itself changed: index what is on disk now
            file = PhotoFile.stat(path)
            sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.index.put(
            PhotoRecord(
                path=str(path),
                size=file.size,
                mtime_ns=file.mtime_ns,
                sha256=sha256,
                width=decoded.width,
                height=decoded.height,
                taken=decoded.taken,
                model_version=version,
                auto=keywords.ours,
                user=keywords.user_keywords,
                negatives=keywords.removed_by_user,
                written_to=str(outcome.written_to),
                tagged_at=time.time(),
            ),
            vectors,
        )
