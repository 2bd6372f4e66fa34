"""The `phototag` command line: thin wrappers that parse, call one module, and report.

Every command prints results on stdout (pipe-friendly) and one line per problem on
stderr, and goes on with the other photos; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from phototag import (
    __version__,
    catalogue,
    config,
    decode,
    fetch,
    query,
    refine,
    similarity,
    suggest,
    train,
    undo,
)
from phototag.config import Config
from phototag.index import Index, IndexUnavailable, PhotoRecord, under
from phototag.infer import InferenceError
from phototag.metadata import MetadataError
from phototag.pipeline import Pipeline, discover
from phototag.records import LEVEL_SEP, Outcome, PhotoFile, Tag
from phototag.service import ServiceError
from phototag.tagger import Tagger
from phototag.tagindex import Filter, date_bound

log = logging.getLogger("phototag")
SYSTEM_STATE_DIR = Path("/var/lib/phototag")  # the system-wide unit's StateDirectory


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def show(path: Path | str) -> str:
    """A path printable on any terminal, even when its name is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def error(path: Path | str, message: str) -> None:
    tqdm.write(f"phototag: {show(path)}: {message}", file=sys.stderr)


def format_tags(outcome: Outcome) -> str:
    return ", ".join(f"{t.name} {t.score:.2f}" for t in outcome.tags) or "(no confident tags)"


def print_tagged(label: str, outcome: Outcome, as_json: bool) -> None:
    """One line on stdout for a tagged photo: its tags and where they went (or JSON).

    Through tqdm, so a progress bar on stderr is redrawn below it rather than broken.
    """
    if as_json:
        line = json.dumps(outcome_json(outcome) | {"path": label})
    else:
        where = f"  -> {show(outcome.written_to)}" if outcome.written_to else ""
        line = f"{label}: {format_tags(outcome)}{where}"
    tqdm.write(line, file=sys.stdout)


def outcome_json(outcome: Outcome) -> dict[str, object]:
    return {
        "path": show(outcome.path),
        "tags": [{"tag": t.name, "path": t.path, "score": round(t.score, 4)} for t in outcome.tags],
        "written_to": show(outcome.written_to) if outcome.written_to else None,
        "skipped": outcome.skipped,
        "error": outcome.error,
    }


def progress_bar(args: argparse.Namespace, total: int, unit: str, desc: str | None = None) -> tqdm:
    """A progress bar on stderr: live on a terminal, a line every 10 s in a log, none with -q."""
    return tqdm(
        total=total,
        unit=unit,
        unit_scale=unit == "B",
        desc=desc,
        file=sys.stderr,
        disable=args.quiet,
        mininterval=0.5 if sys.stderr.isatty() else 10,
    )


# --- tag and scan -------------------------------------------------------------------


def cmd_tag(args: argparse.Namespace, cfg: Config) -> int:
    tagger = _tagger(cfg)
    urls = [t for t in args.targets if t.startswith(("http://", "https://"))]
    files = [Path(os.path.abspath(t)) for t in args.targets if t not in urls]  # index keys
    labelled = [(url, _tag_url(url, tagger, cfg)) for url in urls]
    if files:
        with _index(cfg, args.dry_run) as index:
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
        decoded = decode.decode(
            PhotoFile(Path(url), len(data), 0),
            data,
            hashlib.sha256(data).hexdigest(),
            tagger.model.input_size,
            cfg.scan.max_pixels,
        )
    except (fetch.FetchError, decode.DecodeError) as exc:
        return Outcome(Path(url), error=str(exc).removeprefix(f"{url}: "))
    batch = tagger.model.run(decoded.pixels[None])
    tags = tagger.tags(batch, decoded.colour[None])[0]
    return Outcome(Path(url), tags=tags, skipped="URL: tags only, nothing written")


