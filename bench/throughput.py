"""Throughput of `phototag scan` against a naive pipeline and the hardware bounds, in one run.

    python bench/throughput.py --photos 500

Makes camera-sized 4000x3000 JPEGs with EXIF from ../shared/photos (cached between runs),
then on fresh copies of the same files measures:
  1. naive: per file, full-resolution decode, resize, one-image ONNX run, XMP write, TinyDB insert;
  2. phototag: `phototag scan` end to end in a subprocess with default settings (peak RSS too);
  3. bounds: model-only at the best batch size, and decode-only with phototag's decoder, all cores;
and prints photos/s, the ratios 2/1 and 2/min(bounds), and peak RSS.
With --detector, also `phototag scan` with the object detector installed (the default set:
classifier + detector from one decode) on its own fresh copies in the same round, and the
ratio of its rate to the classifier-only scan's. With --with FILE (or --int8 FILE) as well,
the same with that detector file installed instead (repeat for several): the int8 detector
(coco-nanodet@g-416-int8, models/make_nanodet_int8.py) or the any-shape one
(coco-nanodet@g-416-rect, models/make_nanodet_rect.py). Each scan's CPU time (user + system)
per photo is reported beside its rate, with the same ratios: on a shared machine the wall
clock of variants run a minute apart swings with the others' load, CPU time much less.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyexiv2
from PIL import Image
from tinydb import TinyDB

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx"
DETECTOR = SHARED / "models" / "coco_nanodet.onnx"
CACHE = Path(tempfile.gettempdir()) / "phototag-bench-camera"


def make_camera_photos(n: int) -> list[Path]:
    """4000x3000 JPEGs at quality 90 with EXIF, with mild sensor-like noise so they are camera-sized."""
    CACHE.mkdir(exist_ok=True)
    sources = sorted(p for p in (SHARED / "photos").iterdir() if p.suffix in (".jpg", ".bmp"))
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = CACHE / f"IMG_{i:05d}.JPG"
        out.append(path)
        if path.exists():
            continue
        src = Image.open(sources[i % len(sources)]).convert("RGB")
        big = np.asarray(src.resize((4000, 3000), Image.Resampling.BICUBIC), dtype=np.int16)
        big = np.clip(big + rng.integers(-6, 7, big.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "BenchCam", "Model 12"
        exif.get_ifd(0x8769)[36867] = f"2024:06:{1 + i % 28:02d} 12:00:00"
        Image.fromarray(big).save(path, quality=90, exif=exif)
        if i % 50 == 49:
            print(f"made {i + 1}/{n} camera-sized photos in {CACHE}", file=sys.stderr)
    return out


def fresh_copies(files: list[Path], where: Path) -> list[Path]:
    where.mkdir(parents=True)
    copies = []
    for f in files:
        shutil.copyfile(f, where / f.name)
        copies.append(where / f.name)
    return copies


def naive(files: list[Path], db_path: Path) -> float:
    """What a straightforward script does: one photo at a time, full decode, one-image inference."""
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    db = TinyDB(db_path)
    start = time.perf_counter()
    for path in files:
        img = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        probs, emb = session.run(["probabilities", "embedding"], {"input": np.asarray(img)[None]})
        top = [int(i) for i in np.argsort(probs[0])[::-1][:3]]
        meta = pyexiv2.Image(str(path))
        meta.modify_xmp({"Xmp.dc.subject": [f"class{i}" for i in top]})
        meta.close()
        db.insert({"path": str(path), "classes": top, "embedding": emb[0].tolist()})
    return time.perf_counter() - start


def phototag_scan(
    folder: Path, home: Path, models: tuple[Path, ...] = (MODEL,)
) -> tuple[float, float, int]:
    """`phototag scan` in a fresh process and fresh XDG folders with `models` installed;
    returns seconds, CPU seconds (user + system: steadier than the wall clock on a shared
    machine) and peak RSS (KiB)."""
    env = dict(
        os.environ, XDG_DATA_HOME=str(home), XDG_STATE_HOME=str(home), XDG_CONFIG_HOME=str(home)
    )
    run = [sys.executable, "-m", "phototag"]
    for model in models:
        subprocess.run(
            [*run, "models", "import", str(model)], env=env, check=True, capture_output=True
        )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [*run, "-q", "scan", str(folder)], env=env, check=True, stdout=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu, max(after.ru_maxrss, before.ru_maxrss)


def model_bound(n: int) -> tuple[float, int]:
    """Best photos/s of the model alone over batch sizes, on random input, all cores."""
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    best = (0.0, 0)
    for batch in (1, 8, 16, 32, 64):
        x = np.random.default_rng(1).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        session.run(None, {"input": x})  # warm-up
        runs = max(1, n // batch)
        start = time.perf_counter()
        for _ in range(runs):
            session.run(["probabilities", "embedding"], {"input": x})
        rate = runs * batch / (time.perf_counter() - start)
        best = max(best, (rate, batch))
    return best


def decode_bound(files: list[Path]) -> float:
    """Photos/s of phototag's own decode stage alone (read, hash, draft decode), one thread a core.

    In a fresh process set up as `phototag scan` sets itself up (glibc keeps photo-sized
    buffers), so the bound gets every advantage phototag has, and this process, which runs
    the naive pipeline, gets none of them.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_decode_rate, files).result()


