"""`tag` and `scan`: run photos through the pipeline and report each one."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from phototag.cli.common import (
    Subparsers,
    command,
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
    labelled = [(show(t), Outcome(Path(t), error=UNSUPPORTED_URL)) for t in refused]
    labelled += [(url, _tag_url(url, tagger, cfg)) for url in urls]
    if files:
        with open_index(cfg, args.dry_run) as index:
            pipeline = Pipeline(cfg, tagger, index, dry_run=args.dry_run, force=True)
            labelled += [(show(o.path), o) for o in pipeline.run(files)]
    for label, outcome in labelled:
        if outcome.error:
            error(label, outcome.error)
        else:
            print_tagged(label, outcome, args.json)
    return 1 if any(o.error for _, o in labelled) else 0


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
    tagger = load_tagger(cfg)
    items = list(discover([Path(os.path.abspath(f)) for f in args.folders], cfg.scan))
    counts = {"tagged": 0, "unchanged": 0, "moved": 0, "failed": 0}
    with (
        open_index(cfg, args.dry_run) as index,
        progress_bar(args, len(items), "photo") as bar,
    ):

        def done(outcome: Outcome) -> None:
            bar.update(1)
            if outcome.error:
                counts["failed"] += 1
                error(outcome.path, outcome.error)
            elif outcome.skipped == "unchanged":
                counts["unchanged"] += 1
            elif outcome.skipped and outcome.skipped.startswith("moved"):
                counts["moved"] += 1
            else:
                counts["tagged"] += 1
                print_tagged(show(outcome.path), outcome, args.json)

        Pipeline(cfg, tagger, index, dry_run=args.dry_run, force=args.force).run(items, done)
    verb = "would tag" if args.dry_run else "tagged"
    print(
        f"{verb} {counts['tagged']}, unchanged {counts['unchanged']}, moved {counts['moved']}, "
        f"failed {counts['failed']}",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


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
    p.add_argument("--json", action="store_true", help="one JSON object per photo")
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
    p.add_argument(
        "--json", action="store_true", help="one JSON object per tagged photo instead of a line"
    )
    write_options(p)
