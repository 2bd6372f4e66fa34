"""`tag` and `scan`: run photos through the pipeline and report each one."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from phototag.cli.common import (
    Subparsers,
    Summary,
    UserError,
    command,
    emit,
    error,
    load_tagger,
    open_index,
    print_tagged,
    progress_bar,
    show,
    write_options,
)
from phototag.config import Config
from phototag.pipeline import fetch
from phototag.pipeline.runner import Pipeline, discover, tag_bytes
from phototag.pipeline.tagger import Tagger
from phototag.records import Outcome

# file://, ftp://, gopher://, data: ... : a URL, not a file name, and not one we fetch.
OTHER_URL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|data:)")
UNSUPPORTED_URL = (
    "unsupported URL: only http:// and https:// URLs are fetched (give a file as a path)"
)


def cmd_tag(args: argparse.Namespace, cfg: Config) -> int:
    tagger = load_tagger(cfg)
    urls = [t for t in args.targets if t.startswith(("http://", "https://"))]
    refused = [t for t in args.targets if t not in urls and OTHER_URL.match(t)]
    files = [Path(os.path.abspath(t)) for t in args.targets if t not in urls + refused]
    failed = 0
    for target in refused:
        failed += report_photo(
            show(target), Outcome(Path(target), error=UNSUPPORTED_URL), args.json
        )
    for url in urls:
        failed += report_photo(url, _tag_url(url, tagger, cfg), args.json)
    if not files:
        return 1 if failed else 0
    summary = _run(args, cfg, tagger, files, force=True, summarise=len(files) > 1)
    return 1 if failed or summary.failed else 0


def _tag_url(url: str, tagger: Tagger, cfg: Config) -> Outcome:
    """Tags for a photo on the web; nothing is written (there is no file of ours to write)."""
    try:
        data = fetch.fetch(url, cfg.fetch.max_bytes, cfg.fetch.timeout_s, cfg.fetch.allow_private)
    except fetch.FetchError as exc:
        return Outcome(Path(url), error=str(exc).removeprefix(f"{url}: "))
    outcome = tag_bytes(url, data, tagger, cfg)
    if outcome.ok:
        outcome.skipped = "URL: tags only, nothing written"
    return outcome


def cmd_scan(args: argparse.Namespace, cfg: Config) -> int:
    roots = [Path(os.path.abspath(f)) for f in args.folders]
    missing = [r for r in roots if not r.exists()]
    if missing:
        raise UserError(f"{show(missing[0])}: no such file or folder")
    tagger = load_tagger(cfg)
    items = list(discover(roots, cfg.scan))
    if not items:
        where = " ".join(show(r) for r in roots)
        print(f"phototag: no photos found under {where}", file=sys.stderr)
        return 0
    summary = _run(args, cfg, tagger, items, force=args.force)
    return 1 if summary.failed else 0


def _run(
    args: argparse.Namespace,
    cfg: Config,
    tagger: Tagger,
    items: list[Path | Outcome],
    force: bool,
    summarise: bool = True,
) -> Summary:
    """Photos through the pipeline with a progress bar, a line each, and the summary at the end."""
    summary = Summary(dry_run=args.dry_run)
    with (
        open_index(cfg, args.dry_run) as index,
        progress_bar(args if summarise else QUIET, len(items), "photo") as bar,
    ):

        def done(outcome: Outcome) -> None:
            bar.update(1)
            summary.add(outcome)
            if summary.shown(outcome):
                report_photo(show(outcome.path), outcome, args.json)

        Pipeline(cfg, tagger, index, dry_run=args.dry_run, force=force).run(items, done)
    if summarise:
        if args.json:
            emit({"summary": summary.as_json()}, as_json=True)
        print(summary.line(), file=sys.stderr)
    return summary


QUIET = argparse.Namespace(quiet=True)  # one photo: no bar, no summary


def report_photo(label: str, outcome: Outcome, as_json: bool) -> int:
    """One photo's line on stdout (and its error on stderr); 1 if it failed."""
    if outcome.error:
        error(label, outcome.error)
    if outcome.error and not as_json:
        return 1
    print_tagged(label, outcome, as_json)
    return 1 if outcome.error else 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "tag",
        cmd_tag,
        "tag photos or URLs and write the keywords into them",
        description="Tag photos (files or http(s) URLs), print the tags with scores, and write them "
        "into each file (XMP and IPTC, or an XMP sidecar). Keywords already in a file are never "
        "removed or changed. URLs are only tagged, never written.",
    )
    p.add_argument("targets", nargs="+", metavar="PHOTO|URL")
    p.add_argument("-n", "--dry-run", action="store_true", help="print tags, write nothing")

    write_options(p)

    p = command(
        sub,
        "scan",
        cmd_scan,
        "tag every photo below folders, skipping unchanged ones",
        description="Tag every photo below the folders, with a progress bar, printing each photo's "
        "tags as it is done (as `tag` does). Photos already indexed "
        "with the same size and modification time are skipped without reading them; moved photos "
        "are recognised by content and keep their tags.",
    )
    p.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    p.add_argument("-n", "--dry-run", action="store_true", help="print tags, write nothing")
    p.add_argument("--force", action="store_true", help="re-tag photos even when unchanged")
    write_options(p)
