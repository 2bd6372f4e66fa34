"""The stored index at scale: what a `phototag search` or `similar` run pays at 100 000 photos.

Writes a synthetic library (tests/synthetic_library.py, embeddings included) through
`Index.put_many`, then, each in a fresh process: opening the TinyDB file, building the tag
index, warm queries (what the service answers), the `search` command in-process, and
`phototag search` / `similar` as a user runs them (interpreter start included).

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/index_benchmark.py [--n 100000] [--dir DIR]
Prints markdown for docs/benchmarks.md ("Search"). With --dir, an index already written
there (by the same --n) is reused. That report is of the TinyDB backend; `--sqlite` gives the
SQLite backend's figures instead (fresh-process `search`, batch commits, the service's idle
RSS; tags only, no embeddings, so 1 000 000 photos fit a small machine), and `--migration`
times moving a TinyDB index of --n photos into SQLite and compares every record.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import reference_embeddings
import sqlite_figures
import synthetic_library
from search_benchmark import query_mix

from phototag import catalogue, cli
from phototag.library import index as index_module
from phototag.library.index import open_index
from phototag.library.query import parse

MODEL = catalogue.find("mobilenet-v2", "tf1-quant")  # the model of the shared test data
STORE = f"embedding-{MODEL.sha256[:12]}"  # where `similar` with that model looks
QUERIES = ["t0", "r1 -m7", "(t1 OR t2) NOT r3", "NOT t0"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write(folder: Path, n: int) -> None:
    lib = synthetic_library.library(n)
    records = synthetic_library.photo_records(lib)
    start = time.perf_counter()
    with open_index(folder / "index", "tinydb") as index:
        for at in range(0, n, 10_000):
            part = records[at : at + 10_000]
            index.put_many(part, [{STORE: v} for v in lib.embeddings[at : at + len(part)]])
    seconds = time.perf_counter() - start
    (folder / "config.yaml").write_text(
        f"index:\n  path: {folder / 'index'}\n  backend: tinydb\n", encoding="utf-8"
    )
    json_mb = (folder / "index" / "photos.json").stat().st_size / 1e6
    f16_mb = (folder / "index" / f"{STORE}.f16").stat().st_size / 1e6
    print(
        f"Wrote {n:,} photos through `Index.put_many` (batches of 10 000, with embeddings) in "
        f"{seconds:.0f} s: photos.json {json_mb:.0f} MB, embeddings {f16_mb:.0f} MB.\n"
    )


def measure(folder: Path) -> dict[str, float]:
    """Load, build and warm-query timings and memory (run in a fresh process)."""
    base = rss_mb()
    out: dict[str, float] = {}
    start = time.perf_counter()
    index = open_index(folder / "index", "tinydb", readonly=True)
    out["open_s"], out["open_mb"] = time.perf_counter() - start, rss_mb() - base
    start = time.perf_counter()
    index.tag_index()
    out["build_s"], out["build_mb"] = time.perf_counter() - start, rss_mb() - base
    mix = [(parse(q), f) for q, f in query_mix(300)]
    for node, flt in mix[:20]:
        index.search(node, flt)
    times = []
    for node, flt in mix:
        start = time.perf_counter()
        index.search(node, flt)
        times.append(time.perf_counter() - start)
    out["p50_ms"], out["p95_ms"] = np.percentile(np.array(times) * 1e3, [50, 95])
    start = time.perf_counter()
    index.records()
    out["records_s"] = time.perf_counter() - start
    return out


def traced(folder: Path) -> dict[str, float]:
    """What stays allocated (tracemalloc; RSS also counts freed heap not given back)."""
    tracemalloc.start()
    index = open_index(folder / "index", "tinydb", readonly=True)
    opened = tracemalloc.get_traced_memory()[0]
    index.tag_index()
    built = tracemalloc.get_traced_memory()[0]
    return {"open_mb": opened / 1e6, "build_mb": (built - opened) / 1e6}


def in_process(config: Path, query: str) -> float:
    """`cli.main(["search", query])` in this (fresh) process, output discarded."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        start = time.perf_counter()
        assert cli.main(["-q", "-c", str(config), "search", query]) == 0
        return time.perf_counter() - start


