"""`phototag backfill` on a local Ray against `phototag scan` on the same files, in one run.

    python bench/backfill_benchmark.py --photos 100 --rounds 3

Camera-sized 4000x3000 JPEGs (bench/throughput.py makes and caches them), and the README's
default models (classifier, NanoDet detector, bird specialist; `--classifier-only`: the
classifier alone). Each round runs `phototag scan` and `phototag backfill --ray auto
--num-cpus 2` on fresh copies of N and of 2N photos, each a fresh process with its own index
(interpreter, model load and, for backfill, Ray's start included), alternating which goes
first. From the two sizes it derives each one's fixed start cost and its marginal rate
(photos/s once running), the figure that matters for an archive; and the ratio of their
summed times over all runs (on a shared machine single runs swing, the sum less). Then it
measures the per-photo costs the scaling plan in docs/scaling.md is built from, as CPU time
(all threads of the process: core-seconds, whatever the core count): decode, each model
through the loaded tagger at scan's batch size, and the keyword write of the tags they gave.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from throughput import DETECTOR, MODEL, SHARED, make_camera_photos

BIRDS = SHARED / "models" / "inat_bird.onnx"


def bench_env(home: Path) -> dict[str, str]:
    """The bench's own data and state folders: its models, never the user's."""
    return {"XDG_DATA_HOME": str(home / "data"), "XDG_STATE_HOME": str(home / "st")}


def run_cli(home: Path, *args: str) -> float:
    env = {**os.environ, **bench_env(home)}
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


def per_photo_costs(photos: list[Path], work: Path, repeats: int = 3) -> dict[str, float]:
    """CPU ms per photo of each stage as the workers of a cluster run them, through the
    taggers that `scan` and `backfill` load (the models installed in the bench's home).

    Each model's cost is the difference between `Tagger.analyse` with it and without it
    (the specialist's only on the photos its gate lets through), the best of `repeats`
    alternating runs: the machine is shared, and other jobs only ever add time.
    """
    from threadpoolctl import threadpool_limits

    from phototag.config import Config
    from phototag.pipeline import decode, tagger
    from phototag.pipeline.runner import write_analysed
    from phototag.records import Outcome

    cfg = Config()
    off = dataclasses.replace(cfg.specialists, enabled=False)
    stages = {  # the models each tagger runs: the classifier, then one more at each step
        "classifier": dataclasses.replace(
            cfg, detector=dataclasses.replace(cfg.detector, enabled=False), specialists=off
        ),
        "detector": dataclasses.replace(cfg, specialists=off),
        "specialist": cfg,
    }
    taggers = {name: tagger.load(c) for name, c in stages.items()}
    full = taggers["specialist"]
    copies = [shutil.copy(p, work / p.name) for p in photos[:48]]
    size, n = cfg.model.batch_size, len(copies)

    def cpu_ms(run: Callable[[Any], Any], items: list[Any]) -> tuple[float, list[Any]]:
        """CPU ms per photo of `run` over `items`, and its results."""
        start = time.process_time()
        results = [run(item) for item in items]
        return (time.process_time() - start) / n * 1e3, results

    best: dict[str, float] = {}
    with threadpool_limits(1, "blas"):
        for _ in range(repeats):
            for name, letterbox in (("decode", 0), ("letterbox", full.letterbox)):
                load = functools.partial(  # as scan decodes
                    decode.load,
                    size=full.model.input_size,
                    max_pixels=cfg.scan.max_pixels,
                    letterbox=letterbox,
                    fast=cfg.scan.jpeg_preview,
                    max_bytes=cfg.scan.max_file_bytes,
                )
                ms, decoded = cpu_ms(load, copies)
                best[name] = min(ms, best.get(name, ms))
            batches = [decoded[i : i + size] for i in range(0, n, size)]
            for name, t in taggers.items():
                t.analyse(batches[0])  # warm its sessions
                ms, found = cpu_ms(t.analyse, batches)
                best[name] = min(ms, best.get(name, ms))
        outcomes = [
            Outcome(d.file.path, a.tags[i], a.detections[i])
            for b, a in zip(batches, found, strict=True)  # the full tagger's, the last run
            for i, d in enumerate(b)
        ]
        version = str(full.version)
        best["write"], _ = cpu_ms(
            lambda pair: write_analysed(*pair, version, cfg, False),
            list(zip(decoded, outcomes, strict=True)),
        )
    return {
        "decode": best["decode"],
        "letterbox": best["letterbox"] - best["decode"],
        "classifier": best["classifier"],
        "detector": best["detector"] - best["classifier"],
        "specialist": best["specialist"] - best["detector"],
        "write": best["write"],
        "bytes": sum(Path(p).stat().st_size for p in copies) / n,
        "species": sum(
            any(d.model.startswith("inat-bird@") for d in row)
            for a in found
            for row in a.detections
        )
        / n,
    }


def load() -> str:
    """The machine's load averages, printed beside every figure (the machine is shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--classifier-only", action="store_true", help="no detector, no specialist")
    args = ap.parse_args()
    photos = make_camera_photos(args.photos)
    home = Path(tempfile.mkdtemp(prefix="phototag-bench-backfill-"))
    models = [(MODEL, "mobilenet-v2")]
    if not args.classifier_only:
        models += [(DETECTOR, "coco-nanodet"), (BIRDS, "inat-bird")]
    for path, name in models:
        run_cli(home, "models", "import", str(path), "--name", name)
    print(f"models: {', '.join(name for _, name in models)}; load {load()}")
    marginal: dict[str, list[float]] = {"scan": [], "backfill": []}
    fixed: dict[str, list[float]] = {"scan": [], "backfill": []}
    wall: dict[str, float] = {"scan": 0.0, "backfill": 0.0}  # every run, start included
    for r in range(args.rounds):
        order = ["scan", "backfill"] if r % 2 == 0 else ["backfill", "scan"]
        for kind in order:
            seconds = {n: timed_run(home, kind, f"{kind}{r}-{n}", photos, n) for n in (1, 2)}
            rate = len(photos) / (seconds[2] - seconds[1])
            wall[kind] += seconds[1] + seconds[2]
            marginal[kind].append(rate)
            fixed[kind].append(seconds[1] - len(photos) / rate)
            print(
                f"round {r + 1} {kind}: {len(photos)} photos in {seconds[1]:.1f} s, "
                f"{2 * len(photos)} in {seconds[2]:.1f} s: {rate:.1f} photos/s once running, "
                f"{fixed[kind][-1]:.1f} s to start; load {load()}"
            )
    scan, fill = max(marginal["scan"]), max(marginal["backfill"])
    print(
        f"\nbest of {args.rounds}: scan {scan:.1f} photos/s, backfill on local Ray {fill:.1f}; "
        f"backfill / scan = {fill / scan:.2f} (the engine's overhead on one 2-core machine); "
        f"start: scan {min(fixed['scan']):.1f} s, backfill {min(fixed['backfill']):.1f} s"
    )
    # Other jobs on a shared machine swing single runs; the sum over every run swings less.
    print(
        f"all {3 * len(photos) * args.rounds} photos of each, start included: scan "
        f"{wall['scan']:.1f} s, backfill {wall['backfill']:.1f} s; backfill / scan = "
        f"{wall['scan'] / wall['backfill']:.2f}"
    )
    work = home / "costs"
    work.mkdir()
    os.environ.update(bench_env(home))  # the tagger below loads the bench's models
    c = per_photo_costs(photos, work)
    stages = ("decode", "letterbox", "classifier", "detector", "specialist", "write")
    print(
        "CPU ms per photo: "
        + ", ".join(f"{name} {c[name]:.1f}" for name in stages)
        + f"; total {sum(c[name] for name in stages):.1f}; {c['species']:.0%} of photos with "
        f"a bird species; {c['bytes'] / 1e6:.2f} MB read; load {load()}"
    )
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
