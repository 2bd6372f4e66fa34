"""What every command shares: output lines, errors, progress bars, opening the index."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from phototag.config import Config

# Only names here: a command imports what it runs (tqdm, numpy, the models) when it runs, so
# `phototag search` does not start by loading onnxruntime (tests/test_cli_imports.py).
if TYPE_CHECKING:
    from tqdm import tqdm

    from phototag.library.index import Index
    from phototag.pipeline.tagger import Tagger
    from phototag.records import Outcome

Subparsers = argparse._SubParsersAction
Command = Callable[[argparse.Namespace, Config], int]

log = logging.getLogger("phototag")
SYSTEM_STATE_DIR = Path("/var/lib/phototag")  # the system-wide unit's StateDirectory


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def show(path: Path | str) -> str:
    """A path printable on one line of any terminal: invalid UTF-8 and control characters
    (a newline in a name would split one photo over two lines) are backslash-escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():  # no control character: the common case, checked in C
        return text
    return "".join(
        c.encode("unicode_escape").decode() if unicodedata.category(c) == "Cc" else c for c in text
    )


def error(path: Path | str, message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"phototag: {show(path)}: {message}", file=sys.stderr)


def format_tags(outcome: Outcome) -> str:
    return ", ".join(f"{t.name} {t.score:.2f}" for t in outcome.tags) or "(no confident tags)"


def print_tagged(label: str, outcome: Outcome, as_json: bool) -> None:
    """One line on stdout for a tagged photo: the tags now in its file (or JSON).

    `-> PATH` only when the keywords went elsewhere than the photo (a sidecar). Through
    tqdm, so a progress bar on stderr is redrawn below it rather than broken.
    """
    if as_json:
        emit(outcome_json(outcome) | {"path": label}, as_json=True)
        return
    elsewhere = outcome.written_to is not None and outcome.written_to != outcome.path
    where = f"  -> {show(outcome.written_to)}" if elsewhere else ""  # type: ignore[arg-type]
    emit(f"{label}: {format_tags(outcome)}{where}{format_boxes(outcome)}{format_faces(outcome)}")


@dataclass
class Summary:
    """What a run of `tag` or `scan` did, counted as photos finish; printed at the end."""

    dry_run: bool = False
    started: float = field(default_factory=time.monotonic)
    tagged: int = 0
    unchanged: int = 0
    moved: int = 0
    undone: int = 0
    failed: int = 0
    in_file: int = 0  # photos whose keywords were written into the photo itself
    sidecar: int = 0  # photos whose keywords went to an XMP sidecar
    as_they_were: int = 0  # tagged, but the file already said exactly that: nothing written

    def add(self, outcome: Outcome) -> None:
        if outcome.error:
            self.failed += 1
        elif outcome.skipped == "unchanged":
            self.unchanged += 1
        elif outcome.skipped == "undone":
            self.undone += 1
        elif outcome.skipped and outcome.skipped.startswith("moved"):
            self.moved += 1
        else:
            self.tagged += 1
            if outcome.written_to is None:
                self.as_they_were += not self.dry_run
            else:
                if outcome.written_to == outcome.path:
                    self.in_file += 1
                else:
                    self.sidecar += 1

    @staticmethod
    def shown(outcome: Outcome) -> bool:
        """Photos that get a line of their own: tagged ones and failures."""
        return outcome.error is not None or not outcome.skipped or outcome.skipped == "dry run"

    def as_json(self) -> dict[str, object]:
        elapsed = time.monotonic() - self.started
        counts = {k: v for k, v in asdict(self).items() if k not in ("dry_run", "started")}
        done = self.tagged + self.failed
        return counts | {
            "elapsed_s": round(elapsed, 2),
            "photos_per_s": round(done / elapsed, 2) if elapsed > 0 else 0.0,
        }

    def line(self) -> str:
        j = self.as_json()
        verb = "would tag" if self.dry_run else "tagged"
        text = (
            f"{verb} {self.tagged} ({self.in_file} written into the photo, {self.sidecar} into a "
            f"sidecar, {self.as_they_were} already as they were), "
            f"unchanged {self.unchanged}, moved {self.moved}, failed {self.failed} "
            f"in {j['elapsed_s']:.1f} s ({j['photos_per_s']:.1f} photos/s)"
        )
        if self.undone:
            text += f"; {self.undone} undone photos left untagged (`scan --force` re-tags them)"
        return text


