"""`phototag backfill`: the scan pipeline on Ray Data, for archives beyond one machine.

The stages are scan's, on a distributed engine instead of threads:

    driver: list files, skip what scan would skip (unchanged, undone), send the index
      record of a changed photo along
      -> decode (CPU tasks) -> infer + tag (actors that keep the classifier, detector and
      specialists loaded; GPU actors when the cluster has GPUs) -> write keywords beside
      each photo and its RAW companion (CPU tasks)
      -> driver: commit the compact records to the library index in batches

Every stage calls the local pipeline's functions (`decode.load`, `Tagger.analyse`,
`runner.write_analysed`), so a backfilled photo is tagged, written and recorded exactly as
`phototag scan` would do it, faces aside (see `without_faces`). Ray Data streams blocks with
bounded queues between operators, so neither the driver nor a worker holds more than a few
batches whatever the archive's size. A stopped run, or one that lost a worker (Ray retries
its tasks and restarts its actors), is resumed by running it again: committed photos are
skipped as unchanged, and a photo written but not yet committed is written again with the
same keywords, which changes nothing in the file (the keyword write is idempotent).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phototag import paths
from phototag.config import Config, ScanConfig
from phototag.files import fileio, metadata
from phototag.library.index import Index, PhotoRecord
from phototag.pipeline import decode, tagger
from phototag.pipeline.runner import (
    discover,
    failure_line,
    photo_vectors,
    skip_reason,
    write_analysed,
)
from phototag.records import Decoded, Outcome, PhotoFile

COMMIT_EVERY = 32  # photos per index commit on the driver
CHUNK = 20_000  # paths per Ray dataset: bounds the driver's memory on any archive
DECODE_BATCH = 8  # photos per decode task: fewer, larger tasks cost less scheduling
# Logical CPUs each stage's task or actor reserves: half a core, so that decode tasks, the
# model actor and write tasks all run at once on a small node (on 2 cores a full core each
# left decoding waiting: 11.8 photos/s against the figures in docs/benchmarks.md).
STAGE_CPUS = 0.5
REPORT_NAME = "backfill.json"  # the last run's summary and failures, for `phototag status`


log = logging.getLogger(__name__)


class BackfillError(Exception):
    """Ray is missing or the cluster cannot be reached; one line for the user."""


@dataclass
class Report:
    """What a run did; failures are listed once, at the end."""

    tagged: int = 0
    unchanged: int = 0
    undone: int = 0  # taken back by `undo`: left so, as scan does
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    seconds: float = 0.0
    address: str = ""

    @property
    def photos_per_s(self) -> float:
        return self.tagged / self.seconds if self.seconds else 0.0


def ray_module() -> Any:
    """Ray, imported on demand: it is an optional extra (`pip install 'phototag[cluster]'`)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise BackfillError("backfill needs Ray Data: pip install 'phototag[cluster]'") from None
    return ray


