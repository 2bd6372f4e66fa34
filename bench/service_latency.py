"""The service's drop-to-tags latency and the time to drain a burst, on the real `phototag watch`.

    python bench/service_latency.py --singles 20 --burst 1000

Starts `python -m phototag watch` in a subprocess with fresh XDG folders and the shared
model imported through the catalogue, watching an empty folder with the default settings
(settle_s 2 s; --poll to watch by polling instead of inotify). Then:
  1. stages: where one photo's time goes, in this process (decode, inference at batch 1,
     keyword write), measured while the service idles;
  2. singles: copies one camera-sized photo at a time into the folder on the idle service
     and times, from the copy's close, (a) until the tags are in the file (our write
     replaces the file: its inode changes) and (b) until the service reports the job done
     (the index is written; `status.json`'s done counter);
  3. burst: copies `--burst` photos in as fast as a card import does and times until every
     one is tagged and the queue is empty, then reads the service's peak RSS;
  4. the same burst through `phototag scan` (no service) for comparison (--no-scan: not);
  5. what one index put and flush cost with --index-sizes photos indexed.
Camera-sized photos (4000x3000 JPEG q90 with EXIF) come from bench/throughput.py's cache;
making one takes seconds, so beyond `--distinct` of them the others are copies that differ
in their EXIF ImageUniqueID only: unique files, each decoded, inferred and written in full.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from throughput import CACHE, MODEL, make_camera_photos  # bench/ is on sys.path as a script

from phototag.config import WatchConfig

POLL_S = 0.005  # how often the bench looks for the result


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll_s: float = POLL_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll_s)


class Service:
    """`phototag watch` in a subprocess with its own XDG folders."""

    def __init__(self, home: Path, folder: Path, poll: bool) -> None:
        self.env = dict(
            os.environ,
            XDG_DATA_HOME=str(home / "data"),
            XDG_STATE_HOME=str(home / "state"),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_CACHE_HOME=str(home / "cache"),
        )
        self.status_file = home / "state" / "phototag" / "status.json"
        cfg = home / "config.yaml"
        cfg.write_text(f"watch:\n  folders: [{folder}]\n  poll: {str(poll).lower()}\n")
        run = [sys.executable, "-m", "phototag"]
        subprocess.run(
            [*run, "models", "import", str(MODEL)], env=self.env, check=True, capture_output=True
        )
        self.log = (home / "service.log").open("w")
        self.proc = subprocess.Popen(
            [*run, "--config", str(cfg), "watch"], env=self.env, stderr=self.log
        )
        wait_for(lambda: self.status().get("state") == "idle", 120, "the service to start")

    def status(self) -> dict[str, object]:
        import json

        if self.proc.poll() is not None:
            raise SystemExit(f"the service exited with {self.proc.returncode}; see {self.log.name}")
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def done(self) -> int:
        return int(self.status().get("done", 0))  # type: ignore[call-overload]

    def idle(self) -> bool:
        st = self.status()
        return st.get("state") == "idle" and st.get("queued") == 0 and st.get("in_flight") == 0

    def peak_rss_mb(self) -> float:
        """The service's peak resident memory so far (VmHWM), its child processes included."""
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(c) for c in children]
    return found + [g for c in found for g in _children(c)]


def replaced(path: Path, inode: int) -> bool:
    """Our keyword write replaces the photo (temp file + rename): a new inode."""
    try:
        return path.stat().st_ino != inode
    except FileNotFoundError:
        return False


