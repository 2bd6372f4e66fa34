"""JPEG embedded-preview fast path vs full decoding: speed and top-tag agreement, side by side.

Run: .venv/bin/python bench/preview_fastpath.py [--copies 3]
Data: camera-like JPEGs made from ../shared/photos (each photo resized to 4000x3000, quality 92,
with a 1620x1080 MPF preview as cameras write it, EXIF orientation 1); model: the shared
MobileNet v2 (tf1-quant). Agreement: the same top-1 class from both decodes.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from phototag.pipeline import decode
from phototag.pipeline.infer import Model
from phototag.records import PhotoFile

SHARED = Path(__file__).resolve().parents[2] / "shared"


def camera_jpeg(source: Path, flip: bool) -> bytes:
    """4000x3000 main image with a 1620x1080 MPF preview (Pillow writes MPF for MPO saves)."""
    img = Image.open(source).convert("RGB")
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # a second, different frame
    main = img.resize((4000, 3000), Image.Resampling.LANCZOS)
    small = img.resize((1620, 1080), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    main.save(out, "MPO", save_all=True, append_images=[small], quality=92)
    return out.getvalue()


def timed(files: list[tuple[PhotoFile, bytes]], size: int, fast: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    pixels = [decode.decode(f, data, "", size, 200_000_000, fast=fast).pixels for f, data in files]
    return (time.perf_counter() - start) / len(files), np.stack(pixels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=1, help="mirrored copies per photo (1 or 2)")
    args = parser.parse_args()
    sources = sorted(p for p in (SHARED / "photos").iterdir() if p.suffix in (".jpg", ".bmp"))
    tmp = Path("/tmp/phototag-preview-bench")
    tmp.mkdir(exist_ok=True)
    files = []
    for i, source in enumerate(sources):
        for copy in range(args.copies):
            path = tmp / f"{i:03d}_{copy}.jpg"
            path.write_bytes(camera_jpeg(source, flip=copy == 1))
            files.append((PhotoFile.stat(path), path.read_bytes()))
    model = Model(SHARED / "models" / "mobilenet_v2_1.0_224_quant.onnx", "input", 224, "cpu")
    full_s, full_px = timed(files, 224, fast=False)
    fast_s, fast_px = timed(files, 224, fast=True)
    full_top = model.run(full_px).probabilities.argmax(axis=1)
    fast_top = model.run(fast_px).probabilities.argmax(axis=1)
    agree = float(np.mean(full_top == fast_top))
    print(f"{len(files)} camera-like JPEGs (4000x3000 + 1620x1080 MPF preview), 224-px model")
    print(f"full decode (JPEG draft 1/8): {full_s * 1000:.1f} ms/photo")
    print(f"preview fast path:            {fast_s * 1000:.1f} ms/photo")
    print(f"speed-up: {full_s / fast_s:.2f}x   top-1 agreement: {agree:.1%}")


if __name__ == "__main__":
    main()
