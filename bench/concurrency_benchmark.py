"""Many processes, one library, at full size: the service drains N photos while `scan` tags
another N and `refine` re-analyses N more, all on the same SQLite index.

The user's situation: a newer model was installed. N "old" photos were tagged with the
shared tf1-quant MobileNetV2 before; then the tf2-ptq version is imported (the catalogue
picks the newer), the service starts, N photos are dropped into its watched folder, and
`phototag scan` of another N and `phototag refine` (which re-analyses the old N with the new
model) run beside it. Camera-like JPEGs from ../shared/photos (tests/test_service_e2e.py
makes them; every third carries a keyword of the user's). Afterwards every photo is checked
as the tests check: tagged once, the user's keyword kept, index and file agreeing, pixels
untouched (every 10th decoded), no "in use" refusal. tests/test_index_concurrency.py is the
smaller automated version.

Run: nice -n 10 .venv/bin/python bench/concurrency_benchmark.py [--n 500] [--size 1600x1200]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from phototag import catalogue  # noqa: E402
from phototag.config import Config  # noqa: E402
from phototag.library.index import open_index  # noqa: E402
from phototag.records import ModelVersion  # noqa: E402
from tests.conftest import MODEL_V1, MODEL_V2, PHOTOS  # noqa: E402
from tests.test_index_concurrency import config, finished, phototag, printed  # noqa: E402
from tests.test_service_e2e import (  # noqa: E402
    Originals,
    ServiceProcess,
    check_tagged_once,
    drop,
    tagged_counts,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="photos for each of the three")
    parser.add_argument("--size", default="1600x1200", help="the JPEGs' size, WxH")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="phototag-concurrency-") as tmp:
        run(Path(tmp), args.n, (width, height))


def run(tmp: Path, n: int, size: tuple[int, int]) -> None:
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        os.environ[var] = str(tmp / var.lower())  # the children inherit them
    sources = sorted(p for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".bmp"))
    originals = Originals.make(sources, size)
    for name in ("watched", "scanned", "old"):
        (tmp / name).mkdir()
    cfg_file = config(tmp, tmp / "watched")

    catalogue.import_file(MODEL_V1, "mobilenet-v2")
    old = drop(originals, tmp / "old", 2 * n, n)
    start = time.perf_counter()
    finished(phototag(cfg_file, "-q", "scan", str(tmp / "old")), timeout=3600)
    print(f"before: {n} old photos scanned with tf1-quant in {time.perf_counter() - start:.1f} s")

    catalogue.import_file(MODEL_V2)  # the newer version: what refine brings the old ones to
    service = ServiceProcess(cfg_file, tmp / "service.log")
    try:
        service.wait_started(timeout=300)
        start = time.perf_counter()
        by_service = drop(originals, tmp / "watched", 0, n)
        by_scan = drop(originals, tmp / "scanned", n, n)
        scan = phototag(cfg_file, "-q", "scan", str(tmp / "scanned"))
        refine = phototag(cfg_file, "-q", "refine")
        scan_out, _ = finished(scan, timeout=3600)
        scan_s = time.perf_counter() - start
        _, refine_err = finished(refine, timeout=3600)
        refine_s = time.perf_counter() - start
        service.wait_drained(n, timeout=3600)
        wall = time.perf_counter() - start
        counts = tagged_counts(service.text())
    except BaseException:  # pytest.fail is a BaseException: show it, not a failed stop
        service.kill()
        print(service.text()[-3000:], file=sys.stderr)
        raise
    stop = time.perf_counter()
    service.proc.send_signal(signal.SIGTERM)  # as systemd stops it; a loaded machine is slow
    stopped = service.proc.wait(timeout=600)
    stop_s = time.perf_counter() - stop

    scanned = printed(scan_out, tmp / "scanned")
    with open_index(Config().index_dir, readonly=True) as index:
        records = [index.get(p.path) for p in old]
    backbones = {ModelVersion.parse(r.model_version).backbone for r in records if r}
    check_tagged_once(by_service + by_scan + old, originals, pixels_every=10)
    print(f"photos: {size[0]}x{size[1]} JPEGs, {n} for each of service, scan and refine")
    print(f"all three done: {wall:.1f} s (scan done at {scan_s:.1f} s, refine at {refine_s:.1f} s)")
    print(
        f"service: {len(counts)} of {n} tagged, inferred once each: {set(counts.values()) == {1}}"
    )
    print(f"scan: {len(scanned)} of {n} printed as tagged")
    print(f"refine: {refine_err.strip().splitlines()[-1]}")
    print(f"old photos' backbone after refine: {sorted(backbones)}")
    print(f'no "in use" refusal; all {3 * n} photos checked (tagged once, user keyword kept, ')
    print("index = file, every 10th decoded and compared pixel for pixel)")
    print(f"service stopped by SIGTERM with status {stopped} in {stop_s:.1f} s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
