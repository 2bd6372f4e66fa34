"""Moving a TinyDB index (`photos.json`, the released format) into SQLite on first start.

Chunks of documents go in one transaction each, together with the count done so far, so an
interrupted migration resumes where it stopped and two processes starting at once share the
work instead of doing it twice. The vector files stay as they are: rows keep their numbers.
When done, `photos.json` is renamed to `photos.json.tinydb-backup` and kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from phototag.library.index import IndexUnavailable, PhotoRecord

if TYPE_CHECKING:
    from phototag.library.sqlindex import SqliteIndex

CHUNK = 5000
DONE = "done"


def migrate_tinydb(index: SqliteIndex, log: Callable[[str], None]) -> None:
    """Migrate `photos.json` beside the database if there is one and it is not migrated yet."""
    source = index.folder / "photos.json"
    if index.meta("tinydb_migrated") == DONE or not source.exists():
        return
    start = time.perf_counter()
    try:
        raw = json.loads(source.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        raise IndexUnavailable(f"{source}: cannot migrate the TinyDB index: {exc}") from None
    docs = sorted(raw.get("_default", {}).items(), key=lambda item: int(item[0]))
    total = len(docs)
    for at in range(0, total, CHUNK):
        with index.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'tinydb_migrated'").fetchone()
            done = 0 if row is None else total if row[0] == DONE else int(row[0])
            if done > at:
                continue  # an earlier run or another process did this chunk
            index.write_records(db, [PhotoRecord.from_doc(doc) for _, doc in docs[at : at + CHUNK]])
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('tinydb_migrated', ?)",
                (str(min(at + CHUNK, total)),),
            )
        log(f"phototag: migrating the index to SQLite: {min(at + CHUNK, total):,}/{total:,} photos")
    backup = source.with_name("photos.json.tinydb-backup")
    with index.transaction() as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('tinydb_migrated', ?)", (DONE,))
    try:
        os.replace(source, backup)
    except FileNotFoundError:
        return  # another process finished the same migration first
    seconds = time.perf_counter() - start
    log(
        f"phototag: index migrated from TinyDB to SQLite: {total:,} photos in {seconds:.1f} s; "
        f"the old index is kept as {backup}"
    )