def format_boxes(outcome: Outcome) -> str:
    """The detector's boxes in brief on their own line: `seen: 2 person, dog`."""
    if not outcome.detections:
        return ""
    counts = Counter(d.path.rsplit("|", 1)[-1] for d in outcome.detections)
    return "\n  seen: " + ", ".join(f"{n} {name}" if n > 1 else name for name, n in counts.items())


def format_faces(outcome: Outcome) -> str:
    """The faces on their own line: `faces: 1 Ann, 2 ?` (numbers as `--face N` takes them)."""
    if not outcome.faces:
        return ""
    return "\n  faces: " + ", ".join(f"{f.number} {f.name or '?'}" for f in outcome.faces)


def outcome_json(outcome: Outcome) -> dict[str, object]:
    return {
        "path": show(outcome.path),
        "tags": [{"tag": t.name, "path": t.path, "score": round(t.score, 4)} for t in outcome.tags],
        "detections": [
            {"tag": d.path, "score": d.score, "box": list(d.box), "model": d.model}
            for d in outcome.detections
        ],
        "faces": [
            {
                "face": f.number,
                "score": f.score,
                "box": list(f.box),
                "name": f.name or None,
                "source": f.source or None,
            }
            for f in outcome.faces
        ],
        "written_to": show(outcome.written_to) if outcome.written_to else None,
        "skipped": outcome.skipped,
        "error": outcome.error,
    }


LOG_EVERY_S = 10.0  # a progress line this often when stderr is a log, not a terminal


class LogProgress:
    """Progress for a log: no bar frames, one plain line at most every 10 s.

    A live tqdm bar redraws itself around every `tqdm.write`, which in a journal means a
    frame before every photo line. This has the part of tqdm's interface commands use.
    """

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_S:
            self._last = now
            of = f"/{self.total}" if self.total else ""
            print(f"phototag: {self.desc} {self.n}{of}", file=sys.stderr)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(
    args: argparse.Namespace, total: int | None, unit: str, desc: str | None = None
) -> tqdm | LogProgress:
    """A progress bar on stderr: live on a terminal, a line every 10 s in a log, none with -q."""
    from tqdm import tqdm

    if args.quiet:
        return tqdm(total=total, disable=True)
    if not sys.stderr.isatty():
        return LogProgress(total=total, desc=desc or f"{unit}s")
    return tqdm(
        total=total, unit=unit, unit_scale=unit == "B", desc=desc, file=sys.stderr, mininterval=0.5
    )


def emit(doc: dict[str, object] | str, as_json: bool = False) -> None:
    """One line on stdout (or one JSON line), through tqdm so a live bar is redrawn below it."""
    from tqdm import tqdm

    tqdm.write(json.dumps(doc) if as_json else str(doc), file=sys.stdout)


def load_tagger(cfg: Config) -> Tagger:
    from phototag import catalogue
    from phototag.learn import train
    from phototag.pipeline import tagger
    from phototag.pipeline.infer import InferenceError

    try:
        return tagger.load(cfg)
    except (catalogue.CatalogueError, InferenceError, train.TrainError) as exc:
        raise UserError(str(exc)) from None


def open_index(cfg: Config, dry_run: bool) -> Index:
    from phototag.library import index as library_index

    return library_index.open_index(cfg.index_dir, cfg.index.backend, readonly=dry_run)


def global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """-c/-q/-v/--json, accepted before and after the command (`phototag scan -q DIR`).

    Sub-commands get them with `default=SUPPRESS`, so an option given before the command is
    not reset by the sub-command's default.
    """

    def flag(*names: str, help: str) -> None:
        kw = {} if default is None else {"default": default}
        parser.add_argument(*names, action="store_true", help=help, **kw)  # type: ignore[arg-type]

    kw = {} if default is None else {"default": default}
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help="settings file (default: $PHOTOTAG_CONFIG, else ~/.config/phototag/config.yaml)",
        **kw,  # type: ignore[arg-type]
    )
    flag("-q", "--quiet", help="no progress bars")
    flag("-v", "--verbose", help="log what happens (which model, which device)")
    flag("--json", help="JSON for scripts (see the README: one document or JSON lines)")


SUBCOMMAND_OPTIONS = argparse.ArgumentParser(add_help=False)
global_options(SUBCOMMAND_OPTIONS, default=argparse.SUPPRESS)


def command(
    sub: Subparsers, name: str, func: Command, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command whose --help shows `description` (or the one-line help)."""
    p = sub.add_parser(
        name, help=help, description=description or help, parents=[SUBCOMMAND_OPTIONS]
    )
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
