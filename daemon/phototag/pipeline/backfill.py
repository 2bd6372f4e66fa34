"""`phototag backfill`: the scan pipeline on Ray Data, for archives beyond one machine.

The stages are scan's, on a distributed engine instead of threads:

    driver: list files, skip what the index has unchanged
      -> decode (CPU tasks) -> infer + tag (actors that keep the models loaded; GPU actors
      when the cluster has GPUs) -> write keywords beside each photo (CPU tasks)
      -> driver: commit the compact records to the library index in batches

Every stage reuses the local pipeline's functions, so a backfilled photo is tagged, written
and recorded exactly as `phototag scan` would do it. Ray Data streams blocks with bounded
queues between operators, so neither the driver nor a worker holds more than a few batches
whatever the archive's size. A stopped run, or one that lost a worker (Ray retries its
tasks and restarts its actors), is resumed by running it again: committed photos are
skipped as unchanged, and a photo written but not yet committed is written again with the
same keywords, which changes nothing in the file (the keyword write is idempotent).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phototag import paths
from phototag.config import Config
from phototag.files import fileio, metadata
from phototag.learn.train import COLOUR_STORE
from phototag.library.index import Index, PhotoRecord
from phototag.pipeline import decode, tagger
from phototag.pipeline.infer import Batch
from phototag.pipeline.runner import base_record, discover, write_tags
from phototag.records import Decoded, Outcome, PhotoFile, Tag

COMMIT_EVERY = 32  # photos per index commit on the driver
REPORT_NAME = "backfill.json"  # the last run's summary and failures, for `phototag status`


class BackfillError(Exception):
    """Ray is missing or the cluster cannot be reached; one line for the user."""


@dataclass
class Report:
    """What a run did; failures are listed once, at the end."""

    tagged: int = 0
    unchanged: int = 0
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


def decode_row(row: dict[str, Any], size: int, max_pixels: int) -> dict[str, Any]:
    """Decode one photo (a CPU task); a failure travels on as the row's `error`."""
    try:
        return {"decoded": decode.load(Path(row["path"]), size, max_pixels), "error": ""}
    except decode.DecodeError as exc:
        return {"decoded": None, "error": f"{row['path']}\0{exc}"}


class Infer:
    """An actor that keeps the tagger (ONNX session, label map, learned model) loaded."""

    def __init__(self, cfg: Config) -> None:
        self.tagger = tagger.load(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = [i for i, d in enumerate(batch["decoded"]) if d is not None]
        n = len(batch["decoded"])
        out_tags = np.full(n, "", dtype=object)
        vectors = np.full(n, None, dtype=object)
        if ok:
            decoded: list[Decoded] = [batch["decoded"][i] for i in ok]
            outputs = self.tagger.model.run(np.stack([d.pixels for d in decoded]))
            colours = np.stack([d.colour for d in decoded])
            tags = self.tagger.tags(outputs, colours, [None] * len(decoded))
            for j, i in enumerate(ok):
                out_tags[i] = json.dumps([[t.path, t.score] for t in tags[j]])
                vectors[i] = _vectors(self.tagger, outputs, j, decoded[j].colour)
                batch["decoded"][i] = dataclasses.replace(decoded[j], pixels=_NO_PIXELS)
        return {**batch, "tags": out_tags, "vectors": vectors}


_NO_PIXELS = np.zeros((0, 0, 3), np.uint8)  # the pixels are not needed after inference


def _vectors(t: tagger.Tagger, outputs: Batch, i: int, colour: np.ndarray) -> dict[str, Any]:
    """Photo i's vectors as the local pipeline stores them (float16 rows by store name)."""
    return {
        t.embedding_store: outputs.embeddings[i].astype(np.float16),
        t.probability_store: outputs.probabilities[i].astype(np.float16),
        COLOUR_STORE: colour.astype(np.float16),
    }


def write_batch(batch: dict[str, np.ndarray], cfg: Config, version: str) -> dict[str, np.ndarray]:
    """Write each photo's keywords beside it (a CPU task); return compact records."""
    n = len(batch["decoded"])
    records = np.full(n, "", dtype=object)
    errors = np.array(batch["error"], dtype=object)
    with fileio.folder_syncs_batched():
        for i, decoded in enumerate(batch["decoded"]):
            if decoded is None:
                continue
            tags = [Tag(p, s, "auto") for p, s in json.loads(batch["tags"][i])]
            try:
                record = write_tags(base_record(decoded), tags, version, cfg)
            except (metadata.MetadataError, OSError) as exc:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                errors[i] = f"{decoded.file.path}\0{message.removeprefix(f'{decoded.file.path}: ')}"
                continue
            records[i] = json.dumps(record.to_doc())
    return {"record": records, "vectors": batch["vectors"], "error": errors}


# --- the driver -------------------------------------------------------------------------


def todo(roots: Iterable[Path], cfg: Config, index: Index, report: Report) -> list[str]:
    """The photos below `roots` that the index does not have unchanged."""
    paths_: list[str] = []
    for item in discover(roots, cfg.scan):
        if isinstance(item, Outcome):
            report.failures.append((str(item.path), item.error or "cannot read"))
            continue
        try:
            unchanged = index.unchanged(PhotoFile.stat(item))
        except OSError:
            unchanged = False  # decode reports it with the right words
        if unchanged:
            report.unchanged += 1
        else:
            paths_.append(str(item))
    return paths_


def backfill(
    roots: Sequence[Path],
    cfg: Config,
    index: Index,
    address: str = "auto",
    num_cpus: int | None = None,
    on_commit: Callable[[int, int], None] | None = None,
) -> Report:
    """Tag every new or changed photo below `roots` on Ray, committing to `index` in batches.

    `on_commit(done, total)` is called after each index commit (progress).
    """
    ray = ray_module()
    started = time.monotonic()
    local = tagger.load(cfg)  # fails early, here, when no model is installed
    version = str(local.version)
    report = Report(address=connect(address, num_cpus))
    wanted = todo(roots, cfg, index, report)
    if wanted:
        gpus = ray.cluster_resources().get("GPU", 0)
        actors = max(1, int(gpus) if gpus else int(ray.cluster_resources().get("CPU", 1)) // 2)
        ds = (
            ray.data.from_items([{"path": p} for p in wanted])
            .map(decode_row, fn_args=(local.model.input_size, cfg.scan.max_pixels))
            .map_batches(
                Infer,
                fn_constructor_args=(cfg,),
                batch_size=cfg.model.batch_size,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                num_gpus=1 if gpus else 0,
                runtime_env={"env_vars": _folders_env()},
                batch_format="numpy",
            )
            .map_batches(
                write_batch, fn_args=(cfg, version), batch_size=COMMIT_EVERY, batch_format="numpy"
            )
        )
        for batch in ds.iter_batches(batch_size=COMMIT_EVERY, batch_format="numpy"):
            _commit(batch, index, report)
            if on_commit:
                on_commit(report.tagged + len(report.failures), len(wanted))
    index.flush()
    report.seconds = time.monotonic() - started
    save_report(report)
    return report


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
        f"{len(report.failures)} failed in {report.seconds:.0f} s (Ray at {report.address})"
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