def child(*args: str) -> str:
    return subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    ).stdout


def command(env: dict[str, str], *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "phototag", "-q", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return time.perf_counter() - start, done.stdout


def report(folder: Path, n: int) -> None:
    config = folder / "config.yaml"
    m = json.loads(child("--measure", str(folder)))
    t = json.loads(child("--traced", str(folder)))
    print(
        f"| {n:,} photos, each step in a fresh process | time | memory: RSS growth "
        "| memory: allocated (tracemalloc) |"
    )
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| open the index (TinyDB JSON load, path and hash maps) | {m['open_s']:.2f} s "
        f"| {m['open_mb']:.0f} MB | {t['open_mb']:.0f} MB |"
    )
    print(
        f"| then build the tag index (`Index.tag_index`) | {m['build_s']:.2f} s "
        f"| +{m['build_mb'] - m['open_mb']:.0f} MB | +{t['build_mb']:.0f} MB |"
    )
    print(
        f"| then 300 queries of `query_mix` through `Index.search`, p50 / p95 | {m['p50_ms']:.2f} / {m['p95_ms']:.2f} ms | | |"
    )
    print(
        f"| `Index.records()` (what `similar`, `duplicates`, `cluster` read) | {m['records_s']:.2f} s | | |"
    )
    g = json.loads(child("--measure", str(folder), "--gc-running"))
    print(
        f"| the same with the cycle collector running (no pauses): open / build / records() "
        f"| {g['open_s']:.2f} / {g['build_s']:.2f} / {g['records_s']:.2f} s | | |"
    )
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "data")}
    for query in QUERIES:
        seconds = float(child("--cli", str(config), query))
        total, out = command(env, "-c", str(config), "search", query)
        print(
            f"| `phototag search '{query}'` ({out.count(chr(10)):,} photos): in-process "
            f"`cli.main` / the command | {seconds:.2f} s / {total:.2f} s | | |"
        )
    if reference_embeddings.MODEL.exists():
        catalogue_env = {**env, "PHOTOTAG_CONFIG": str(config)}
        command(catalogue_env, "models", "import", str(reference_embeddings.MODEL))
        photo = reference_embeddings.PHOTOS / "cat_720p.jpg"
        total, _ = command(catalogue_env, "similar", str(photo), "-k", "10")
        print(
            f"| `phototag similar cat_720p.jpg -k 10` (not indexed; model load, decode, infer) | {total:.2f} s | | |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="where to write the index (default: a temp dir)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gc-running", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cli", nargs=2, metavar=("CONFIG", "QUERY"), help=argparse.SUPPRESS)
    parser.add_argument("--sqlite", action="store_true", help="the SQLite backend's figures")
    parser.add_argument("--migration", action="store_true", help="time a TinyDB -> SQLite move")
    args = parser.parse_args()
    if args.migration:
        sqlite_figures.migration(args.n)
        return
    if args.sqlite:
        with contextlib.ExitStack() as stack:
            folder = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            model = reference_embeddings.MODEL
            sqlite_figures.report(folder, args.n, model if model.exists() else None)
        return
    if args.gc_running:  # for comparison: the index without its pauses of the cycle collector
        index_module._gc_paused = contextlib.nullcontext
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    if args.traced:
        print(json.dumps(traced(args.traced)))
        return
    if args.cli:
        print(in_process(Path(args.cli[0]), args.cli[1]))
        return
    with contextlib.ExitStack() as stack:
        folder = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if not (folder / "config.yaml").exists():
            write(folder, args.n)
        report(folder, args.n)


if __name__ == "__main__":
    main()