def cmd_scan(args: argparse.Namespace, cfg: Config) -> int:
    tagger = _tagger(cfg)
    items = list(discover([Path(os.path.abspath(f)) for f in args.folders], cfg.scan))
    counts = {"tagged": 0, "unchanged": 0, "moved": 0, "failed": 0}
    with (
        _index(cfg, args.dry_run) as index,
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


def _tagger(cfg: Config) -> Tagger:
    from phototag import tagger

    try:
        return tagger.load(cfg)
    except (catalogue.CatalogueError, InferenceError, train.TrainError) as exc:
        raise UserError(str(exc)) from None


def _index(cfg: Config, dry_run: bool) -> Index:
    return Index(cfg.index_dir, readonly=dry_run)


# --- refine, suggest, undo ---------------------------------------------------------


def cmd_refine(args: argparse.Namespace, cfg: Config) -> int:
    tagger = _tagger(cfg)
    dry_run = args.dry_run or cfg.write.dry_run
    with _index(cfg, dry_run) as index:
        todo = refine.plan(under(index.records(), args.paths), tagger)
        print(todo.describe(), file=sys.stderr)
        if dry_run or not todo:
            return 0
        counts = {"changed": 0, "failed": 0}
        with tqdm(
            total=len(todo), unit="photo", file=sys.stderr, disable=args.quiet, mininterval=0.5
        ) as bar:

            def done(refined: refine.Refined) -> None:
                bar.update(1)
                if refined.error:
                    counts["failed"] += 1
                    error(refined.path, refined.error)
                elif refined.added or refined.removed:
                    counts["changed"] += 1
                    change = [f"+{_leaf(p)}" for p in refined.added]
                    change += [f"-{_leaf(p)}" for p in refined.removed]
                    tqdm.write(f"{show(refined.path)}: {' '.join(change)}")

            refine.run(todo, index, tagger, cfg, done)
    print(
        f"refined {len(todo)}: {counts['changed']} changed, {counts['failed']} failed",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


def _leaf(path: str) -> str:
    return path.rsplit(LEVEL_SEP, 1)[-1]


def cmd_suggest(args: argparse.Namespace, cfg: Config) -> int:
    if args.accept is not None:
        return _accept(args, cfg)
    tagger = _tagger(cfg)
    with Index(cfg.index_dir, readonly=True) as index:
        records = under(index.records(), args.paths)
        scored = [r for r in records if all(s in r.vectors for s in tagger.rescore_stores)]
        if len(scored) < len(records):
            print(
                f"{len(records) - len(scored)} photos have no stored scores for "
                f"{tagger.version.backbone}: run `phototag refine` first",
                file=sys.stderr,
            )
        found = suggest.suggest(
            suggest.from_files(scored, cfg.write),
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
    with _index(cfg, dry_run=False) as index:
        for path in args.paths:
            try:
                written = suggest.accept(path, tag, index, cfg.write)
            except (MetadataError, OSError) as exc:
                failed += 1
                error(path, str(exc).splitlines()[0])
                continue
            print(f"{show(path)}: {tag.name} is now your keyword  -> {show(written)}")
    return 1 if failed else 0


def cmd_undo(args: argparse.Namespace, cfg: Config) -> int:
    counts = {"undone": 0, "failed": 0}
    dry_run = args.dry_run or cfg.write.dry_run
    with _index(cfg, dry_run) as index:
        if args.paths:
            found = list(discover(args.paths, cfg.scan))
            for bad in (f for f in found if isinstance(f, Outcome)):
                counts["failed"] += 1
                error(bad.path, bad.error or "cannot read")
            paths = [f for f in found if isinstance(f, Path)]
        else:
            paths = [Path(r.path) for r in index.records()]
        verb = "would remove" if dry_run else "removed"
        for done in undo.undo(paths, index, cfg, dry_run):
            if done.error:
                counts["failed"] += 1
                error(done.path, done.error)
            elif done.keywords or done.paths:
                counts["undone"] += 1
                print(f"{show(done.path)}: {verb} {', '.join(done.keywords + done.paths)}")
    what = "would undo" if dry_run else "undone"
    print(f"{what} {counts['undone']}, failed {counts['failed']}", file=sys.stderr)
    return 1 if counts["failed"] else 0


# --- learning your keywords, evaluation ----------------------------------------------


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    tagger = _tagger(cfg)

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    # Read-only: training only reads the index, so it may run beside the service.
    with Index(cfg.index_dir, readonly=True) as index:
        trained = train.train(index, tagger.stores, cfg.tagprop, progress)
    print(train.format_report(trained.report))
    data = trained.data
    if data.too_rare:
        rare = ", ".join(f"{tag} ({n})" for tag, n in list(data.too_rare.items())[:10])
        more = f" and {len(data.too_rare) - 10} more" if len(data.too_rare) > 10 else ""
        print(
            f"not learned yet, on fewer than {cfg.tagprop.min_examples} photos: {rare}{more}",
            file=sys.stderr,
        )
    print(
        f"learned {len(data.tags)} keywords from {data.keyworded} photos in "
        f"{trained.seconds:.1f} s (leave-one-out at probability >= {cfg.tagprop.threshold:g}: "
        f"precision {trained.report.precision:.2f}, recall {trained.report.recall:.2f}); "
        f"active model {trained.digest}. Run `phototag refine` to re-score photos tagged "
        "before (no decoding); a running service uses it once reloaded.",
        file=sys.stderr,
    )
    return 0


def cmd_eval(args: argparse.Namespace, cfg: Config) -> int:
    from phototag import arff, evaluate

    try:
        results = evaluate.evaluate_dataset(args.dataset)
    except arff.ArffError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    print(evaluate.format_table(results))
    return 0


# --- search, similar photos, duplicates, clusters -----------------------------------


def cmd_search(args: argparse.Namespace, cfg: Config) -> int:
    try:
        node = query.parse(args.query)
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
    with Index(cfg.index_dir, readonly=True) as index:
        if not len(index):
            print(f"phototag: the index {show(cfg.index_dir)} is empty", file=sys.stderr)
        found = index.search(node, flt)
        tags = index.tag_index()
        for term in sorted(t for t in query.terms(node) if not tags.search(query.Term(t)).size):
            print(f"phototag: no photo is tagged {term!r}", file=sys.stderr)
        for path in found:
            record = index.get(path) if args.json else None
            print(json.dumps(_search_json(record)) if record else show(path))
    return 0


def _search_json(record: PhotoRecord) -> dict[str, object]:
    return {
        "path": show(record.path),
        "taken": record.taken,
        "tags": [{"path": t.path, "score": round(t.score, 4)} for t in record.auto],
        "keywords": record.user,
    }


def _date(option: str, text: str | None, end: bool = False) -> np.datetime64 | None:
    try:
        return None if text is None else date_bound(text, end)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def cmd_similar(args: argparse.Namespace, cfg: Config) -> int:
    if args.k < 1:
        raise UserError(f"-k {args.k}: ask for at least one photo")
    tagger = _tagger(cfg)
    photo = Path(os.path.abspath(args.photo))
    try:
        decoded = decode.load(photo, tagger.model.input_size, cfg.scan.max_pixels)
    except decode.DecodeError as exc:
        error(photo, str(exc))
        return 1
    embedding = tagger.model.run(decoded.pixels[None]).embeddings[0]
    with Index(cfg.index_dir, readonly=True) as index:
        others = [r for r in _embedded(index, tagger, []) if r.path != str(photo)]
        matrix = index.vectors(tagger.embedding_store, others, len(embedding), np.float16)
    found = similarity.nearest(matrix, embedding, args.k)
    for row, score in zip(found.indices.tolist(), found.scores.tolist(), strict=True):
        path = show(others[row].path)
        if args.json:
            print(json.dumps({"path": path, "similarity": round(score, 4)}))
        else:
            print(f"{score:.3f}  {path}")
    return 0


def cmd_duplicates(args: argparse.Namespace, cfg: Config) -> int:
    if not 0 < args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: a cosine similarity in (0, 1]")
    tagger = _tagger(cfg)
    with Index(cfg.index_dir, readonly=True) as index:
        records, matrix = _embeddings(index, tagger, args.paths)
    groups = similarity.duplicates(matrix, args.threshold)
    for group in groups:
        members = sorted((records[m] for m in group.members), key=_keep_first)
        if args.json:
            photos = [
                {"path": show(r.path), "width": r.width, "height": r.height, "bytes": r.size}
                for r in members
            ]
            print(json.dumps({"similarity": round(group.weakest, 4), "photos": photos}))
            continue
        print(f"{len(members)} photos, similarity {group.weakest:.3f} or more:")
        for r in members:
            print(f"  {show(r.path)}  ({r.width}x{r.height}, {r.size / 1e6:.1f} MB)")
        print()
    print(
        f"{len(groups)} groups of near-duplicates among {len(records)} photos (nothing deleted)",
        file=sys.stderr,
    )
    return 0


def _keep_first(record: PhotoRecord) -> tuple[int, int, str]:
    """Largest first: the copy most people keep (most pixels, then most bytes)."""
    return (-record.width * record.height, -record.size, record.path)


def cmd_cluster(args: argparse.Namespace, cfg: Config) -> int:
    tagger = _tagger(cfg)
    with Index(cfg.index_dir, readonly=True) as index:
        records, matrix = _embeddings(index, tagger, args.paths)
    if args.k is not None and not 1 <= args.k <= len(records):
        raise UserError(f"-k {args.k}: between 1 and the number of photos ({len(records)})")
    words = [{level for t in r.auto for level in t.levels} | set(r.user) for r in records]
    for cluster in similarity.cluster(matrix, words, args.k):
        paths = sorted(show(records[m].path) for m in cluster.members.tolist())
        if args.json:
            print(json.dumps({"tags": list(cluster.tags), "photos": paths}))
            continue
        print(f"{', '.join(cluster.tags) or '(no characteristic tags)'} ({len(paths)} photos)")
        for path in paths:
            print(f"  {path}")
        print()
    return 0


def _embedded(index: Index, tagger: Tagger, paths: Sequence[Path]) -> list[PhotoRecord]:
    """Indexed photos (below `paths`) with an embedding from the current model."""
    records = under(index.records(), paths)
    found = [r for r in records if tagger.embedding_store in r.vectors]
    if len(found) < len(records):
        print(
            f"{len(records) - len(found)} photos have no embedding from "
            f"{tagger.version.backbone}: run `phototag refine` first",
            file=sys.stderr,
        )
    if not found:
        raise UserError(
            f"no indexed photos to compare (index {show(index.folder)}): run `phototag scan` first"
        )
    return found


def _embeddings(
    index: Index, tagger: Tagger, paths: Sequence[Path]
) -> tuple[list[PhotoRecord], np.ndarray]:
    """The photos to compare and their float16 embeddings, one row each."""
    records = _embedded(index, tagger, paths)
    # The stores are raw rows: their width comes from the model, run once on a blank image.
    size = tagger.model.input_size
    dim = tagger.model.run(np.zeros((1, size, size, 3), np.uint8)).embeddings.shape[1]
    return records, index.vectors(tagger.embedding_store, records, dim, np.float16)


# --- models -----------------------------------------------------------------------


def cmd_models_list(args: argparse.Namespace, cfg: Config) -> int:
    installed = {m.spec.ref for m in catalogue.installed()}
    for spec in catalogue.entries():
        mark = "installed" if spec.ref in installed else "available"
        newest = "  (newest)" if catalogue.find(spec.name).ref == spec.ref else ""
        print(f"{spec.ref:<28} {mark:<10} {spec.size / 1e6:5.1f} MB  {spec.licence}{newest}")
    print(f"models folder: {show(catalogue.models_dir())}", file=sys.stderr)
    return 0


def cmd_models_import(args: argparse.Namespace, cfg: Config) -> int:
    model = catalogue.import_file(args.file, args.name)
    print(f"installed {model.spec.ref} -> {show(model.path)}")
    return 0


def cmd_models_pull(args: argparse.Namespace, cfg: Config) -> int:
    name, version = catalogue.split_ref(args.ref)
    spec = catalogue.find(name, version)
    with progress_bar(args, spec.size, "B", f"pulling {spec.ref}") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total or bar.total
            bar.update(done - bar.n)

        model = catalogue.pull(name, version, progress)
    print(f"installed {model.spec.ref} -> {show(model.path)}")
    return 0


# --- the service ------------------------------------------------------------------


def cmd_watch(args: argparse.Namespace, cfg: Config) -> int:
    from phototag import service

    service.configure_logging(args.verbose)
    return service.run(cfg)


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    from phototag import service

    st = service.status(SYSTEM_STATE_DIR if args.system else None)
    print(service.describe(st))
    return 0 if st and st.running else 3  # 3: "not running", as systemctl status says it


def cmd_service_install(args: argparse.Namespace, cfg: Config) -> int:
    from phototag import service_install

    unit = service_install.install(cfg, user=args.user)
    print(f"wrote {show(unit)}")
    print(service_install.next_steps(args.user, cfg.source))
    return 0


# --- parser -------------------------------------------------------------------------

EPILOG = """\
first steps:
  phototag models pull mobilenet-v2          download the default model (pinned sha256)
  phototag models import FILE.onnx           or install a model file you already have
  phototag tag ~/Pictures/cat.jpg            tag one photo, writing keywords into it
  phototag scan ~/Pictures                   tag every photo below a folder
  phototag refine                            re-tag after a model or threshold change
  phototag train                             learn your own keywords, then refine
  phototag undo ~/Pictures                   remove phototag's keywords, keep yours
  phototag search 'cat AND (beach OR sea)'   find indexed photos by their tags
settings: {config} (see config.yaml in the project for every setting)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phototag",
        description="Tag photos with a CNN and write the keywords where Lightroom, digiKam, "
        "darktable and exiftool read them (XMP dc:subject, lr:hierarchicalSubject, IPTC Keywords).",
        epilog=EPILOG.format(config=config.default_path()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"phototag {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help="settings file (default: $PHOTOTAG_CONFIG, else ~/.config/phototag/config.yaml)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what happens (which model, which device)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, func: Callable[[argparse.Namespace, Config], int], help: str, **kw: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=kw.get("description", help))
        p.set_defaults(func=func)
        return p

    p = command(
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
    _write_options(p)

    p = command(
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
    _write_options(p)

    p = command(
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
    _write_options(p)

    p = command(
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
    p.add_argument("--json", action="store_true", help="one JSON object per suggestion")
    _write_options(p)

    p = command(
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
    _write_options(p)

    command(
        "train",
        cmd_train,
        "learn your own keywords from the photos you keyworded",
        description="Learn the keywords you gave photos yourself (never phototag's), with TagProp "
        "on the photos' stored CNN embeddings, colours and class scores, so tag, scan, watch and "
        "refine propose them for similar photos. A keyword is learned once tagprop.min_examples "
        "photos carry it; keywords of ours you deleted count against. Prints each keyword's "
        "leave-one-out precision, recall and average precision.",
    )
    p = command(
        "eval",
        cmd_eval,
        "compare TagProp with baselines on an image-annotation benchmark",
        description="Run TagProp, 2PKNN and a k-NN vote on a benchmark folder (Mulan ARFF train and "
        "test files plus the label XML, e.g. corel5k) and print P, R, F1, N+ and mAP at 5 tags "
        "per image, hyper-parameters chosen on a validation split of the training set.",
    )
    p.add_argument("dataset", type=Path, metavar="DATASET")
    p = command(
        "search",
        cmd_search,
        "find indexed photos by their tags",
        description="Print the indexed photos whose tags match QUERY, one path per line. Terms are "
        "tag names or paths (`animal` also finds photos tagged animal|bird|parrot; "
        '`animal|bird`), case-insensitive; quote multi-word tags ("hot dog"). Combine them with '
        "AND (or just a space), OR, NOT (or a leading -) and parentheses: "
        "'cat AND (beach OR sea) NOT night' (put -- before a query that starts with -). Your own "
        "keywords match as tags too.",
    )
    p.add_argument("query", metavar="QUERY")
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
    p.add_argument("--json", action="store_true", help="one JSON object per photo, with its tags")

    p = command(
        "similar",
        cmd_similar,
        "indexed photos that look most like a photo",
        description="Print the indexed photos nearest to PHOTO by the model's image embedding, "
        "most similar first, with their cosine similarity. PHOTO need not be indexed.",
    )
    p.add_argument("photo", type=Path, metavar="PHOTO")
    p.add_argument("-k", type=int, default=10, help="how many photos (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per photo")

    p = command(
        "duplicates",
        cmd_duplicates,
        "groups of near-identical indexed photos (re-saves, resizes)",
        description="List groups of indexed photos that show the same picture: copies, re-saved "
        "JPEGs, resized versions. Each group lists the largest photo first. Nothing is deleted.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: every photo")
    p.add_argument(
        "--threshold",
        type=float,
        default=similarity.DUPLICATE_THRESHOLD,
        help="cosine similarity from which photos count as the same (default: %(default)s; "
        "0.9 also groups tight crops)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per group")

    p = command(
        "cluster",
        cmd_cluster,
        "group indexed photos by content, each group named by its tags",
        description="Group the indexed photos by what they show (k-means on the model's "
        "embeddings) and name each group by its most characteristic tags.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="default: every photo")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-k", type=int, help="this many groups")
    g.add_argument(
        "--auto",
        dest="k",
        action="store_const",
        const=None,
        help="choose the number of groups (the default)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per group")

    models = command("models", cmd_models_list, "list, download or import models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    p = msub.add_parser("list", help="the model catalogue and what is installed")
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser(
        "import",
        help="install a model file you have (checked against the catalogue's sha256)",
        description="Install a local model file. Its sha256 must match a catalogue entry; this is "
        "the offline way to get a model (e.g. `phototag models import mobilenet_v2_1.0_224_quant.onnx`).",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--name", help="catalogue name the file must belong to (e.g. mobilenet-v2)")
    p.set_defaults(func=cmd_models_import)
    p = msub.add_parser(
        "pull",
        help="download a model by its pinned URL and sha256",
        description="Download a model from the catalogue's pinned URL, resuming an interrupted "
        "download and verifying its sha256. Set PHOTOTAG_MODEL_MIRROR to use a mirror.",
    )
    p.add_argument(
        "ref",
        metavar="NAME[@VERSION]",
        help="e.g. mobilenet-v2 (the newest) or mobilenet-v2@tf1-quant",
    )
    p.set_defaults(func=cmd_models_pull)

    p = command(
        "watch",
        cmd_watch,
        "run the service: watch folders and tag new photos (what systemd starts)",
        description="Watch the folders in config.yaml (watch.folders) and tag every photo that "
        "arrives, once it is completely written. Catches up on what changed while it was down, "
        "keeps a persistent queue, reloads settings on SIGHUP and stops cleanly on SIGTERM.",
    )
    p = command("status", cmd_status, "is the service running, its queue, and its last errors")
    p.add_argument(
        "--system", action="store_true", help=f"the system-wide service ({SYSTEM_STATE_DIR})"
    )
    service = command("service", cmd_service_install, "install the systemd unit")
    ssub = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    p = ssub.add_parser(
        "install",
        help="write the systemd unit for this installation",
        description="Write phototag.service with this installation's paths and the watched "
        "folders from your config (as ReadWritePaths), then print the systemctl commands to run.",
    )
    p.add_argument(
        "--user",
        action="store_true",
        help="a user unit (~/.config/systemd/user) instead of system-wide",
    )
    p.set_defaults(func=cmd_service_install)
    return parser


def _write_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--sidecar",
        dest="write_mode",
        action="store_const",
        const="sidecar",
        help="write an XMP sidecar, not the photo",
    )
    g.add_argument(
        "--inplace",
        dest="write_mode",
        action="store_const",
        const="inplace",
        help="write into the photo (fail if it cannot be)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="phototag: %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = config.load(args.config)
        if getattr(args, "write_mode", None):
            cfg.write.mode = args.write_mode
        return args.func(args, cfg)
    except (
        UserError,
        config.ConfigError,
        catalogue.CatalogueError,
        IndexUnavailable,
        ServiceError,
        train.TrainError,
    ) as exc:
        print(f"phototag: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phototag: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `phototag search cat | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # as a tool killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
