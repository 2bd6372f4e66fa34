"""What hashing every sidecar on every scan costs: the skip check of 1000 unchanged photos
with sidecars, by size + mtime alone (before) and with the content hash (now), side by side.

Run: .venv/bin/python bench/sidecar_hash.py [--n 1000] [--rounds 11]
Data: one real sidecar phototag wrote for ../shared/photos/owl.jpg (its XMP, with the user's
keywords and ours), copied beside n placeholder photos (only stat() reads them); the SQLite index holds their records. Warm page
cache (a re-scan right after a scan): a cold cache costs both ways one inode read per sidecar,
and the hash one data block more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from phototag.config import WriteConfig
from phototag.files import metadata, sidecar
from phototag.library.index import Index, PhotoRecord, open_index
from phototag.records import PhotoFile, Tag

OWL = Path(__file__).parents[1].parent / "shared" / "photos" / "owl.jpg"


def size_and_mtime(index: Index, file: PhotoFile, cfg: WriteConfig) -> bool:
    """The check before the hash was kept (stat of the sidecar only)."""
    record = index.get(file.path)
    st = os.stat(sidecar.sidecar(file.path, cfg))
    return (
        index.unchanged(file)
        and record is not None
        and (st.st_size, st.st_mtime_ns)
        == (
            record.sidecar_size,
            record.sidecar_mtime_ns,
        )
    )


def timed(
    checks: list[Callable[[Index, PhotoFile, WriteConfig], bool]],
    index: Index,
    files: list[PhotoFile],
    cfg: WriteConfig,
    rounds: int,
) -> list[float]:
    """Median seconds of each check over all files; the checks alternate within each round,
    so a busy machine slows them alike."""
    times: list[list[float]] = [[] for _ in checks]
    for _ in range(rounds):
        for check, spent in zip(checks, times, strict=True):
            t = time.perf_counter()
            assert all(check(index, f, cfg) for f in files)
            spent.append(time.perf_counter() - t)
    return [statistics.median(spent) for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    cfg = WriteConfig(mode="sidecar")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first = folder / "owl.jpg"
        shutil.copyfile(OWL, first)
        metadata.write(first, [Tag("animal|bird|owl", 0.9), Tag("place|beach", 0.5)], "m@1", cfg)
        template = sidecar.sidecar(first, cfg)
        side_bytes = template.stat().st_size
        photos = []
        for i in range(args.n):
            photo = folder / f"p{i:05d}.jpg"
            photo.write_bytes(b"only stat() reads the photo here")
            shutil.copyfile(template, sidecar.sidecar(photo, cfg))
            photos.append(photo)
        with open_index(folder / "index") as index:
            for photo in photos:
                file, seen = PhotoFile.stat(photo), sidecar.signature(photo, cfg)
                base = PhotoRecord(str(photo), file.size, file.mtime_ns, "0" * 64)
                index.put(
                    replace(
                        base,
                        sidecar_size=seen.size,
                        sidecar_mtime_ns=seen.mtime_ns,
                        sidecar_sha256=seen.sha256,
                    )
                )
            files = [PhotoFile.stat(p) for p in photos]
            before, now = timed([size_and_mtime, sidecar.unchanged], index, files, cfg, args.rounds)
    print(
        f"{args.n} unchanged photos with a {side_bytes} B sidecar, median of "
        f"{args.rounds}: size+mtime {before * 1000:.1f} ms, +sha256 {now * 1000:.1f} ms, "
        f"ratio {now / before:.2f}x, {(now - before) / args.n * 1e6:.1f} us more per photo"
    )


if __name__ == "__main__":
    main()
