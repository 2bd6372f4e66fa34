"""The face stage's cost beside the rest of the pipeline, on 12 MP JPEGs, in one run.

    python bench/faces_benchmark.py --photos 40

Makes 4000x3000 JPEGs (quality 90) of the photos of people in ../shared/faces, each fitted
into the frame on grey, then on fresh copies of the same files in one round:
  1. `phototag scan` with faces off (classifier; writes keywords, index);
  2. `phototag scan` with faces on (the same, plus decode at 1600 px, detect, align, embed,
     store, name, write regions);
  3. the face models alone on the decoded pictures: faces per second.
Prints photos/s of 1 and 2, the face stage's cost per photo (2 - 1) and faces/s of 3.
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

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
CACHE = Path(tempfile.gettempdir()) / "phototag-bench-faces"
PHOTOTAG = [sys.executable, "-m", "phototag"]


def make_photos(n: int) -> list[Path]:
    """n 4000x3000 JPEGs of the faces/ photos (cached between runs)."""
    CACHE.mkdir(exist_ok=True)
    sources = sorted((SHARED / "faces" / "train").glob("*.jpg"))
    sources += sorted((SHARED / "faces" / "test").glob("*.jpg"))
    out = []
    for i in range(n):
        path = CACHE / f"IMG_{i:05d}.JPG"
        out.append(path)
        if not path.exists():
            src = ImageOps.exif_transpose(Image.open(sources[i % len(sources)])).convert("RGB")
            frame = Image.new("RGB", (4000, 3000), (128, 128, 128))
            fitted = ImageOps.contain(src, (4000, 3000), Image.Resampling.BICUBIC)
            frame.paste(fitted, ((4000 - fitted.width) // 2, (3000 - fitted.height) // 2))
            frame.save(path, quality=90)
    return out


def scan(photos: list[Path], work: Path, faces: bool) -> float:
    """Seconds of `phototag scan` over fresh copies, in its own XDG folders."""
    folder = work / ("on" if faces else "off")
    (folder / "photos").mkdir(parents=True)
    for p in photos:
        shutil.copy(p, folder / "photos" / p.name)
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(folder / var.lower())
    for model in ("mobilenet_v2_1.0_224_quant", "face_blazeface", "face_faceres"):
        subprocess.run(
            [*PHOTOTAG, "models", "import", str(MODELS / f"{model}.onnx")],
            env=env,
            check=True,
            capture_output=True,
        )
    cfg = folder / "config.yaml"
    cfg.write_text(f"faces:\n  enabled: {str(faces).lower()}\n", encoding="utf-8")
    start = time.perf_counter()
    subprocess.run(
        [*PHOTOTAG, "-q", "-c", str(cfg), "scan", str(folder / "photos")],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def models_alone(photos: list[Path]) -> tuple[int, float]:
    """(faces found, seconds) of detect + align + embed on pictures decoded beforehand."""
    from phototag.pipeline import decode
    from phototag.pipeline.faces import FaceModels

    models = FaceModels(MODELS / "face_blazeface.onnx", MODELS / "face_faceres.onnx")
    pictures = [decode.load(p, 224, 200_000_000, picture=1600).picture for p in photos]
    models.find(pictures[0])  # warm up
    start = time.perf_counter()
    found = sum(len(models.find(p)) for p in pictures if p is not None)
    return found, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    photos = make_photos(args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        off = scan(photos, Path(tmp), faces=False)
        on = scan(photos, Path(tmp), faces=True)
    found, alone = models_alone(photos)
    n = len(photos)
    print(f"{n} photos 4000x3000, {os.cpu_count()} cores")
    print(f"scan, faces off: {n / off:6.2f} photos/s  ({1000 * off / n:6.1f} ms/photo)")
    print(f"scan, faces on:  {n / on:6.2f} photos/s  ({1000 * on / n:6.1f} ms/photo)")
    print(f"face stage: {1000 * (on - off) / n:.1f} ms/photo; faces on / off time: {on / off:.2f}x")
    print(f"face models alone: {found} faces in {alone:.2f} s = {found / alone:.1f} faces/s")


if __name__ == "__main__":
    main()
