"""Take back what phototag wrote: exactly our keywords and our XMP namespace, nothing else.

The index keeps the photo's record (its embeddings stay useful for search and TagProp, and the
keywords the user deleted stay negative labels for training) with no auto tags and no model
version: refine leaves such a photo alone and a re-scan skips it while it is unchanged, so an
undo is not quietly re-done. Its faces go too, but those the user named (they train the vote). `phototag tag` (or `scan --force`) tags it again when wanted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from phototag.config import Config
from phototag.files import location, metadata
from phototag.library import people
from phototag.library.index import Index
from phototag.pipeline.runner import on_disk


@dataclass
class Undone:
    """What was (or, in a dry run, would be) taken out of one photo's metadata."""

    path: Path
    keywords: list[str] = field(default_factory=list)  # our flat keywords
    paths: list[str] = field(default_factory=list)  # our hierarchical paths
    written_to: Path | None = None  # the file changed; None: nothing of ours was there
    error: str | None = None


def undo(
    paths: Iterable[Path], index: Index | None, cfg: Config, dry_run: bool
) -> Iterator[Undone]:
    """Remove our keywords from each photo (or its sidecar) and clear its auto tags in the index."""
    for path in paths:
        try:
            yield _undo(path, index, cfg, dry_run)
        except metadata.Unreadable:  # not a photo exiv2 reads: we never wrote to it
            yield Undone(path)
        except (metadata.MetadataError, OSError) as exc:
            yield Undone(path, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _undo(path: Path, index: Index | None, cfg: Config, dry_run: bool) -> Undone:
    before = metadata.read(path, cfg.write, cfg.scan.max_file_bytes)
    done = Undone(path, before.our_keywords, before.our_paths)
    if dry_run:
        return done
    # first: metadata.undo drops our whole namespace
    filled = location.undo(path, cfg.write, cfg.scan.max_file_bytes)
    if (
        before.model_version
        or before.ours
        or before.our_keywords
        or before.our_paths
        or before.faces
    ):
        done.written_to = metadata.undo(path, cfg.write, cfg.scan.max_file_bytes)
    done.written_to = done.written_to or filled
    if index is None:
        return done
    # The index names a photo as it was given to `scan`: relative or absolute.
    record = index.get(path) or index.get(os.path.abspath(path))
    if record is not None and (done.written_to or record.model_version or record.auto):
        negatives = list(dict.fromkeys(record.negatives + before.removed_by_user))
        # The faces we found and the names we voted go as our tags do (else the next vote
        # would name them again and rewrite the file); the user's namings stay to learn from.
        faces = index.faces(record.path)
        kept = [f for f in faces if f.source in people.USERS]
        index.put(
            replace(
                on_disk(record, cfg.write, max_bytes=cfg.scan.max_file_bytes),
                model_version="",
                negatives=negatives,
                written_to=None,
                tagged_at=0.0,
                people=people.names(kept),
            )
        )
        if len(kept) < len(faces):
            index.put_faces(record.path, kept)
    return done
