"""Named faces in photo files: MWG face regions, IPTC PersonInImage and `People|Name` keywords.

Read as digiKam, Lightroom, Picasa and Immich write them (files/mwg.py has the model); ours
are written beside the user's with provenance, in the file metadata.write would write (the
photo or its sidecar), in one atomic, verified write through metadata's machinery, so every
keyword field tells the same story and `metadata.undo` takes exactly ours out again.

Areas are relative to the image as displayed (after its Exif orientation, as MWG 2.0 says);
`image_size` is that image's width and height in pixels. Names in PersonInImage without a
region are not regions (no area to match a face by): `persons` gives the user's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

from phototag.config import FacesConfig, WriteConfig
from phototag.files import metadata, mwg, safeopen
from phototag.files.keywords import Record, plan
from phototag.files.metadata import MetadataError
from phototag.files.mwg import Region
from phototag.records import LEVEL_SEP

__all__ = ["Region", "persons", "read", "rejected", "write"]

log = logging.getLogger(__name__)


def read(path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES) -> list[Region]:
    """Named face regions of the photo and its sidecar (the target's first), ours marked."""
    with metadata._open_pair(path, metadata.target(path, cfg), cfg, True, max_bytes) as (
        doc,
        other,
    ):
        found, bad = mwg.faces(doc.xmp)
        if other is not None:
            theirs, more = mwg.faces(other.xmp)
            known = {(r.name, r.x, r.y, r.w, r.h) for r in found}
            found += [r for r in theirs if (r.name, r.x, r.y, r.w, r.h) not in known]
            bad += more
    if bad:
        log.warning("%s: %d named face region(s) with a malformed area ignored", path, bad)
    return found


def persons(path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES) -> list[str]:
    """The user's Iptc4xmpExt:PersonInImage names (photo and sidecar), not those we added."""
    with metadata._open_pair(path, metadata.target(path, cfg), cfg, True, max_bytes) as (
        doc,
        other,
    ):
        ours = set(mwg.persons({mwg.PERSONS: doc.xmp.get(mwg.R_PERSONS)}))
        names = [p for p in mwg.persons(doc.xmp) if p not in ours]
        names += mwg.persons(other.xmp) if other is not None else []
    return list(dict.fromkeys(names))


def rejected(
    path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES
) -> list[str]:
    """Names whose region of ours the user deleted, renamed or moved on this photo: they are
    not written there again (a negative for whoever names faces)."""
    with metadata._open_pair(path, metadata.target(path, cfg), cfg, False, max_bytes) as (doc, _):
        return mwg.rejected(doc.xmp)


def write(
    path: Path,
    regions: list[Region],
    image_size: tuple[int, int],
    cfg: WriteConfig,
    prefix: str = FacesConfig.keyword_prefix,
    max_bytes: int = safeopen.DEFAULT_MAX_BYTES,
) -> Path:
    """Make our face regions, PersonInImage names and `prefix|Name` keywords `regions`.

    The user's regions, names and keywords stay as they are; a region of ours named as one of
    the user's named faces, or once deleted by the user (`rejected`), is not written. Nothing is written when nothing would
    change. Returns the file that holds ours (the photo or its sidecar). Pass
    `cfg.faces.keyword_prefix` as `prefix`.
    """
    _check(regions, image_size)
    dest = metadata.target(path, cfg)
    with metadata._open_pair(path, dest, cfg, True, max_bytes) as (doc, other):
        others = mwg.persons(other.xmp) if other is not None else []
        try:
            values = mwg.plan(doc.xmp, regions, image_size, others)
        except mwg.Malformed as exc:
            raise MetadataError(f"{path}: {exc}; left as it is") from None
        root = LEVEL_SEP.join(p for p in prefix.split(LEVEL_SEP) if p.strip())
        paths = [f"{root}{LEVEL_SEP}{n}" if root else n for n in mwg.recorded(values)]
        if doc.fields.record is None and not paths and not mwg.changes(doc.xmp, values):
            return dest  # nothing of ours before or after: the user's keywords stay as they are
        rec = doc.fields.record or Record()
        cur = replace(doc.fields, record=replace(rec, faces=paths))
        new = plan(cur, other.fields if other else None, rec.tags, None, (), doc.inherited)
        metadata._commit(doc, new, cfg, values)
    return dest


def _check(regions: list[Region], size: tuple[int, int]) -> None:
    """A caller's bug is named, not written into a photo."""
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image size {size!r}: width and height must be positive")
    for r in regions:
        numbers = (r.x, r.y, r.w, r.h)
        if not r.name.strip() or any(c in r.name for c in "\n\r\0") or LEVEL_SEP in r.name:
            raise ValueError(f"face name {r.name!r}: empty, or holds a line break or {LEVEL_SEP}")
        if not all(math.isfinite(v) for v in numbers) or not all(0 <= v <= 1 for v in numbers):
            raise ValueError(f"face {r.name!r}: area {numbers} is not within 0..1")
        if min(r.w, r.h) <= 0:
            raise ValueError(f"face {r.name!r}: area {numbers} is empty")