def singles(
    service: Service, photos: list[Path], folder: Path, poll_s: float
) -> tuple[list[float], list[float]]:
    """Latencies (s) from a copy's close to the tags in the file, and to the job done.

    Drops come at random moments (within `poll_s` when polling), not in step with the
    service's own rhythm, which would bias a polled folder's latency.
    """
    rng = random.Random(0)
    in_file, indexed = [], []
    for src in photos:
        time.sleep(rng.uniform(0, poll_s or 1.0))
        dest = folder / f"single_{src.name}"
        done = service.done()
        shutil.copyfile(src, dest)
        closed = time.perf_counter()
        inode = dest.stat().st_ino
        wait_for(lambda: replaced(dest, inode), 120, f"{dest.name} tagged")  # noqa: B023
        in_file.append(time.perf_counter() - closed)
        wait_for(lambda: service.done() > done, 120, f"{dest.name} done")  # noqa: B023
        indexed.append(time.perf_counter() - closed)
        wait_for(service.idle, 120, "idle")
        time.sleep(0.5)  # the event of our own write comes and goes: idle again
    return in_file, indexed


def burst(service: Service, photos: list[Path], folder: Path) -> tuple[float, float]:
    """Seconds to copy the burst in, and from the first copy until all are tagged and idle."""
    start = time.perf_counter()
    inodes = {}
    for src in photos:
        dest = folder / src.name
        shutil.copyfile(src, dest)
        inodes[dest] = dest.stat().st_ino
    copied = time.perf_counter() - start
    pending = dict(inodes)

    def all_tagged() -> bool:  # stats only the photos not yet seen tagged, twice a second
        for p, i in list(pending.items()):
            if replaced(p, i):
                del pending[p]
        return not pending

    wait_for(all_tagged, 3600, "the burst tagged", poll_s=0.5)
    wait_for(service.idle, 600, "an empty queue")
    return copied, time.perf_counter() - start


def scan(service: Service, photos: list[Path], folder: Path) -> float:
    """Seconds `phototag scan` takes over fresh copies of the burst, in the service's XDG
    folders (the service is stopped by then: the index is one writer's)."""
    folder.mkdir()
    for src in photos:
        shutil.copyfile(src, folder / src.name)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "phototag", "-q", "scan", str(folder)], env=service.env, check=True
    )
    return time.perf_counter() - start


def stages(photo: Path, home: Path) -> dict[str, float]:
    """Median seconds of each stage for one camera-sized photo, in this process."""
    os.environ.update(XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "stages"))
    from phototag import config
    from phototag.files import metadata
    from phototag.pipeline import decode, tagger
    from phototag.records import Tag

    cfg = config.Config()
    model = tagger.load(cfg)
    work = home / "stage.jpg"
    times: dict[str, list[float]] = {"decode": [], "infer": [], "write": []}
    tags = [Tag("animal|mammal|carnivore|feline|cat", 0.8), Tag("artifact|box", 0.3)]
    for _ in range(7):
        shutil.copyfile(photo, work)
        t0 = time.perf_counter()
        decoded = decode.load(work, model.model.input_size, cfg.scan.max_pixels)
        t1 = time.perf_counter()
        model.tags(model.model.run(decoded.pixels[None]), decoded.colour[None])
        t2 = time.perf_counter()
        metadata.write(work, tags, "bench", cfg.write)
        t3 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[name].append(seconds)
    return {name: float(np.median(v[1:])) for name, v in times.items()}  # first: warm-up


def index_costs(home: Path, size: int) -> tuple[float, float, float]:
    """Seconds for one `Index.put` and one `Index.flush` with `size` photos indexed, and
    the index file's MB. Records look like the service's (five tags, a user keyword)."""
    from phototag.library.index import PhotoRecord, open_index
    from phototag.records import Tag

    tags = [Tag(f"animal|vertebrate|mammal|carnivore|feline|cat{i}", 0.5) for i in range(5)]
    folder = home / f"index-{size}"

    def record(i: int) -> PhotoRecord:
        path = f"/home/ann/Pictures/2024/06/IMG_{i:06d}.JPG"
        return PhotoRecord(
            path, 5_000_000, i, f"{i:064x}", 4000, 3000, "2024-06-01T12:00:00", "m@1",
            tags, ["Grandma"], [], path, time.time(), {"embedding": i, "colour": i},
        )  # fmt: skip

    with open_index(folder) as index:
        index.db.insert_multiple(record(i).to_doc() for i in range(size))
    puts, flushes = [], []
    with open_index(folder) as index:
        for i in range(size, size + 5):
            t0 = time.perf_counter()
            index.put(record(i))
            t1 = time.perf_counter()
            index.flush()
            puts.append(t1 - t0)
            flushes.append(time.perf_counter() - t1)
    mb = (folder / "photos.json").stat().st_size / 1e6
    return float(np.median(puts)), float(np.median(flushes)), mb


