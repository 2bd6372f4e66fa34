"""`backfill`: tag an archive on a Ray cluster, into the same library as `scan`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from phototag.cli.common import (
    Subparsers,
    UserError,
    command,
    error,
    open_index,
    progress_bar,
    show,
)
from phototag.config import Config
from phototag.pipeline import backfill


def cmd_backfill(args: argparse.Namespace, cfg: Config) -> int:
    roots = [Path(os.path.abspath(f)) for f in args.folders]
    try:
        with open_index(cfg, dry_run=False) as index, progress_bar(args, None, "photo") as bar:

            def committed(done: int) -> None:
                bar.update(done - bar.n)

            report = backfill.backfill(roots, cfg, index, args.ray, args.num_cpus, committed)
    except backfill.BackfillError as exc:
        raise UserError(str(exc)) from None
    for path, reason in report.failures:
        error(path, reason)
    if args.json:
        print(
            json.dumps(
                {
                    "tagged": report.tagged,
                    "unchanged": report.unchanged,
                    "undone": report.undone,
                    "failed": [{"path": show(p), "error": e} for p, e in report.failures],
                    "seconds": round(report.seconds, 2),
                    "ray": report.address,
                }
            )
        )
    print(
        f"backfilled {report.tagged} photos, {report.unchanged} unchanged, "
        + (f"{report.undone} left undone, " if report.undone else "")
        + f"{len(report.failures)} failed in {report.seconds:.1f} s "
        f"({report.photos_per_s:.1f} photos/s) on Ray at {report.address}",
        file=sys.stderr,
    )
    return 1 if report.failures else 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "backfill",
        cmd_backfill,
        "tag an archive on a Ray cluster (pip install 'phototag[cluster]')",
        description="Tag every new or changed photo below the folders with the same stages as "
        "`scan`, run on Ray Data: decoding on CPU tasks, the models in actors that keep them "
        "loaded (on GPUs where the cluster has them), keywords written beside each photo on the "
        "shared storage, and the results committed to this machine's library index in batches. "
        "Run it again to resume a stopped run: committed photos are skipped. Every worker must "
        "see the photos at the same paths and have the models installed (`phototag models`).",
    )
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    p.add_argument(
        "--ray",
        default="auto",
        metavar="ADDRESS",
        help="the cluster (e.g. ray://head:10001 or head:6379); auto: a local Ray (default)",
    )
    p.add_argument(
        "--num-cpus", type=int, metavar="N", help="CPUs of a local Ray (default: all cores)"
    )
