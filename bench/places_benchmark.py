"""What the place stage costs per photo, beside decoding the same photo.

Run: .venv/bin/python bench/places_benchmark.py [--photos 40]
Copies of the shared 1080p JPEG, each given a GPS IFD (a position in a different city), are
timed side by side in one run: `decode.load` (read, hash, decode, resize: what the pipeline
does first), `location.read` (EXIF/XMP/sidecar GPS), the lookup (`places.locate`, one photo at
a time as the pipeline asks), and a first keyword write (`metadata.write`) without and with
the IPTC location fields filled (`location.filler`, in the same rewrite), alternately.
The geocoder's one-time start (loading GeoNames' 150 000 places) is timed apart.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import piexif

from phototag.config import Config
from phototag.files import location, metadata
from phototag.pipeline import decode, places
from phototag.records import Position, Tag

PHOTO = Path(__file__).parents[1].parent / "shared" / "photos" / "cat_1080p.jpg"
CITIES = [(38.72, -9.14), (52.52, 13.40), (35.68, 139.77), (48.86, 2.35), (40.71, -74.01)]


def with_gps(path: Path, lat: float, lon: float) -> None:
    def dms(x: float) -> tuple[tuple[int, int], ...]:
        d, m = int(abs(x)), round((abs(x) % 1) * 60 * 1000)
        return ((d, 1), (m, 1000), (0, 1))

    gps = {
        piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: dms(lat),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: dms(lon),
    }
    piexif.insert(piexif.dump({"0th": {}, "Exif": {}, "GPS": gps, "1st": {}}), str(path))


def per_photo_ms(photos: list[Path], stage: Callable[[Path], object]) -> float:
    times = []
    for photo in photos:
        start = time.perf_counter()
        stage(photo)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def interleaved(
    pairs: Iterable[tuple[Path, Path]], a: Callable[[Path], object], b: Callable[[Path], object]
) -> tuple[float, float]:
    """Median ms of `a` and `b`, run alternately photo by photo: both see the same moments."""
    times_a, times_b = [], []
    for pa, pb in pairs:
        for stage, photo, times in ((a, pa, times_a), (b, pb, times_b)):
            start = time.perf_counter()
            stage(photo)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times_a), 1000 * statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    cfg = Config()
    tags = [Tag("animal|mammal|cat", 0.9)]
    with tempfile.TemporaryDirectory() as tmp:
        photos, others = [], []
        for i in range(args.photos):
            for name, copies in (("a", photos), ("b", others)):
                copies.append(Path(tmp) / f"p{i:03d}{name}.jpg")
                shutil.copyfile(PHOTO, copies[-1])
                with_gps(copies[-1], *CITIES[i % len(CITIES)])
        start = time.perf_counter()
        places.locate([Position(*CITIES[0])], cfg.places)
        startup = time.perf_counter() - start
        found = {p: location.read(p, cfg.write) for p in photos + others}

        def lookup(p: Path) -> object:
            return places.place_of(found[p], cfg.places)

        def write(p: Path) -> object:
            return metadata.write(p, tags, "bench", cfg.write)

        def write_and_fill(p: Path) -> object:
            place = places.place_of(found[p], cfg.places)
            assert place is not None
            return metadata.write(p, tags, "bench", cfg.write, fill=location.filler(place))

        decode_ms = per_photo_ms(photos, lambda p: decode.load(p, 224, cfg.scan.max_pixels))
        read_ms = per_photo_ms(photos, lambda p: location.read(p, cfg.write))
        lookup_ms = per_photo_ms(photos, lookup)
        write_ms, fill_ms = interleaved(zip(photos, others, strict=True), write, write_and_fill)
    print(f"{args.photos} photos {PHOTO.name}, median per photo:")
    print(f"  decode.load      {decode_ms:8.3f} ms")
    print(f"  location.read    {read_ms:8.3f} ms")
    print(f"  places lookup    {lookup_ms:8.3f} ms")
    print(f"  keyword write    {write_ms:8.3f} ms (first tagging)")
    print(f"  ... with fill    {fill_ms:8.3f} ms (the location fields in the same rewrite)")
    stage = read_ms + lookup_ms + (fill_ms - write_ms)
    print(f"  place stage (read + lookup + fill's extra) / decode: {stage / decode_ms:.3f}")
    print(f"  geocoder start (once per process): {startup:.2f} s")


if __name__ == "__main__":
    main()
