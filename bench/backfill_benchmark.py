"""`phototag backfill` on a local Ray against `phototag scan` on the same files, in one run.

    python bench/backfill_benchmark.py --photos 200 --rounds 2

Camera-sized 4000x3000 JPEGs (bench/throughput.py makes and caches them). Each round runs
`phototag scan` and `phototag backfill --ray auto --num-cpus 2` on fresh copies of N and of
2N photos, each a fresh process with its own index (interpreter, model load and, for
backfill, Ray's start included), alternating which goes first. From the two sizes it
derives each one's fixed start cost and its marginal rate (photos/s once running), the
figure that matters for an archive. Then it measures the per-photo costs the scaling plan
in docs/scaling.md is built from: decode, model at batch 16 and keyword write, one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from throughput import MODEL, make_camera_photos


def run_cli(home: Path, *args: str) -> float:
    env = {**os.environ, "XDG_DATA_HOME": str(home / "data"), "XDG_STATE_HOME": str(home / "st")}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "phototag", "-q", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def timed_run(home: Path, kind: str, name: str, photos: list[Path], copies: int) -> float:
    """Seconds of one `phototag scan` or `backfill` over `copies` copies of `photos`."""
    folder = home / name
    folder.mkdir()
    for c in range(copies):
        for p in photos:
            shutil.copy(p, folder / f"{c}_{p.name}")
    cfg = home / f"{name}.yaml"
    cfg.write_text(f"index:\n  path: {home / ('idx-' + name)}\n")
    extra = ["--num-cpus", "2"] if kind == "backfill" else []
    seconds = run_cli(home, "-c", str(cfg), kind, str(folder), *extra)
    shutil.rmtree(folder)
    return seconds


def per_photo_costs(photos: list[Path], work: Path) -> dict[str, float]:
    """ms per photo of each stage on one core, as the workers of a cluster run them."""
    from threadpoolctl import threadpool_limits

    from phototag.config import Config
    from phototag.files import metadata
    from phototag.pipeline import decode
    from phototag.pipeline.infer import Model
    from phototag.records import Tag

    sample = photos[:48]
    with threadpool_limits(1):
        start = time.perf_counter()
        decoded = [decode.load(p, 224, 200_000_000) for p in sample]
        t_decode = (time.perf_counter() - start) / len(sample)
        model = Model(MODEL, "input", 224, "cpu", threads=1)
        pixels = np.stack([d.pixels for d in decoded])
        model.run(pixels[:16])
        start = time.perf_counter()
        for i in range(0, len(pixels), 16):
            model.run(pixels[i : i + 16])
        t_model = (time.perf_counter() - start) / len(pixels)
    copies = []
    for p in sample[:24]:
        shutil.copy(p, work / p.name)
        copies.append(work / p.name)
    tags = [Tag("animal|mammal|cat", 0.8), Tag("place|beach", 0.4)]
    cfg = Config()
    start = time.perf_counter()
    for p in copies:
        metadata.write(p, tags, "bench", cfg.write)
    t_write = (time.perf_counter() - start) / len(copies)
    size = sum(p.stat().st_size for p in sample) / len(sample)
    return {"decode": t_decode, "model": t_model, "write": t_write, "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    photos = make_camera_photos(args.photos)
    home = Path(tempfile.mkdtemp(prefix="phototag-bench-backfill-"))
    run_cli(home, "models", "import", str(MODEL), "--name", "mobilenet-v2")
    marginal: dict[str, list[float]] = {"scan": [], "backfill": []}
    fixed: dict[str, list[float]] = {"scan": [], "backfill": []}
    for r in range(args.rounds):
        order = ["scan", "backfill"] if r % 2 == 0 else ["backfill", "scan"]
        for kind in order:
            seconds = {n: timed_run(home, kind, f"{kind}{r}-{n}", photos, n) for n in (1, 2)}
            rate = len(photos) / (seconds[2] - seconds[1])
            marginal[kind].append(rate)
            fixed[kind].append(seconds[1] - len(photos) / rate)
            print(
                f"round {r + 1} {kind}: {len(photos)} photos in {seconds[1]:.1f} s, "
                f"{2 * len(photos)} in {seconds[2]:.1f} s: {rate:.1f} photos/s once running, "
                f"{fixed[kind][-1]:.1f} s to start"
            )
    scan, fill = max(marginal["scan"]), max(marginal["backfill"])
    print(
        f"\nbest of {args.rounds}: scan {scan:.1f} photos/s, backfill on local Ray {fill:.1f}; "
        f"backfill / scan = {fill / scan:.2f} (the engine's overhead on one 2-core machine); "
        f"start: scan {min(fixed['scan']):.1f} s, backfill {min(fixed['backfill']):.1f} s"
    )
    work = home / "costs"
    work.mkdir()
    c = per_photo_costs(photos, work)
    print(
        f"per photo on one core: decode {c['decode'] * 1e3:.1f} ms, model {c['model'] * 1e3:.1f} "
        f"ms (batch 16), keyword write {c['write'] * 1e3:.1f} ms; {c['bytes'] / 1e6:.2f} MB read"
    )
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