def connect(address: str, num_cpus: int | None = None) -> str:
    """Join the cluster at `address`, or start a local Ray with `auto`; the address used."""
    ray = ray_module()
    logging.getLogger("ray").setLevel(logging.WARNING)  # its INFO lines would drown ours
    local = address == "auto"
    try:
        info = ray.init(
            address=None if local else address,
            num_cpus=num_cpus if local else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackfillError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    return str(info.address_info.get("address", address)) if local else address


# --- the stages, run by Ray workers ---------------------------------------------------


def decode_batch(
    batch: dict[str, np.ndarray], size: int, letterbox: int, scan: ScanConfig
) -> dict[str, Any]:
    """Decode photos (a CPU task) as scan does, with the detector's letterbox from the same
    decode; a failure travels on as the row's `error`."""
    decoded = np.full(len(batch["path"]), None, dtype=object)
    errors = np.full(len(batch["path"]), "", dtype=object)
    for i, path in enumerate(batch["path"]):
        try:
            decoded[i] = decode.load(
                Path(path), size, scan.max_pixels, letterbox, scan.jpeg_preview, scan.max_file_bytes
            )
        except decode.DecodeError as exc:
            errors[i] = f"{path}\0{exc}"
    return {"decoded": decoded, "error": errors, "indexed": batch["indexed"]}


def without_faces(cfg: Config) -> Config:
    """Backfill's settings: scan's, less the face stage. Naming faces needs the library's
    named faces, which the workers do not have; `phototag scan --force` finds them later.
    Faces are no part of the model version, which names every model that tagged the photo."""
    if cfg.faces.enabled:
        log.warning(
            "backfill does not find faces (faces.enabled): "
            "`phototag scan --force` on the same folders will, on this machine"
        )
    return dataclasses.replace(cfg, faces=dataclasses.replace(cfg.faces, enabled=False))


class Infer:
    """An actor that keeps the tagger (classifier, detector, specialists, label map, learned
    model) loaded and runs every stage of it on a batch, as scan's `Tagger.analyse` does."""

    def __init__(self, cfg: Config) -> None:
        self.tagger = tagger.load(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = [i for i, d in enumerate(batch["decoded"]) if d is not None]
        n = len(batch["decoded"])
        outcomes = np.full(n, None, dtype=object)
        vectors = np.full(n, None, dtype=object)
        if ok:
            decoded: list[Decoded] = [batch["decoded"][i] for i in ok]
            # A changed photo's record: TagProp neither proposes the user's own or deleted
            # keywords nor counts the photo as its own neighbour, as in scan.
            records = [
                PhotoRecord.from_doc(json.loads(doc)) if doc else None
                for doc in batch["indexed"][ok]
            ]
            found = self.tagger.analyse(decoded, records)
            for j, i in enumerate(ok):
                outcomes[i] = Outcome(decoded[j].file.path, found.tags[j], found.detections[j])
                named = photo_vectors(self.tagger, found.batch, j, decoded[j].colour)
                vectors[i] = {k: v.astype(np.float16) for k, v in named.items()}  # as stored
                # The model inputs are not needed after inference: the write tasks get less.
                batch["decoded"][i] = dataclasses.replace(
                    decoded[j], pixels=_NO_PIXELS, letterbox=None
                )
        # The version of the models this actor ran, so that each record tells the truth.
        version = np.full(n, str(self.tagger.version), dtype=object)
        return {**batch, "outcome": outcomes, "vectors": vectors, "version": version}


_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)


def write_batch(batch: dict[str, np.ndarray], cfg: Config) -> dict[str, np.ndarray]:
    """Write each photo's keywords beside it, and into its RAW companion, as scan does (a CPU
    task); return compact records."""
    n = len(batch["decoded"])
    records = np.full(n, "", dtype=object)
    errors = np.array(batch["error"], dtype=object)
    with fileio.folder_syncs_batched():
        for i, decoded in enumerate(batch["decoded"]):
            if decoded is None:
                continue
            version = str(batch["version"][i])
            try:
                record = write_analysed(decoded, batch["outcome"][i], version, cfg, faces=False)
            except (metadata.MetadataError, OSError) as exc:
                errors[i] = f"{decoded.file.path}\0{failure_line(exc, decoded.file.path)}"
                continue
            records[i] = json.dumps(record.to_doc())
    return {"record": records, "vectors": batch["vectors"], "error": errors}


# --- the driver -------------------------------------------------------------------------


def todo(
    roots: Iterable[Path], cfg: Config, index: Index, report: Report
) -> Iterator[dict[str, str]]:
    """The photos below `roots` that scan would tag, as they are found: each path with its
    index record as JSON ("" for a photo new to the index)."""
    for item in discover(roots, cfg.scan):
        if isinstance(item, Outcome):
            report.failures.append((str(item.path), item.error or "cannot read"))
            continue
        try:
            reason = skip_reason(index, PhotoFile.stat(item), cfg)
        except OSError:
            reason = None  # decode reports it with the right words
        if reason == "unchanged":
            report.unchanged += 1
        elif reason == "undone":
            report.undone += 1
        else:
            record = index.get(item)
            yield {"path": str(item), "indexed": json.dumps(record.to_doc()) if record else ""}


def backfill(
    roots: Sequence[Path],
    cfg: Config,
    index: Index,
    address: str = "auto",
    num_cpus: int | None = None,
    on_commit: Callable[[int], None] | None = None,
) -> Report:
    """Tag every new or changed photo below `roots` on Ray, committing to `index` in batches.

    The photos go to Ray in chunks of CHUNK paths as the folders are walked, so the driver
    never holds the whole archive's list. `on_commit(done)` follows each index commit.
    """
    started = time.monotonic()
    ray_module()  # the extra is installed: say so before anything else
    cfg = without_faces(cfg)
    local = tagger.load(cfg)  # fails early, here, when no model is installed
    report = Report(address=connect(address, num_cpus))
    wanted = todo(roots, cfg, index, report)
    while chunk := list(itertools.islice(wanted, CHUNK)):
        for batch in _dataset(chunk, cfg, local).iter_batches(
            batch_size=COMMIT_EVERY, batch_format="numpy"
        ):
            _commit(batch, index, report)
            if on_commit:
                on_commit(report.tagged + len(report.failures))
    index.flush()
    report.seconds = time.monotonic() - started
    save_report(report)
    return report


def _dataset(rows: list[dict[str, str]], cfg: Config, local: tagger.Tagger) -> Any:
    """decode tasks -> model actors -> write tasks, over these photos (`todo`'s rows)."""
    ray = ray_module()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    actors = max(1, gpus or int(resources.get("CPU", 1)) // 2)
    return (
        ray.data.from_items(rows)
        .map_batches(
            decode_batch,
            fn_args=(local.model.input_size, local.letterbox, cfg.scan),
            batch_size=DECODE_BATCH,
            num_cpus=STAGE_CPUS,
            batch_format="numpy",
        )
        .map_batches(
            Infer,
            fn_constructor_args=(cfg,),
            batch_size=cfg.model.batch_size,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=STAGE_CPUS,
            runtime_env={"env_vars": _folders_env()},
            batch_format="numpy",
        )
        .map_batches(
            write_batch,
            fn_args=(cfg,),
            batch_size=COMMIT_EVERY,
            num_cpus=STAGE_CPUS,
            batch_format="numpy",
        )
    )


def _folders_env() -> dict[str, str]:
    """This process's XDG folders, for the model actors: on one machine (or nodes sharing a
    home) they find the installed models and the learned TagProp model where the driver does."""
    return {k: v for k, v in os.environ.items() if k.startswith("XDG_")}


def _commit(batch: dict[str, np.ndarray], index: Index, report: Report) -> None:
    records, vectors = [], []
    for doc, named, error in zip(batch["record"], batch["vectors"], batch["error"], strict=True):
        if error:
            path, _, reason = str(error).partition("\0")
            report.failures.append((path, reason))
        elif doc:
            records.append(PhotoRecord.from_doc(json.loads(doc)))
            vectors.append({k: np.asarray(v, np.float32) for k, v in named.items()})
    if records:
        index.put_many(records, vectors)
        report.tagged += len(records)


def save_report(report: Report) -> None:
    """Keep the last run's summary and failures where `phototag status` finds them."""
    folder = paths.state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(report) | {"finished": time.time()}
    fileio.atomic_write(folder / REPORT_NAME, json.dumps(data, indent=1).encode())


def describe(report: Report) -> str:
    """The last run for `phototag status`: counts, then each failure on its own line."""
    lines = [
        f"last backfill: {report.tagged} tagged, {report.unchanged} unchanged, "
        + (f"{report.undone} left undone, " if report.undone else "")
        + f"{len(report.failures)} failed in {report.seconds:.0f} s (Ray at {report.address})"
    ]
    lines += [f"  failed: {path}: {reason}" for path, reason in report.failures[:20]]
    if len(report.failures) > 20:
        lines.append(f"  ... and {len(report.failures) - 20} more")
    return "\n".join(lines)


def last_report() -> Report | None:
    try:
        data = json.loads((paths.state_dir() / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return None
    data.pop("finished", None)
    return Report(**{**data, "failures": [tuple(f) for f in data.get("failures", [])]})
