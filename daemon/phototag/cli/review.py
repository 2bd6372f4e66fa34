"""`refine`, `suggest` and `undo`: revisit the auto-tags of indexed photos."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from phototag.cli.common import (
    Subparsers,
    UserError,
    command,
    emit,
    error,
    load_tagger,
    open_index,
    progress_bar,
    show,
    write_options,
)
from phototag.config import Config
from phototag.files.metadata import MetadataError
from phototag.learn import suggest
from phototag.library import undo
from phototag.library.index import under
from phototag.pipeline import refine
from phototag.pipeline.runner import discover
from phototag.records import LEVEL_SEP, Outcome, Tag


def cmd_refine(args: argparse.Namespace, cfg: Config) -> int:
    tagger = load_tagger(cfg)
    dry_run = args.dry_run or cfg.write.dry_run
    with open_index(cfg, dry_run) as index:
        todo = refine.plan(under(index.records(), args.paths), tagger)
        print(todo.describe(), file=sys.stderr)
        counts = {"changed": 0, "failed": 0}
        if dry_run or not todo:
            _refined_summary(args, todo, counts, dry_run)
            return 0
        with progress_bar(args, len(todo), "photo") as bar:

            def done(refined: refine.Refined) -> None:
                bar.update(1)
                if refined.error:
                    counts["failed"] += 1
                    error(refined.path, refined.error)
                elif refined.added or refined.removed:
                    counts["changed"] += 1
                else:
                    return
                if args.json:
                    emit(
                        {
                            "path": show(refined.path),
                            "added": refined.added,
                            "removed": refined.removed,
                            "written_to": show(refined.written_to) if refined.written_to else None,
                            "error": refined.error,
                        },
                        as_json=True,
                    )
                elif not refined.error:
                    change = [f"+{_leaf(p)}" for p in refined.added]
                    change += [f"-{_leaf(p)}" for p in refined.removed]
                    emit(f"{show(refined.path)}: {' '.join(change)}")

            refine.run(todo, index, tagger, cfg, done)
    _refined_summary(args, todo, counts, dry_run)
    print(
        f"refined {len(todo)}: {counts['changed']} changed, {counts['failed']} failed",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


def _refined_summary(
    args: argparse.Namespace, todo: refine.Plan, counts: dict[str, int], dry_run: bool
) -> None:
    """With --json, the last line: the plan's cost and what came of it."""
    if args.json:
        plan = {"reanalyse": len(todo.reanalyse), "rescore": len(todo.rescore)}
        summary = plan | {"current": todo.current} | counts | {"dry_run": dry_run}
        emit({"summary": summary}, as_json=True)


def _leaf(path: str) -> str:
    return path.rsplit(LEVEL_SEP, 1)[-1]


def cmd_suggest(args: argparse.Namespace, cfg: Config) -> int:
    if args.accept is not None:
        return _accept(args, cfg)
    tagger = load_tagger(cfg)
    with open_index(cfg, dry_run=True) as index:
        records = under(index.records(), args.paths)
        scored = [r for r in records if all(s in r.vectors for s in tagger.rescore_stores)]
        if len(scored) < len(records):
            print(
                f"{len(records) - len(scored)} photos have no stored scores for "
                f"{tagger.version.backbone}: run `phototag refine` first",
                file=sys.stderr,
            )
        found = suggest.suggest(
            suggest.from_files(scored, cfg.write, cfg.scan.max_file_bytes),
            suggest.learned_scores(index, tagger),
            args.missing_above,
            args.imprecise_below,
        )
    for s in found:
        if args.json:
            print(json.dumps({**dataclasses.asdict(s), "path": show(s.path)}))
        elif s.kind == "missing":
            print(f"{show(s.path)}: likely missing: {s.tag} ({s.score:.2f})")
        else:
            sees = f"; the model sees {s.instead}" if s.instead else ""
            print(f"{show(s.path)}: looks imprecise: {s.tag} ({s.score:.3f}{sees})")
    return 0


