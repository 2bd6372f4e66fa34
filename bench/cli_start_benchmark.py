"""`phototag search` before and after a change, side by side: the same command in fresh
processes, runs of the two versions interleaved so both see the same load.

Run: nice -n 10 .venv/bin/python bench/cli_start_benchmark.py --config CONFIG \
         --before ../main/daemon [--runs 20] [QUERY]
`--before` is the `daemon/` folder of the other checkout (put first on PYTHONPATH);
CONFIG names the index (bench/index_benchmark.py --sqlite --dir DIR writes DIR/config.yaml).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def once(env: dict[str, str], argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("query", nargs="?", default="t40 AND t70")
    args = parser.parse_args()
    after = dict(os.environ)
    before = {**after, "PYTHONPATH": str(args.before.resolve())}
    commands = {
        "`python -c pass`": (after, ["-c", "pass"]),
        "`phototag --version`, before": (before, ["-m", "phototag", "--version"]),
        "`phototag --version`, after": (after, ["-m", "phototag", "--version"]),
        f"`phototag search '{args.query}'`, before": (
            before,
            ["-m", "phototag", "-q", "-c", str(args.config), "search", args.query],
        ),
        f"`phototag search '{args.query}'`, after": (
            after,
            ["-m", "phototag", "-q", "-c", str(args.config), "search", args.query],
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    load = os.getloadavg()
    for _ in range(args.runs):
        for name, (env, argv) in commands.items():
            times[name].append(once(env, argv))
    print(f"load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"| fresh process, {args.runs} runs interleaved | p50 s | p95 s |")
    print("| --- | ---: | ---: |")
    for name, seconds in times.items():
        p50, p95 = np.percentile(seconds, [50, 95])
        print(f"| {name} | {p50:.2f} | {p95:.2f} |")
    names = list(times)
    ratio = np.median(times[names[3]]) / np.median(times[names[4]])
    print(f"\nsearch before / after (p50): {ratio:.2f}x")


if __name__ == "__main__":
    main()
