"""Drop vector rows no record points to: left by killed writers, re-tags and removed photos.

Rows are appended before the records naming them are committed, so a killed `scan` leaves its
last batch's rows behind, and every re-tag or removal leaves the old rows; measured, 19 kills
of a 100-photo scan left 356 rows for 100 records. Compaction copies the rows still named into
a new store file and, in one index transaction, renumbers them and names the new file (the
`file:` meta key), so a kill at any point leaves either the old file and numbers or the new.

It runs when the index is opened for writing and no other process has it open (an exclusive
`flock` on `compact.lock`; every open holds it shared), because another process would read
rows of its own mapping by the new numbers. It runs only when at least `ORPHAN_SHARE` of a
store's rows are orphans: rewriting costs about the store's size in I/O (docs/benchmarks.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from phototag.library.index import VectorStore

log = logging.getLogger("phototag.index")  # the service's log; a command's with -v

ORPHAN_SHARE = 0.25
LOCK_FILE = "compact.lock"


@dataclass(frozen=True)
class Compacted:
    store: str
    before: int  # rows in the old file
    after: int  # rows kept: those a record points to


def hold(folder: Path, readonly: bool) -> tuple[int | None, bool]:
    """Open and lock `folder`'s compaction lock: (fd, exclusive). Exclusive only for a writer
    that is alone; otherwise shared, waiting for a compaction in progress to end. (None,
    False) where a reader cannot open the file (another user's read-only library)."""
    try:
        fd = os.open(folder / LOCK_FILE, (os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT))
    except OSError:
        return None, False
    if not readonly:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, True
        except BlockingIOError:
            pass
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd, False


def share(fd: int) -> None:
    """Let other processes in once compaction is over."""
    fcntl.flock(fd, fcntl.LOCK_SH)


def store_path(folder: Path, name: str, file: str | None) -> Path:
    return folder / (file or f"{name}.f16")


def worth_it(kept: int, stored: int) -> bool:
    """Whether a store of `stored` rows, `kept` of them named, is worth rewriting."""
    orphans = stored - kept
    return orphans > 0 and orphans >= ORPHAN_SHARE * stored


def compact(db: sqlite3.Connection, folder: Path) -> list[Compacted]:
    """Rewrite every store with enough orphans (see ORPHAN_SHARE); the caller holds the lock."""
    # Imported here: every open imports this module for `hold`, a one-off search included.
    import numpy as np

    from phototag.files import fileio
    from phototag.library.ann import graph_path

    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    named: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for photo, name, row in db.execute("SELECT photo, name, row FROM vectors"):
        named[name].append((photo, row))
    done = []
    for name, pairs in sorted(named.items()):
        dim = meta.get(f"dim:{name}")
        old = store_path(folder, name, meta.get(f"file:{name}"))
        if dim is None or not old.exists():
            continue  # written before dims were recorded: compacted after its next append
        store = VectorStore(old, int(dim))
        rows = np.array([row for _, row in pairs], np.int64)
        keep, new = np.unique(rows, return_inverse=True)  # kept rows ascending, new numbers
        if not worth_it(len(keep), store.rows) or int(rows.max()) >= store.rows:
            continue
        generation = int(meta.get(f"generation:{name}", "0")) + 1
        path = folder / f"{name}.{generation}.f16"
        fileio.atomic_write(path, store.get(keep, np.float16).tobytes())
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "UPDATE vectors SET row = ? WHERE photo = ? AND name = ?",
                [(int(n), photo, name) for n, (photo, _) in zip(new, pairs, strict=True)],
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(f"file:{name}", path.name), (f"generation:{name}", str(generation))],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            path.unlink(missing_ok=True)
            raise
        old.unlink(missing_ok=True)
        graph_path(old).unlink(missing_ok=True)  # its keys are the old row numbers
        done.append(Compacted(name, store.rows, len(keep)))
    return done
