"""The SQLite index's figures for bench/index_benchmark.py (`--sqlite`, `--migration`).

A synthetic library (tests/synthetic_library.py, tags only) is written through the real
`Index.put_many`; then `phototag search` runs as a user runs it (a fresh process each time,
interpreter start included), batches of 32 new photos are committed, and the service is
started on the library and its RSS read once it is idle.
"""

from __future__ import annotations

import compileall
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import synthetic_library

from phototag.library.index import PhotoRecord, open_index
from phototag.library.sqlindex import SqliteIndex
from phototag.records import Tag

# `cat AND beach`: two mid-frequency leaves (a few dozen photos per million), and the two
# most common ones (a sixth of the library: printing the paths is most of the time).
QUERIES = ("t40 AND t70", "t0 AND t1")
RUNS = 20


def write(index_dir: Path, n: int, backend: str = "sqlite") -> float:
    """Write n synthetic photos in batches of 10 000; seconds taken."""
    start = time.perf_counter()
    with open_index(index_dir, backend) as index:  # type: ignore[arg-type]
        for at in range(0, n, 100_000):
            lib = synthetic_library.library(min(100_000, n - at), dim=0, seed=at)
            records = synthetic_library.photo_records(lib)
            for r in records:
                r.path = r.path.replace("IMG_", f"IMG_{at // 100_000}_")
            for part in range(0, len(records), 10_000):
                index.put_many(records[part : part + 10_000])
    return time.perf_counter() - start


def fresh_search(config: Path, *args: str) -> tuple[float, float, int]:
    """p50 and p95 seconds of `phototag ARGS` in a fresh process, and the lines it printed."""
    return fresh("-m", "phototag", "-q", "-c", str(config), *args)


def fresh(*argv: str) -> tuple[float, float, int]:
    """p50 and p95 seconds of `python ARGV` in a fresh process, and the lines it printed."""
    times, found = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        found = done.stdout.count("\n")
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95), found


def commit_32(index_dir: Path, batches: int = 20) -> float:
    """Median seconds of one `put_many` of 32 new tagged photos (the pipeline's batch)."""
    times = []
    with open_index(index_dir) as index:
        for b in range(batches):
            records = [
                PhotoRecord(
                    path=f"/new/{time.time_ns()}_{b}_{i}.jpg",
                    size=i,
                    mtime_ns=i,
                    sha256=f"{b:032x}{i:032x}",
                    auto=[Tag("r0|m0|t0", 0.9), Tag("r1|m1|t1", 0.5)],
                    user=["kw1"],
                )
                for i in range(32)
            ]
            start = time.perf_counter()
            index.put_many(records)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def service_rss_mb(config: Path, env: dict[str, str]) -> float:
    """The service's RSS once it is idle on the library (model loaded, nothing queued)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phototag", "-c", str(config), "watch"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        status = Path(env["XDG_STATE_HOME"]) / "phototag" / "status.json"
        while time.monotonic() < deadline and '"idle"' not in _read(status):
            time.sleep(0.5)
        time.sleep(5)
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def report(folder: Path, n: int, model: Path | None) -> None:
    index_dir = folder / "index"
    config = folder / "config.yaml"
    watched = folder / "watched"
    watched.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"index:\n  path: {index_dir}\nwatch:\n  folders: [{watched}]\n", encoding="utf-8"
    )
    if not (index_dir / "index.sqlite").exists():
        seconds = write(index_dir, n)
        mb = (index_dir / "index.sqlite").stat().st_size / 1e6
        print(f"Wrote {n:,} photos through `Index.put_many` in {seconds:.0f} s: {mb:.0f} MB.\n")
    # byte-compiled, as `pip install` leaves phototag (see bench/cli_start_benchmark.py)
    compileall.compile_dir(Path(__file__).resolve().parents[1] / "daemon", quiet=1)
    print(f"| SQLite index, {n:,} photos | figure |")
    print("| --- | ---: |")
    print(f"| load average (1, 5, 15 min) before | {_load()} |")
    p50, p95, _ = fresh("-c", "pass")
    print(f"| `python -c pass`, p50 / p95 of {RUNS} | {p50:.2f} / {p95:.2f} s |")
    p50, p95, _ = fresh_search(config, "--version")
    print(
        f"| `phototag --version`, fresh process (interpreter and CLI start), p50 / p95 "
        f"| {p50:.2f} / {p95:.2f} s |"
    )
    for query in QUERIES:
        p50, p95, found = fresh_search(config, "search", query)
        print(
            f"| `phototag search '{query}'` ({found:,} photos), fresh process, p50 / p95 of "
            f"{RUNS} | {p50:.2f} / {p95:.2f} s |"
        )
    print(f"| load average after the searches | {_load()} |")
    print(
        f"| commit a batch of 32 tagged photos (`put_many`), median of 20 | "
        f"{commit_32(index_dir) * 1e3:.1f} ms |"
    )
    if model is not None:
        env = {
            **os.environ,
            "XDG_STATE_HOME": str(folder / "state"),
            "XDG_DATA_HOME": str(folder / "data"),
            "XDG_CONFIG_HOME": str(folder / "cfg"),
        }
        subprocess.run(
            [
                sys.executable,
                "-m",
                "phototag",
                "-q",
                "-c",
                str(config),
                "models",
                "import",
                str(model),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        print(
            f"| the service (`phototag watch`) idle, model loaded: RSS | "
            f"{service_rss_mb(config, env):.0f} MB |"
        )


def migration(n: int) -> None:
    """Time the migration of an n-photo TinyDB index and compare every record."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, n, "tinydb")
        with open_index(folder, "tinydb", readonly=True) as old:
            before = {r.path: dataclasses.asdict(r) for r in old.records()}
        start = time.perf_counter()
        lines: list[str] = []
        with SqliteIndex(folder, log=lines.append) as index:
            seconds = time.perf_counter() - start
            after = {r.path: dataclasses.asdict(r) for r in index.records()}
        same = sum(after.get(path) == record for path, record in before.items())
        print(
            f"| migrate a {n:,}-photo TinyDB index to SQLite | {seconds:.1f} s; "
            f"{len(after):,} of {len(before):,} records, {same:,} identical field by field |"
        )
        print(f"\n{lines[-1]}")
