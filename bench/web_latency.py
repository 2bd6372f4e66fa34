"""Web app latency: library and search pages (with their tag facets) on a 100 000-photo
synthetic library, a facet clicked with a date range, thumbnails.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/web_latency.py [--photos 100000]
[--backend sqlite tinydb] (both by default, side by side in one run).
Server time is measured in process (Starlette's test client: routing, session check, search,
template), without a network between; prints markdown for docs/benchmarks.md ("Web app").
The library is built through the real Index API (tests/synthetic_library.py); thumbnails are
made from a real photo in ../shared when present.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import synthetic_library
from fastapi.testclient import TestClient

from phototag import config
from phototag.library.index import Index, PhotoRecord, open_index
from phototag.library.sqlindex import SqliteIndex
from phototag.records import Tag
from phototag.web import auth, thumbs
from phototag.web.app import create_app

ROOT = Path(__file__).parents[1]


def p50_p95(times: list[float]) -> str:
    p50, p95 = np.percentile(np.array(times) * 1e3, [50, 95])
    return f"{p50:.1f} | {p95:.1f}"


def timed_gets(client: TestClient, urls: list[str]) -> list[float]:
    out = []
    for url in urls:
        start = time.perf_counter()
        answer = client.get(url)
        out.append(time.perf_counter() - start)
        assert answer.status_code == 200, (url, answer.status_code)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "tinydb"])
    args = parser.parse_args()
    records = synthetic_library.photo_records(synthetic_library.library(args.photos, dim=0))
    measured = {backend: measure(backend, records, args.requests) for backend in args.backend}
    print(f"{args.photos} photos; first page after start (caches built): ", end="")
    print(", ".join(f"{b} {first * 1e3:.0f} ms" for b, (first, _) in measured.items()) + "\n")
    print("| request | " + " | ".join(f"{b} p50 ms | {b} p95 ms" for b in measured) + " |")
    print("| --- |" + " ---: | ---: |" * len(measured))
    for at, (name, _) in enumerate(next(iter(measured.values()))[1]):
        cells = " | ".join(p50_p95(rows[at][1]) for _, rows in measured.values())
        print(f"| {name} | {cells} |")
    photo = ROOT.parent / "shared" / "photos" / "cat_1080p.jpg"
    if photo.exists():
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache  # never the user's cache
            made = min(_once(photo, fresh=True) for _ in range(5))
            cached = min(_once(photo, fresh=False) for _ in range(5))
        print(
            f"\nthumbnail of {photo.name}: made {made * 1e3:.1f} ms, cached {cached * 1e3:.2f} ms "
            f"({made / cached:.0f}x)"
        )


def measure(
    backend: str, records: list[PhotoRecord], requests: int
) -> tuple[float, list[tuple[str, list[float]]]]:
    """The time of the first page, and of each kind of request, on a fresh library."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.Config()
        cfg.index.path = str(Path(tmp) / "index")
        cfg.index.backend = backend  # type: ignore[assignment]
        start = time.perf_counter()
        with open_index(cfg.index_dir, cfg.index.backend) as index:
            for i in range(0, len(records), 10_000):
                index.put_many(records[i : i + 10_000])
            print(
                f"{backend}: built {len(index)} photos in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
            stored = auth.hash_password("benchmark")
            app = create_app(cfg, index, lambda: None, users=lambda: {"me": stored})  # type: ignore[arg-type, return-value]
            client = TestClient(app, base_url="http://127.0.0.1")
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
            assert token
            client.post(
                "/login",
                data={"username": "me", "password": "benchmark", "csrf": token[1]},
                follow_redirects=False,  # so the first page below is the first one served
            )
            first = timed_gets(client, ["/"])[0]  # builds the caches, once per process
            rng = np.random.default_rng(0)
            pages = [f"/?page={int(p)}" for p in rng.integers(1, 1600, size=requests)]
            words = [
                leaf.split("|")[int(rng.integers(3))] for leaf in synthetic_library.vocabulary()
            ]
            queries = []
            for _ in range(requests):
                a, b, c = (words[int(i)] for i in synthetic_library.zipf_choice(rng, len(words), 3))
                queries.append(rng.choice([a, f"{a} AND {b}", f"({a} OR {b}) AND NOT {c}"]))
            searches = [f"/?q={q.replace(' ', '+')}" for q in queries]
            # a facet clicked on a search page, within a year of dates taken
            narrowed = [
                f"/?q=%28{q.replace(' ', '+')}%29+AND+%22{words[int(i)]}%22&from=2015&to=2015"
                for q, i in zip(queries, rng.integers(len(words), size=len(queries)), strict=True)
            ]
            rows = [
                ("library page (60 thumbnails, random page)", timed_gets(client, pages)),
                ("search page (query mix)", timed_gets(client, searches)),
                ("facet clicked, dates from/to (query mix)", timed_gets(client, narrowed)),
                (
                    "/api/photos (query mix)",
                    timed_gets(client, [f"/api/photos?q={q.replace(' ', '+')}" for q in queries]),
                ),
                (
                    "library page right after a write (SQLite: by another connection)",
                    after_writes(client, index, cfg, records[: requests // 4], pages),
                ),
            ]
    return first, rows


def after_writes(
    client: TestClient,
    index: Index,
    cfg: config.Config,
    changed: list[PhotoRecord],
    pages: list[str],
) -> list[float]:
    """A page after each of a few one-photo writes, as the service makes them while it runs;
    SQLite's writes come from a second connection, as the service's do."""
    writer = open_index(cfg.index_dir, "sqlite") if isinstance(index, SqliteIndex) else index
    out = []
    try:
        for record, url in zip(changed, pages, strict=False):
            writer.put(dataclasses.replace(record, auto=[*record.auto, Tag("r0|m0|new", 0.5)]))
            out += timed_gets(client, [url])
    finally:
        if writer is not index:
            writer.close()
    return out


def _once(photo: Path, fresh: bool) -> float:
    if fresh:
        for old in thumbs.cache_dir().rglob("*.jpg"):
            old.unlink()
    start = time.perf_counter()
    thumbs.thumbnail(photo, thumbs.SIZES["thumb"], 200_000_000)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
