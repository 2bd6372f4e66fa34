"""What every command shares: output lines, errors, progress bars, opening the index."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from phototag import catalogue
from phototag.config import Config
from phototag.learn import train
from phototag.library import index as library_index
from phototag.library.index import Index
from phototag.pipeline.infer import InferenceError
from phototag.records import Outcome

if TYPE_CHECKING:
    from phototag.pipeline.tagger import Tagger

Subparsers = argparse._SubParsersAction
Command = Callable[[argparse.Namespace, Config], int]

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
        line = f"{label}: {format_tags(outcome)}{where}{format_boxes(outcome)}"
    tqdm.write(line, file=sys.stdout)


def format_boxes(outcome: Outcome) -> str:
    """The detector's boxes in brief on their own line: `seen: 2 person, dog`."""
    if not outcome.detections:
        return ""
    counts = Counter(d.path.rsplit("|", 1)[-1] for d in outcome.detections)
    return "\n  seen: " + ", ".join(f"{n} {name}" if n > 1 else name for name, n in counts.items())


def outcome_json(outcome: Outcome) -> dict[str, object]:
    return {
        "path": show(outcome.path),
        "tags": [{"tag": t.name, "path": t.path, "score": round(t.score, 4)} for t in outcome.tags],
        "detections": [
            {"tag": d.path, "score": d.score, "box": list(d.box), "model": d.model}
            for d in outcome.detections
        ],
        "written_to": show(outcome.written_to) if outcome.written_to else None,
        "skipped": outcome.skipped,
        "error": outcome.error,
    }


def progress_bar(
    args: argparse.Namespace, total: int | None, unit: str, desc: str | None = None
) -> tqdm:
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


def load_tagger(cfg: Config) -> Tagger:
    from phototag.pipeline import tagger

    try:
        return tagger.load(cfg)
    except (catalogue.CatalogueError, InferenceError, train.TrainError) as exc:
        raise UserError(str(exc)) from None


def open_index(cfg: Config, dry_run: bool) -> Index:
    return library_index.open_index(cfg.index_dir, cfg.index.backend, readonly=dry_run)


def command(
    sub: Subparsers, name: str, func: Command, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command whose --help shows `description` (or the one-line help)."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.set_defaults(func=func)
    return p


def write_options(p: argparse.ArgumentParser) -> None:
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
