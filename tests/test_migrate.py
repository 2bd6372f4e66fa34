"""A TinyDB index (the released format) moves into SQLite on first start: nothing lost,
the old file kept, resumable when interrupted."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from phototag.library import migrate
from phototag.library.index import PhotoRecord, open_index
from phototag.library.sqlindex import SqliteIndex
from phototag.records import Detection, Tag


def library(n: int) -> list[PhotoRecord]:
    return [
        PhotoRecord(
            path=f"/p/{i // 10}/IMG_{i:04d}.jpg",
            size=1000 + i,
            mtime_ns=i,
            sha256=f"{i:064x}",
            taken=f"2020-01-{1 + i % 28:02d}T10:00:00" if i % 3 else None,
            model_version="m@v",
            auto=[Tag("animal|mammal|cat", round(0.5 + i / 1000, 4))],
            user=["Grandma"] if i % 2 else [],
            negatives=["dog"] if i % 5 == 0 else [],
            written_to=f"/p/{i // 10}/IMG_{i:04d}.jpg",
            tagged_at=1.5 * i,
            detections=[Detection("people|person", 0.75, (0.0, 0.25, 0.5, 1.0), "det")],
        )
        for i in range(n)
    ]


def write_tinydb(folder: Path, records: list[PhotoRecord]) -> None:
    with open_index(folder, "tinydb") as index:
        index.put_many(
            records, [{"colour": np.full(8, i, np.float32)} for i in range(len(records))]
        )


def test_tinydb_index_is_migrated_with_everything(tmp_path: Path) -> None:
    records = library(120)
    write_tinydb(tmp_path, records)
    lines: list[str] = []
    with SqliteIndex(tmp_path, log=lines.append) as index:
        got = {r.path: r for r in index.records()}
        assert len(got) == len(records)
        for want in records:
            assert asdict(got[want.path]) == asdict(want)
        assert index.vectors("colour", [got[records[7].path]], 8)[0, 0] == 7
    assert lines[-1].startswith("phototag: index migrated from TinyDB to SQLite: 120 photos")
    assert (tmp_path / "photos.json.tinydb-backup").exists()
    assert not (tmp_path / "photos.json").exists()
    with SqliteIndex(tmp_path, log=lines.append) as index:  # once only
        assert len(index) == 120 and len(lines) == 2


def test_interrupted_migration_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tinydb(tmp_path, library(50))
    monkeypatch.setattr(migrate, "CHUNK", 20)
    calls = []
    real = SqliteIndex.write_records

    def dies_on_the_second_chunk(self: SqliteIndex, db: object, records: list) -> None:
        calls.append(len(records))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill half-way
        real(self, db, records)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteIndex, "write_records", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        SqliteIndex(tmp_path, log=lambda line: None)
    monkeypatch.setattr(SqliteIndex, "write_records", real)
    lines: list[str] = []
    with SqliteIndex(tmp_path, log=lines.append) as index:
        assert len(index) == 50
    assert lines == [
        "phototag: migrating the index to SQLite: 40/50 photos",
        "phototag: migrating the index to SQLite: 50/50 photos",
        lines[-1],
    ]
    assert "50 photos" in lines[-1]
