"""`tags`: the vocabulary search knows, each tag with how many photos carry it."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable

from phototag.cli.common import Subparsers, command, emit, open_index
from phototag.config import Config
from phototag.library.index import PhotoRecord
from phototag.records import LEVEL_SEP, Source


def tag_counts(records: Iterable[PhotoRecord], source: Source | None) -> Counter[str]:
    """Photos per tag path, every level counted (`animal` counts each photo of `animal|bird`).

    A photo counts once per path, however many of its tags share that level; the user's
    keywords are flat tags, as search sees them.
    """
    counts: Counter[str] = Counter()
    for record in records:
        paths = set()
        if source in (None, "auto"):
            paths |= {t.path for t in record.auto}
        if source in (None, "user"):
            paths |= set(record.user)
        levels = set()
        for path in paths:
            parts = path.split(LEVEL_SEP)
            levels |= {LEVEL_SEP.join(parts[: i + 1]) for i in range(len(parts))}
        counts.update(levels)
    return counts


def cmd_tags(args: argparse.Namespace, cfg: Config) -> int:
    with open_index(cfg, dry_run=True) as index:
        counts = tag_counts(index.records(), args.source)
    if args.json:
        emit({"tags": [{"tag": p, "photos": n} for p, n in sorted(counts.items())]}, as_json=True)
    else:
        for path, n in sorted(counts.items()):
            depth = path.count(LEVEL_SEP)
            emit(f"{n:6d}  {'  ' * depth}{path.rsplit(LEVEL_SEP, 1)[-1]}")
    return 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "tags",
        cmd_tags,
        "every tag in the index with its photo count",
        description="List every tag search knows, as a tree (each level counts the photos below "
        "it), with the number of photos carrying it. Your keywords are flat tags.",
    )
    p.add_argument(
        "--source", choices=("user", "auto"), help="only your keywords, or only phototag's"
    )
