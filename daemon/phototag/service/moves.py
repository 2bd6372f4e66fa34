"""Photos that moved or vanished: update the index, and take our sidecar along.

A moved photo keeps its record (tags, vectors): no inference. Its sidecar goes with it,
named the same way (`IMG.JPG.xmp` -> `NEW.JPG.xmp`, `IMG.xmp` -> `NEW.xmp`), and goes
away with a deleted photo, except a stem-named sidecar another photo still shares
(`IMG.JPG` and `IMG.CR2` both read `IMG.xmp`): that one is copied, never moved or deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from phototag.library.index import Index, PhotoRecord
from phototag.records import PhotoFile

log = logging.getLogger("phototag.moves")


def sidecar_of(record: PhotoRecord) -> Path | None:
    """The sidecar holding the record's keywords, None when they are in the photo itself."""
    if not record.written_to or record.written_to == record.path:
        return None
    return Path(record.written_to)


def renamed_sidecar(sidecar: Path, old: Path, new: Path) -> Path:
    """Where the sidecar of `old` belongs once the photo is `new`."""
    if sidecar.name.startswith(old.name):  # IMG.JPG.xmp
        return new.parent / (new.name + sidecar.name[len(old.name) :])
    if sidecar.stem == old.stem:  # IMG.xmp
        return new.parent / (new.stem + sidecar.suffix)
    return sidecar


def shared(sidecar: Path, photo: Path) -> bool:
    """True when another file beside `photo` has its stem, so a stem-named sidecar is theirs too."""
    if sidecar.name.startswith(photo.name):
        return False
    try:
        siblings = os.listdir(photo.parent)
    except OSError:
        return True  # when in doubt, do not touch it
    return any(
        Path(name).stem == photo.stem and name not in (photo.name, sidecar.name)
        for name in siblings
    )


def move(index: Index, old: Path, new: Path, same_content: bool = False) -> bool:
    """Re-point `old`'s record at `new`; True when `new` still needs tagging.

    It does when `old` was never indexed, or when the photo changed on the way (its size
    or mtime differ from the record's: a rename keeps both). With `same_content` (the
    caller matched the content hash) the record takes `new`'s size and mtime as they are.
    A photo already moved on from `new` (a rename, then its folder's) keeps its record
    all the same: the job of its next event, a move or a delete, carries on from `new`.
    """
    record = index.get(old)
    if record is None:
        return os.path.lexists(new)
    here = os.path.lexists(new)
    sidecar = sidecar_of(record)
    written_to = None
    if sidecar is None:
        written_to = str(new) if record.written_to else None
    else:
        target = renamed_sidecar(sidecar, old, new)
        if not here:  # named for `new` where it is, so the next move finds it by name
            target = sidecar.parent / target.name
        if target != sidecar and sidecar.exists() and not target.exists():
            (shutil.copy2 if shared(sidecar, old) else shutil.move)(sidecar, target)
            log.info("%s -> %s (sidecar)", sidecar, target)
        written_to = str(target) if target.exists() else None
    file = (
        PhotoFile.stat(new)
        if same_content and here
        else PhotoFile(new, record.size, record.mtime_ns)
    )
    index.move(str(old), file, written_to)
    return here and not index.unchanged(PhotoFile.stat(new))


def delete(index: Index, path: Path, also: Path | None = None) -> int:
    """Forget the photos at `path` (and `also`) if they are gone; returns how many were removed.

    A photo that exists again is kept: a new event will say what happened to it.
    """
    records = [index.get(p) for p in (path, also) if p is not None]
    return _forget(index, [r for r in records if r is not None])


def delete_folder(index: Index, folder: Path) -> int:
    """Forget the photos that were below a folder moved away (to the trash) or deleted.

    This scans the whole index, so it is only for folders; a photo's delete is a lookup.
    """
    prefix = str(folder).rstrip(os.sep) + os.sep
    below = [index.get(path) for path in index.paths() if path.startswith(prefix)]
    return _forget(index, [r for r in below if r is not None])


def _forget(index: Index, records: list[PhotoRecord]) -> int:
    removed = 0
    for record in records:
        if os.path.lexists(record.path):
            continue
        index.remove(record.path)
        removed += 1
        sidecar = sidecar_of(record)
        if sidecar is not None and sidecar.exists() and not shared(sidecar, Path(record.path)):
            sidecar.unlink()
            log.info("removed %s (its photo is gone)", sidecar)
    return removed
