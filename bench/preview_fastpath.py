"""JPEG embedded-preview fast path vs full decoding: speed and top-tag agreement, side by side.

Run: .venv/bin/python bench/preview_fastpath.py [--coco 128] [--copies 1]
Data: camera-like JPEGs made from ../shared/photos and the first `--coco` photos of
../shared/coco256 val/ (each resized to 4000x3000, quality 92, with a 1620x1080 MPF preview
as cameras write it). Models: the default set (MobileNetV2 classifier, NanoDet detector, bird
specialist) imported from ../shared/models into a temporary catalogue and run through
`tagger.Tagger.analyse`, the path `scan` takes. Both decodes of a photo run one after the
other, so they see the same moments. Agreement: the photo's top-1 tag, and its set of top-3
tags, the same from both decodes.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = {
    "mobilenet-v2": "mobilenet_v2_1.0_224_quant.onnx",
    "coco-nanodet": "coco_nanodet.onnx",
    "inat-bird": "inat_bird.onnx",
}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=int, default=128, help="coco256 val photos to add")
    parser.add_argument("--copies", type=int, default=1, help="mirrored copies per photo (1 or 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_DATA_HOME"] = str(Path(tmp) / "data")  # a catalogue of our own
        from phototag import catalogue
        from phototag.config import Config
        from phototag.pipeline import decode, tagger
        from phototag.records import PhotoFile

        for name, file in MODELS.items():
            catalogue.import_file(SHARED / "models" / file, name)
        t = tagger.load(Config())
        sources = sorted(p for p in (SHARED / "photos").iterdir() if p.suffix in (".jpg", ".bmp"))
        sources += sorted((SHARED / "coco256" / "val").glob("*.jpg"))[: args.coco]
        full_s, fast_s, top1, top3 = [], [], 0, 0
        for i, source in enumerate(sources):
            for copy in range(args.copies):
                path = Path(tmp) / f"{i:03d}_{copy}.jpg"
                path.write_bytes(camera_jpeg(source, flip=copy == 1))
                file, data = PhotoFile.stat(path), path.read_bytes()
                tags = []
                for fast, times in ((False, full_s), (True, fast_s)):
                    start = time.perf_counter()
                    decoded = decode.decode(
                        file, data, "", t.model.input_size, 200_000_000, t.letterbox, fast
                    )
                    times.append(time.perf_counter() - start)
                    tags.append([tag.path for tag in t.analyse([decoded]).tags[0]])
                top1 += tags[0][:1] == tags[1][:1]
                top3 += set(tags[0][:3]) == set(tags[1][:3])
    n = len(full_s)
    full, fast = statistics.median(full_s), statistics.median(fast_s)
    print(f"{n} camera-like JPEGs (4000x3000 + 1620x1080 MPF preview), {t.version}")
    print(f"decode, full image (JPEG draft mode): {full * 1000:.1f} ms/photo (median)")
    print(f"decode, MPF preview (fast path):      {fast * 1000:.1f} ms/photo (median)")
    print(f"speed-up: {full / fast:.2f}x")
    print(f"top-1 tag agreement: {top1 / n:.1%} ({top1}/{n})")
    print(f"top-3 tag set agreement: {top3 / n:.1%} ({top3}/{n})")


if __name__ == "__main__":
    main()
