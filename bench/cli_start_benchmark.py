"""`phototag search` before and after a change, side by side: the same command in fresh
processes, runs of the two versions interleaved so both see the same load.

Run: nice -n 10 .venv/bin/python bench/cli_start_benchmark.py --config CONFIG \
         --before DIR [--runs 20] [--cold] [QUERY]
`--before` is the `daemon/` folder of the other version, put first on PYTHONPATH (main's, for
example: `git archive main daemon | tar -x -C /tmp/before`, then `--before /tmp/before/daemon`);
CONFIG names the index (bench/index_benchmark.py --sqlite --dir DIR writes DIR/config.yaml).
Both trees are byte-compiled first, as `pip install` does: an editable install run with
PYTHONDONTWRITEBYTECODE (this machine's environment) compiles every phototag module again in
every run, which a user's installed phototag does not. `--cold` drops the index's file from
the page cache (posix_fadvise) before each search: the first search after a while, not the
interpreter's files. The rounds in which a run took more than `--slow` seconds are listed with
every command's time in that round, to tell a slow machine (everything slow, `python -c pass`
included) from slow work (the search alone).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1] / "daemon"


def once(env: dict[str, str], argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run: under load the wall time
    grows with the wait for a core, the CPU time much less."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, capture_output=True, check=False)
    return time.perf_counter() - start, _children_cpu() - cpu


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def index_files(config: Path) -> list[Path]:
    """The database of CONFIG's index (`index.path`, as bench/index_benchmark.py writes it;
    its WAL exists only while a connection is open)."""
    line = next(x for x in config.read_text().splitlines() if x.strip().startswith("path:"))
    return [Path(line.split(":", 1)[1].strip()) / "index.sqlite"]


def drop_from_cache(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold", action="store_true", help="the index out of the page cache")
    parser.add_argument("--slow", type=float, default=0.5, help="list rounds slower than this")
    parser.add_argument("query", nargs="?", default="t40 AND t70")
    args = parser.parse_args()
    for tree in (args.before, HERE):
        compileall.compile_dir(tree, quiet=1)
    after = dict(os.environ)
    before = {**after, "PYTHONPATH": str(args.before.resolve())}
    search = ["-m", "phototag", "-q", "-c", str(args.config), "search", args.query]
    commands = {
        "`python -c pass`": (after, ["-c", "pass"]),
        "`phototag --version`, before": (before, ["-m", "phototag", "--version"]),
        "`phototag --version`, after": (after, ["-m", "phototag", "--version"]),
        f"`phototag search '{args.query}'`, before": (before, search),
        f"`phototag search '{args.query}'`, after": (after, search),
    }
    files = index_files(args.config) if args.cold else []
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    load = os.getloadavg()
    for _ in range(args.runs):
        for name, (env, argv) in commands.items():
            if argv is search:
                drop_from_cache(files)
            wall, used = once(env, argv)
            times[name].append(wall)
            cpu[name].append(used)
    print(f"load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    cache = "the index dropped from the page cache before each search" if args.cold else "warm"
    print(
        f"| fresh process, {args.runs} runs interleaved ({cache}) | p50 s | p95 s | max s "
        "| CPU p50 s |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds in times.items():
        p50, p95 = np.percentile(seconds, [50, 95])
        print(
            f"| {name} | {p50:.2f} | {p95:.2f} | {max(seconds):.2f} | {np.median(cpu[name]):.2f} |"
        )
    names = list(times)
    ratio = np.median(times[names[3]]) / np.median(times[names[4]])
    print(f"\nsearch before / after (p50): {ratio:.2f}x")
    print(f"\nrounds with a run over {args.slow} s (every command's time in that round, s):")
    for i in range(args.runs):
        row = [times[name][i] for name in names]
        if max(row) > args.slow:
            print(f"- round {i + 1}: " + ", ".join(f"{t:.2f}" for t in row))


if __name__ == "__main__":
    main()
