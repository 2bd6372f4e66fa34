"""Embeddings beside the index (float16 memory-mapped file) or in it (a BLOB per row)?

Writes n rows of 1280 float16 both ways, then reads what `similar` and `duplicates` read:
every row, and a random 1 000. Run: .venv/bin/python bench/vector_store_benchmark.py [--n 50000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from phototag.library.index import VectorStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    n = parser.parse_args().n
    rows = np.random.default_rng(0).random((n, 1280)).astype(np.float16)
    pick = np.random.default_rng(1).choice(n, 1000, replace=False)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(Path(tmp) / "e.f16", 1280)
        start = time.perf_counter()
        for at in range(0, n, 32):
            store.append(rows[at : at + 32])
        f_write = time.perf_counter() - start
        db = sqlite3.connect(Path(tmp) / "v.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # as the index runs
        db.execute("CREATE TABLE v (id INTEGER PRIMARY KEY, row BLOB)")
        start = time.perf_counter()
        for at in range(0, n, 32):
            with db:
                db.executemany(
                    "INSERT INTO v VALUES (?, ?)",
                    [(at + i, r.tobytes()) for i, r in enumerate(rows[at : at + 32])],
                )
        s_write = time.perf_counter() - start
        start = time.perf_counter()
        VectorStore(Path(tmp) / "e.f16", 1280).get(np.arange(n), np.float16)
        f_all = time.perf_counter() - start
        start = time.perf_counter()
        blobs = db.execute("SELECT row FROM v ORDER BY id").fetchall()
        np.frombuffer(b"".join(b for (b,) in blobs), np.float16).reshape(n, 1280)
        s_all = time.perf_counter() - start
        start = time.perf_counter()
        store.get(pick, np.float16)
        f_pick = time.perf_counter() - start
        start = time.perf_counter()
        for i in pick.tolist():
            db.execute("SELECT row FROM v WHERE id = ?", (i,)).fetchone()
        s_pick = time.perf_counter() - start
    print(f"| {n:,} x 1280 float16 | memory-mapped file | SQLite BLOB | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for what, f, s in (
        ("append in batches of 32", f_write, s_write),
        ("read every row (what `similar` reads)", f_all, s_all),
        ("read 1 000 random rows", f_pick, s_pick),
    ):
        print(f"| {what} | {f * 1e3:.0f} ms | {s * 1e3:.0f} ms | {s / f:.1f}x |")


if __name__ == "__main__":
    main()
