"""What compacting orphaned vector rows costs at open, beside an open with nothing to do.

Usage: python -m bench.compact_benchmark [PHOTOS]. An SQLite index of PHOTOS records (default
20 000) with a 1280-d embedding each, half of the store's rows orphans (as after re-tagging
every photo once); prints the open that compacts and the next open, side by side.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from phototag.library.index import PhotoRecord
from phototag.library.sqlindex import SqliteIndex

DIM = 1280


def main(photos: int = 20_000) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with SqliteIndex(folder, log=lambda line: None) as index:
            for start in range(0, photos, 1000):
                batch = [
                    PhotoRecord(f"/p/{i}.jpg", 1, 1, f"{i}") for i in range(start, start + 1000)
                ]
                index.put_many(batch, [{"e": rng.random(DIM, np.float32)} for _ in batch])
            index.put_many(  # every photo re-tagged once: its first row is an orphan
                [index.get(f"/p/{i}.jpg") for i in range(photos)],  # type: ignore[misc]
                [{"e": rng.random(DIM, np.float32)} for _ in range(photos)],
            )
        timings = []
        for _ in range(2):
            t0 = time.perf_counter()
            SqliteIndex(folder, log=print).close()
            timings.append(time.perf_counter() - t0)
        mb = 2 * photos * DIM * 2 / 1e6
        print(
            f"{photos} photos, {mb:.0f} MB store, half orphans: open with compaction "
            f"{timings[0]:.2f} s, open with nothing to compact {timings[1]:.3f} s "
            f"(ratio {timings[0] / timings[1]:.0f})"
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
