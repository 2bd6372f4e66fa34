"""What writing named faces into a photo costs, beside the keyword write of the same photo.

Run: .venv/bin/python bench/regions_benchmark.py [--photos 20]
Copies of camera-sized 12 MP JPEGs (bench/throughput.py's, with sensor-like noise and EXIF)
are timed side by side in one run, median per photo: `metadata.write` (the auto tags, one atomic rewrite), `regions.write`
of three faces (regions, PersonInImage, People keywords: one more rewrite), the same write
again (nothing changes: read and compare only), and `regions.read`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from places_benchmark import per_photo_ms
from throughput import fresh_copies, make_camera_photos

from phototag.config import WriteConfig
from phototag.files import metadata, regions
from phototag.records import Tag

TAGS = [Tag("animal|mammal|cat", 0.9), Tag("object|sofa", 0.6)]
FACES = [
    regions.Region("Alice", 0.2, 0.3, 0.08, 0.11),
    regions.Region("Bob", 0.5, 0.3, 0.07, 0.1),
    regions.Region("Carol", 0.8, 0.35, 0.06, 0.09),
]
SIZE = (4000, 3000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20)
    args = parser.parse_args()
    cfg = WriteConfig()
    with tempfile.TemporaryDirectory() as tmp:
        photos = fresh_copies(make_camera_photos(args.photos), Path(tmp) / "photos")
        mb = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
        tags = per_photo_ms(photos, lambda p: metadata.write(p, TAGS, "bench", cfg))
        faces = per_photo_ms(photos, lambda p: regions.write(p, FACES, SIZE, cfg))
        again = per_photo_ms(photos, lambda p: regions.write(p, FACES, SIZE, cfg))
        read = per_photo_ms(photos, lambda p: regions.read(p, cfg))
    print(f"{args.photos} photos, 4000x3000 JPEG, {mb:.1f} MB on average, median ms per photo")
    print(f"metadata.write (tags)          {tags:8.2f}")
    print(
        f"regions.write (3 faces)        {faces:8.2f}   ratio to the tag write {faces / tags:.2f}"
    )
    print(f"regions.write again (no change){again:8.2f}   ratio {again / tags:.2f}")
    print(f"regions.read                   {read:8.2f}   ratio {read / tags:.2f}")


if __name__ == "__main__":
    main()
