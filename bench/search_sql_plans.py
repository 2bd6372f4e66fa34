"""The SQL of `a AND b` on the SQLite index: what `sqlindex._compile` emits against the
alternatives, and the full statement of `search` on a fresh connection with SQLite's page
cache or memory map enlarged.

Run: nice -n 10 .venv/bin/python bench/search_sql_plans.py --index DIR/index [--runs 9] [A B]
(bench/index_benchmark.py --sqlite --dir DIR writes DIR/index). Prints markdown: the median
and the slowest of --runs, in milliseconds, with the number of rows each statement returns.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from phototag.library.query import Filter, parse
from phototag.library.sqlindex import _where

TERM = "SELECT photo AS id FROM terms WHERE term = ? AND source IN ('user', 'auto') AND score >= 0"
PLANS = {
    "`INTERSECT` of the two posting ranges (what `search` runs)": (
        f"SELECT * FROM ({TERM}) INTERSECT SELECT * FROM ({TERM})"
    ),
    "a join (the planner probes `terms_photo`)": (
        "SELECT DISTINCT x.photo FROM terms x JOIN terms y ON y.term = ? AND y.photo = x.photo "
        "AND y.source IN ('user', 'auto') WHERE x.term = ? AND x.source IN ('user', 'auto')"
    ),
    "`EXISTS` on the primary key, `DISTINCT`": (
        "SELECT DISTINCT photo FROM terms AS x WHERE term = ? AND source IN ('user', 'auto') "
        "AND EXISTS (SELECT 1 FROM terms AS y INDEXED BY sqlite_autoindex_terms_1 "
        "WHERE y.term = ? AND y.source IN ('user', 'auto') AND y.photo = x.photo)"
    ),
}
PRAGMAS = {
    "defaults": [],
    "`mmap_size` 256 MB": ["PRAGMA mmap_size=268435456"],
    "`cache_size` 64 MB": ["PRAGMA cache_size=-65536"],
}


def timed(run: object, runs: int) -> tuple[float, float, int]:
    """Median and slowest milliseconds of `run()`, and the rows it returned."""
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = len(run())  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), max(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("terms", nargs="*", default=["t40", "t70"])
    args = parser.parse_args()
    a, b = args.terms
    file = args.index / "index.sqlite"
    db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    print(f"| `{a} AND {b}`, one connection, warm | median ms | slowest ms | rows |")
    print("| --- | ---: | ---: | ---: |")
    for name, sql in PLANS.items():
        median, slowest, rows = timed(lambda sql=sql: db.execute(sql, (a, b)).fetchall(), args.runs)
        print(f"| {name} | {median:.1f} | {slowest:.1f} | {rows:,} |")
    params: list[object] = []
    statement = (
        f"SELECT path FROM photos WHERE {_where(parse(f'{a} AND {b}'), Filter(), params)} "
        "ORDER BY path"
    )

    def fresh(pragmas: list[str]) -> list[object]:
        with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as conn:
            for pragma in pragmas:
                conn.execute(pragma)
            return conn.execute(statement, params).fetchall()

    print(
        f"\n| `search '{a} AND {b}'`'s statement, a new connection each time | median ms | slowest ms | rows |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name, pragmas in PRAGMAS.items():
        median, slowest, rows = timed(lambda p=pragmas: fresh(p), args.runs)
        print(f"| {name} | {median:.1f} | {slowest:.1f} | {rows:,} |")


if __name__ == "__main__":
    main()