def _decode_rate(files: list[Path]) -> float:
    from phototag.pipeline import decode
    from phototag.pipeline import runner as pipeline

    pipeline.reuse_photo_buffers()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        start = time.perf_counter()
        list(pool.map(lambda p: decode.load(p, 224, 200_000_000), files))
        return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument(
        "--naive-photos", type=int, default=60, help="the naive pipeline is slow: time it on fewer"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="variants alternate; ratios are taken within a round"
    )
    parser.add_argument(
        "--detector", action="store_true", help="also scan with the detector (the default set)"
    )
    parser.add_argument(
        "--with",
        "--int8",
        dest="extra",
        type=Path,
        action="append",
        default=[],
        help="with --detector: also scan with this detector file instead (repeatable)",
    )
    args = parser.parse_args()
    files = make_camera_photos(args.photos)
    size_mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
    print(
        f"{len(files)} photos, 4000x3000 JPEG q90, {size_mb:.1f} MB each on average; "
        f"{os.cpu_count()} cores; {args.rounds} rounds"
    )
    extra = [f.name for f in args.extra] if args.detector else []
    keys = ("naive", "ours", "model", "decode", "rss", "both", *extra)
    rows: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in ("ours", "both", *extra)}  # CPU s per photo
    for f in files:  # warm the page cache so every variant reads from memory alike
        f.read_bytes()
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="phototag-bench-") as tmp:
            work = Path(tmp)
            fresh_copies(files, work / "scan")
            seconds, used, rss_kib = phototag_scan(work / "scan", work / "home")
            cpu["ours"].append(used / len(files))
            if args.detector:
                fresh_copies(files, work / "both")
                both, used, _ = phototag_scan(work / "both", work / "home2", (MODEL, DETECTOR))
                rows["both"].append(len(files) / both)
                cpu["both"].append(used / len(files))
            for k, detector in enumerate(args.extra if args.detector else []):
                fresh_copies(files, work / f"extra{k}")
                both, used, _ = phototag_scan(
                    work / f"extra{k}", work / f"home{k + 3}", (MODEL, detector)
                )
                rows[detector.name].append(len(files) / both)
                cpu[detector.name].append(used / len(files))
            naive_files = fresh_copies(files[: args.naive_photos], work / "naive")
            rows["naive"].append(len(naive_files) / naive(naive_files, work / "naive.json"))
        rows["ours"].append(len(files) / seconds)
        rows["rss"].append(rss_kib / 1024)
        rows["model"].append(model_bound(len(files))[0])
        rows["decode"].append(decode_bound(files))
        print(
            f"round {r + 1}: naive {rows['naive'][-1]:.1f}, phototag {rows['ours'][-1]:.1f}, "
            f"model {rows['model'][-1]:.1f}, decode {rows['decode'][-1]:.1f}"
            + "".join(f", {k} {rows[k][-1]:.1f}" for k in ("both", *extra) if rows[k])
            + " photos/s",
            file=sys.stderr,
        )
    med = {k: float(np.median(v)) if v else 0.0 for k, v in rows.items()}
    vs_naive = np.median(np.array(rows["ours"]) / np.array(rows["naive"]))
    bound = np.minimum(rows["model"], rows["decode"])
    vs_bound = np.median(np.array(rows["ours"]) / bound)
    print(f"naive pipeline      {med['naive']:7.1f} photos/s  ({args.naive_photos} photos)")
    print(f"phototag scan       {med['ours']:7.1f} photos/s  peak RSS {max(rows['rss']):.0f} MB")
    print(f"model-only bound    {med['model']:7.1f} photos/s  (best batch size)")
    print(f"decode-only bound   {med['decode']:7.1f} photos/s")
    print(f"phototag / naive            {vs_naive:5.1f}x   (median of per-round ratios)")
    print(f"phototag / min(bounds)      {vs_bound:5.1%}")
    print(f"  CPU per photo (classifier-only scan) {1000 * np.median(cpu['ours']):.0f} ms")
    for name in ("both", *extra) if args.detector else ():
        kept = np.median(np.array(rows[name]) / np.array(rows["ours"]))
        by_cpu = np.median(np.array(cpu["ours"]) / np.array(cpu[name]))
        label = "detector" if name == "both" else name
        print(f"scan, classifier + {label} {med[name]:7.1f} photos/s")
        print(f"  its rate / classifier-only  {kept:5.1%}   (median of per-round ratios)")
        print(
            f"  by CPU time: {1000 * np.median(cpu[name]):.0f} ms per photo, classifier-only's"
            f" / its {by_cpu:5.1%}   (median of per-round ratios)"
        )


if __name__ == "__main__":
    main()
