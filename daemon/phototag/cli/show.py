"""`show`: everything known about one photo, its keywords by whose they are, and its record."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from phototag.cli.common import Subparsers, command, emit, error, open_index, show
from phototag.config import Config
from phototag.files import metadata
from phototag.library.index import Index
from phototag.records import local_time


def describe(path: Path, index: Index, cfg: Config) -> dict[str, object]:
    """The photo's keywords as the file says (whose, where) and its index record, as JSON."""
    keywords = metadata.read(path, cfg.write, cfg.scan.max_file_bytes)
    target = metadata.target(path, cfg.write)
    record = index.get(path)
    ours = {t.path: t for t in keywords.ours}
    return {
        "path": show(path),
        "keywords_in": show(target),
        "sidecar": target != path,
        "yours": keywords.user_keywords,
        "phototag": [
            {"tag": t.name, "path": t.path, "score": round(t.score, 4)} for t in ours.values()
        ],
        "deleted_by_you": keywords.removed_by_user,
        "model_version": keywords.model_version,
        "indexed": record is not None,
        "record": None
        if record is None
        else {
            "size": record.size,
            "sha256": record.sha256,
            "width": record.width,
            "height": record.height,
            "taken": record.taken,
            "tagged_at": local_time(record.tagged_at) if record.tagged_at else None,
            "model_version": record.model_version,
            "negatives": record.negatives,
            "vectors": sorted(record.vectors),
        },
        "detections": [] if record is None else [dataclasses.asdict(d) for d in record.detections],
    }


def lines(doc: dict[str, object]) -> list[str]:
    """`describe`'s document for people: one fact a line, keywords grouped by whose."""
    tags = doc["phototag"]
    assert isinstance(tags, list)
    out = [
        f"{doc['path']}",
        f"  keywords in: {doc['keywords_in']}" + ("  (sidecar)" if doc["sidecar"] else ""),
        f"  yours: {', '.join(doc['yours']) or '-'}",  # type: ignore[arg-type]
        "  phototag's: "
        + (", ".join(f"{t['path']} {t['score']:.2f}" for t in tags) or "-")
        + (f"  (model {doc['model_version']})" if doc["model_version"] else ""),
        f"  deleted by you: {', '.join(doc['deleted_by_you']) or '-'}",  # type: ignore[arg-type]
    ]
    record = doc["record"]
    if not isinstance(record, dict):
        return [*out, "  index: not indexed (`phototag tag` or `scan` adds it)"]
    out.append(
        f"  index: {record['width']}x{record['height']}, {record['size']} bytes, "
        f"sha256 {record['sha256'][:12]}, taken {record['taken'] or '-'}, "
        f"tagged {record['tagged_at'] or 'never (undone)'}"
    )
    for d in doc["detections"]:  # type: ignore[attr-defined]
        box = ", ".join(f"{v:.2f}" for v in d["box"])
        out.append(f"  detected: {d['path']} {d['score']:.2f} at ({box})")
    return out


def cmd_show(args: argparse.Namespace, cfg: Config) -> int:
    failed = 0
    with open_index(cfg, dry_run=True) as index:
        for given in args.photos:
            path = Path(os.path.abspath(given))
            try:
                doc = describe(path, index, cfg)
            except (metadata.MetadataError, OSError) as exc:
                failed += 1
                message = str(exc).splitlines()[0].removeprefix(f"{path}: ") or type(exc).__name__
                error(path, message)
                if args.json:
                    emit({"path": show(path), "error": message}, as_json=True)
                continue
            if args.json:
                emit(doc, as_json=True)
            else:
                for line in lines(doc):
                    emit(line)
    return 1 if failed else 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "show",
        cmd_show,
        "every keyword of a photo, whose it is, and its index record",
        description="Show a photo's keywords: yours, phototag's (with score and model version), "
        "those of ours you deleted, whether they live in the photo or a sidecar, the index record "
        "and what the detector found.",
    )
    p.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