def _accept(args: argparse.Namespace, cfg: Config) -> int:
    if not args.paths:
        raise UserError("--accept TAG needs the photos to add it to")
    tag = Tag(args.accept.strip(), 1.0, "user")
    if not all(level.strip() for level in tag.levels):
        raise UserError(f"--accept {args.accept!r}: empty keyword or empty level")
    failed = 0
    with open_index(cfg, dry_run=False) as index:
        for path in args.paths:
            try:
                written = suggest.accept(path, tag, index, cfg.write, cfg.scan.max_file_bytes)
            except (MetadataError, OSError) as exc:
                failed += 1
                error(path, str(exc).splitlines()[0])
                continue
            where = f"  -> {show(written)}" if written != path else ""  # only a sidecar
            print(f"{show(path)}: {tag.name} is now your keyword{where}")
    return 1 if failed else 0


def cmd_undo(args: argparse.Namespace, cfg: Config) -> int:
    counts = {"undone": 0, "failed": 0}
    dry_run = args.dry_run or cfg.write.dry_run
    verb = "would remove" if dry_run else "removed"

    def report(done: undo.Undone) -> None:
        """A line per photo undone or failed: text, or JSON with the failure in `error`."""
        flat = set(done.keywords)  # a flat tag's path is its keyword: name it once
        names = done.keywords + [p for p in done.paths if p not in flat]
        if done.error:
            counts["failed"] += 1
            error(done.path, done.error)
        elif names:
            counts["undone"] += 1
        else:
            return
        if args.json:
            written = show(done.written_to) if done.written_to else None
            emit(
                {"path": show(done.path), "removed": names, "written_to": written}
                | {"dry_run": dry_run, "error": done.error},
                as_json=True,
            )
        elif not done.error:
            print(f"{show(done.path)}: {verb} {', '.join(names)}")

    with open_index(cfg, dry_run) as index:
        if args.paths:
            found = list(discover(args.paths, cfg.scan))
            for bad in (f for f in found if isinstance(f, Outcome)):
                report(undo.Undone(bad.path, error=bad.error or "cannot read"))
            paths = [f for f in found if isinstance(f, Path)]
        else:
            paths = [Path(r.path) for r in index.records()]
        for done in undo.undo(paths, index, cfg, dry_run):
            report(done)
    if args.json:
        emit({"summary": counts | {"dry_run": dry_run}}, as_json=True)
    what = "would undo" if dry_run else "undone"
    print(f"{what} {counts['undone']}, failed {counts['failed']}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "refine",
        cmd_refine,
        "bring auto-tags up to the current model and settings",
        description="Re-tag indexed photos whose tags came from an older model version. When only "
        "thresholds or the label map changed, tags are re-scored from what the model said at tag "
        "time, without reading any image; a new model analyses the photos again (decode + infer). "
        "The cost is shown first. Your keywords are never touched, keywords you deleted are never "
        "added again, and files are written only when their keywords change. Interrupted, it "
        "continues where it stopped.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: every photo")
    p.add_argument("-n", "--dry-run", action="store_true", help="only show what it would cost")
    write_options(p)

    p = command(
        sub,
        "suggest",
        cmd_suggest,
        "advice on your keywords: imprecise ones and likely missing ones",
        description="List your keywords that the model finds unlikely (they may be imprecise) and "
        "confident tags a photo lacks. Nothing is changed; add a suggested tag yourself or with "
        "--accept TAG PHOTO, which writes it as your own keyword.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: every photo")
    p.add_argument("--accept", metavar="TAG", help="write TAG (e.g. cat or animal|mammal|cat)")
    p.add_argument(
        "--missing-above",
        type=float,
        default=suggest.MISSING_ABOVE,
        metavar="SCORE",
        help="a tag this confident looks missing (default: %(default)s)",
    )
    p.add_argument(
        "--imprecise-below",
        type=float,
        default=suggest.IMPRECISE_BELOW,
        metavar="SCORE",
        help="a keyword of yours scoring less looks imprecise (default: %(default)s)",
    )

    write_options(p)

    p = command(
        sub,
        "undo",
        cmd_undo,
        "remove phototag's keywords, leaving yours",
        description="Remove exactly the keywords phototag added, and its own XMP record, from "
        "photos (or their sidecars); your keywords and everything else in the files stay as they "
        "are. The index keeps the photos, without auto tags, so refine and scan leave them alone.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="photos or folders (default: all indexed)",
    )
    p.add_argument("-n", "--dry-run", action="store_true", help="list what would be removed")
    write_options(p)