def camera_photos(n: int, distinct: int) -> list[Path]:
    """`n` unique camera-sized files from `distinct` images (cached in /tmp)."""
    import pyexiv2

    base = make_camera_photos(min(n, distinct))
    variants = CACHE.with_name(CACHE.name + "-variants")
    variants.mkdir(exist_ok=True)
    out = list(base)
    for i in range(len(base), n):
        path = variants / f"IMG_{i:05d}.JPG"
        if not path.exists():
            with pyexiv2.ImageData(base[i % len(base)].read_bytes()) as img:
                img.modify_exif({"Exif.Photo.ImageUniqueID": f"{i:032x}"})
                tmp = path.with_suffix(".part")
                tmp.write_bytes(img.get_bytes())
                tmp.rename(path)
        out.append(path)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--singles", type=int, default=20, help="photos dropped one at a time")
    parser.add_argument("--burst", type=int, default=1000, help="photos dropped at once")
    parser.add_argument("--poll", action="store_true", help="watch by polling, not inotify")
    parser.add_argument("--distinct", type=int, default=500, help="distinct images to make")
    parser.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the burst through `phototag scan` (needs room for another copy)",
    )
    parser.add_argument(
        "--index-sizes", type=int, nargs="*", default=[1000, 10000], help="index costs at these"
    )
    args = parser.parse_args()
    photos = camera_photos(max(args.burst, args.singles), args.distinct)
    size_mb = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
    load = os.getloadavg()[0]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {load:.1f}; photos 4000x3000 JPEG q90, {size_mb:.1f} MB"
    )
    with tempfile.TemporaryDirectory(prefix="phototag-service-bench-") as tmp:
        home = Path(tmp)
        folder = home / "watched"
        folder.mkdir()
        service = Service(home, folder, args.poll)
        try:
            parts = stages(photos[0], home)  # while the service idles, just before the singles
            print(
                "one photo, stage medians: "
                + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in parts.items())
            )
            if args.singles:
                poll_s = WatchConfig().poll_interval_s if args.poll else 0.0
                in_file, indexed = singles(service, photos[: args.singles], folder, poll_s)
                for name, values in (("tags in file", in_file), ("job done", indexed)):
                    print(
                        f"single drop -> {name:12s} p50 {pct(values, 50):6.2f} s  "
                        f"p95 {pct(values, 95):6.2f} s  (n={len(values)}, "
                        f"{'polling' if args.poll else 'inotify'}, settle_s 2)"
                    )
            if args.burst:
                copied, drained = burst(service, photos[: args.burst], folder)
                print(
                    f"burst of {args.burst}: copied in {copied:.1f} s, all tagged and idle after "
                    f"{drained:.1f} s ({args.burst / drained:.1f} photos/s); "
                    f"service peak RSS {service.peak_rss_mb():.0f} MB"
                )
        finally:
            service.stop()
        if args.burst and args.scan:
            seconds = scan(service, photos[: args.burst], home / "scanned")
            print(
                f"same burst through `phototag scan`: {seconds:.1f} s "
                f"({args.burst / seconds:.1f} photos/s)"
            )
        for size in args.index_sizes:
            put, flush, mb = index_costs(home, size)
            print(
                f"index of {size} photos ({mb:.1f} MB): put {put * 1000:.1f} ms, "
                f"flush {flush * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
