"""`similar`, `duplicates`, `cluster`: questions the embeddings answer (`search`: find.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phototag.cli.common import (
    Subparsers,
    UserError,
    command,
    error,
    load_tagger,
    open_index,
    show,
)
from phototag.config import Config
from phototag.library import ann, similarity
from phototag.library.index import Index, PhotoRecord, under

if TYPE_CHECKING:  # the model's modules load in the commands that run it, not in `search`
    from phototag.pipeline.tagger import Tagger


def cmd_similar(args: argparse.Namespace, cfg: Config) -> int:
    from phototag.cli import faces  # the face models: only for --face
    from phototag.pipeline import decode

    if args.k < 1:
        raise UserError(f"-k {args.k}: ask for at least one photo")
    if args.face is not None:
        return faces.similar(args, cfg)
    tagger = load_tagger(cfg)
    photo = Path(os.path.abspath(args.photo))
    try:
        decoded = decode.load(
            photo, tagger.model.input_size, cfg.scan.max_pixels, max_bytes=cfg.scan.max_file_bytes
        )
    except decode.DecodeError as exc:
        error(photo, str(exc))
        return 1
    embedding = tagger.model.run(decoded.pixels[None]).embeddings[0]
    with open_index(cfg, dry_run=True) as index:
        store = index.store(tagger.embedding_store, len(embedding))
        if ann.use_ann(store.rows):  # the graph: no record loaded but the hits'
            _warn_unembedded(len(index) - index.vector_count(tagger.embedding_store), tagger)
            found = ann.similar(index, tagger.embedding_store, embedding, args.k, str(photo))
        else:
            found = _nearest(index, tagger, embedding, args.k, str(photo))
    for path, score in found:
        path = show(path)
        if args.json:
            print(json.dumps({"path": path, "similarity": round(score, 4)}))
        else:
            print(f"{score:.3f}  {path}")
    return 0


def _nearest(
    index: Index, tagger: Tagger, embedding: np.ndarray, k: int, skip: str
) -> list[tuple[str, float]]:
    """Exact `similar`: every embedded photo but `skip` scanned, as (path, cosine) best first."""
    others = [r for r in _embedded(index, tagger, []) if r.path != skip]
    matrix = index.vectors(tagger.embedding_store, others, len(embedding), np.float16)
    found = similarity.nearest(matrix, embedding, k)
    return [
        (others[row].path, score)
        for row, score in zip(found.indices.tolist(), found.scores.tolist(), strict=True)
    ]


def cmd_duplicates(args: argparse.Namespace, cfg: Config) -> int:
    if not 0 < args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: a cosine similarity in (0, 1]")
    tagger = load_tagger(cfg)
    with open_index(cfg, dry_run=True) as index:
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
    tagger = load_tagger(cfg)
    with open_index(cfg, dry_run=True) as index:
        records, matrix = _embeddings(index, tagger, args.paths)
    if args.k is not None and not 1 <= args.k <= len(records):
        raise UserError(f"-k {args.k}: between 1 and the number of photos ({len(records)})")
    words = [{level for t in r.auto for level in t.levels} | set(r.user) for r in records]
    clusters = similarity.cluster(matrix, words, args.k)
    for cluster in clusters:
        paths = sorted(show(records[m].path) for m in cluster.members.tolist())
        if args.json:
            print(json.dumps({"name": cluster.name, "tags": list(cluster.tags), "photos": paths}))
            continue
        print(f"{cluster.name} ({len(paths)} photo{'s' * (len(paths) != 1)})")
        for path in paths:
            print(f"  {path}")
        print()
    chosen = "chosen by silhouette" if args.k is None else "as asked"
    print(
        f"{len(clusters)} groups ({chosen}) among {len(records)} photos (nothing changed)",
        file=sys.stderr,
    )
    return 0


def _embedded(index: Index, tagger: Tagger, paths: Sequence[Path]) -> list[PhotoRecord]:
    """Indexed photos (below `paths`) with an embedding from the current model, in path order:
    groups and ties come out the same whatever order the index keeps its rows in."""
    records = sorted(under(index.records(), paths), key=lambda r: r.path)
    found = [r for r in records if tagger.embedding_store in r.vectors]
    _warn_unembedded(len(records) - len(found), tagger)
    if not found:
        raise UserError(
            f"no indexed photos to compare (index {show(index.folder)}): run `phototag scan` first"
        )
    return found


def _warn_unembedded(missing: int, tagger: Tagger) -> None:
    if missing:
        print(
            f"{missing} photos have no embedding from "
            f"{tagger.version.backbone}: run `phototag refine` first",
            file=sys.stderr,
        )


def _embeddings(
    index: Index, tagger: Tagger, paths: Sequence[Path]
) -> tuple[list[PhotoRecord], np.ndarray]:
    """The photos to compare and their float16 embeddings, one row each."""
    records = _embedded(index, tagger, paths)
    # The stores are raw rows: their width comes from the model, run once on a blank image.
    size = tagger.model.input_size
    dim = tagger.model.run(np.zeros((1, size, size, 3), np.uint8)).embeddings.shape[1]
    return records, index.vectors(tagger.embedding_store, records, dim, np.float16)


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "similar",
        cmd_similar,
        "indexed photos that look most like a photo",
        description="Print the indexed photos nearest to PHOTO by the model's image embedding, "
        "most similar first, with their cosine similarity. PHOTO need not be indexed.",
    )
    p.add_argument("photo", type=Path, metavar="PHOTO")
    p.add_argument("-k", type=int, default=10, help="how many photos (default: %(default)s)")
    p.add_argument(
        "--face",
        type=int,
        nargs="?",
        const=1,
        metavar="N",
        help="compare face N of PHOTO (default 1; an indexed photo) with every indexed face",
    )

    p = command(
        sub,
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

    p = command(
        sub,
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
