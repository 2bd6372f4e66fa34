"""`search`: the photos whose tags match a query, answered by the index in one SQL query.

A one-off `phototag search` is mostly interpreter start and imports (docs/benchmarks.md), so
this module imports only the query language and the index: not numpy (dates load it, for
--from and --to), nor the similarity maths of `similar` (tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from phototag.cli.common import Subparsers, UserError, command, open_index, show
from phototag.config import Config
from phototag.library import query
from phototag.library.index import PhotoRecord
from phototag.library.query import Filter

if TYPE_CHECKING:
    import numpy as np


def cmd_search(args: argparse.Namespace, cfg: Config) -> int:
    text = " ".join(args.query)  # unquoted words: a space is AND
    try:
        node = query.parse(text)
    except query.QueryError as exc:
        raise UserError(f"search: {exc}\n{textwrap.indent(exc.caret, '  ')}") from None
    if not 0 <= args.min_score <= 1:
        raise UserError(f"--min-score {args.min_score}: a score is between 0 and 1")
    flt = Filter(
        source=args.source,
        min_score=args.min_score,
        taken_from=_date("--from", args.date_from),
        taken_before=_date("--to", args.date_to, end=True),
        folder=os.path.abspath(args.folder) if args.folder else None,
    )
    with open_index(cfg, dry_run=True) as index:
        if not index:  # an empty index, not an unknown tag
            print(f"phototag: the index {show(cfg.index_dir)} is empty", file=sys.stderr)

        def known(term: str) -> bool:
            return index.tagged(term)

        unknown = sorted(t for t in query.terms(node) if not known(t))
        forms = {t: next((v for v in query.number_variants(t) if known(v)), None) for t in unknown}
        mapping = {t: v for t, v in forms.items() if v}
        for term, form in mapping.items():
            print(f"phototag: no photo is tagged {term!r}; searching {form!r}", file=sys.stderr)
        for term in (t for t in unknown if t not in mapping):
            print(f"phototag: no photo is tagged {term!r}", file=sys.stderr)
        node = query.replace_terms(node, mapping)
        found = index.search(node, flt)
        if not found and len(unknown) > 1 and known(query.normalise(" ".join(unknown))):
            tag = " ".join(unknown)
            print(f'phototag: a tag "{tag}" exists: quote it, as in \'"{tag}"\'', file=sys.stderr)
        for path in found:
            record = index.get(path) if args.json else None
            print(json.dumps(_search_json(record)) if record else show(path))
    return 0 if found else 1  # as grep: 1 means no match


def _search_json(record: PhotoRecord) -> dict[str, object]:
    return {
        "path": show(record.path),
        "taken": record.taken,
        "tags": [{"path": t.path, "score": round(t.score, 4)} for t in record.auto],
        "keywords": record.user,
    }


def _date(option: str, text: str | None, end: bool = False) -> np.datetime64 | None:
    if text is None:
        return None
    from phototag.library.tagindex import date_bound  # numpy's dates: only with --from/--to

    try:
        return date_bound(text, end)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "search",
        cmd_search,
        "find indexed photos by their tags",
        description="Print the indexed photos whose tags match QUERY, one path per line. Terms are "
        "tag names or paths (`animal` also finds photos tagged animal|bird|parrot; "
        '`animal|bird`), case-insensitive; quote multi-word tags ("hot dog"). Combine them with '
        "AND (or just a space), OR, NOT (or a leading -) and parentheses: "
        "'cat AND (beach OR sea) NOT night' (put -- before a query that starts with -). No match: exit status 1, as grep. Your own "
        "keywords match as tags too.",
    )
    p.add_argument("query", nargs="+", metavar="QUERY", help="words without quotes are ANDed")
    p.add_argument(
        "--source",
        choices=["any", "user", "auto"],
        default="any",
        help="match your keywords, phototag's tags, or both (default: %(default)s)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=0.0,
        metavar="SCORE",
        help="phototag's tags must score at least this (your keywords score 1)",
    )
    p.add_argument("--folder", type=Path, metavar="DIR", help="only photos at or below DIR")
    p.add_argument(
        "--from",
        dest="date_from",
        metavar="DATE",
        help="taken on or after DATE (EXIF date; YYYY, YYYY-MM, YYYY-MM-DD)",
    )
    p.add_argument(
        "--to",
        dest="date_to",
        metavar="DATE",
        help="taken on or before DATE, all of it (--to 2023 includes 31 December 2023)",
    )
