"""Which file receives a photo's keywords: the photo itself or its XMP sidecar."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from phototag.config import RAW_EXTENSIONS, WriteConfig
from phototag.records import PhotoFile

if TYPE_CHECKING:
    from phototag.library.index import Index

log = logging.getLogger(__name__)

INPLACE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp"})


def sidecar(path: Path, cfg: WriteConfig) -> Path:
    """IMG_1234.JPG.xmp (darktable, digiKam, Immich) or IMG_1234.xmp (Adobe)."""
    if cfg.sidecar_name == "replace":
        return path.with_suffix(".xmp")
    return path.with_name(path.name + ".xmp")


def target(path: Path, cfg: WriteConfig) -> Path:
    """The file that receives our keywords: the photo or its sidecar.

    In auto mode an existing sidecar wins (darktable, digiKam and Immich read it over the photo,
    and our record stays in one place), then the photo if exiv2 writes its format and we may
    write it; otherwise a new sidecar. README and config.yaml say the same.
    """
    side = sidecar(path, cfg)
    if cfg.mode == "sidecar" or path.suffix.lower() in RAW_EXTENSIONS:  # a RAW is never rewritten
        return side
    if cfg.mode == "inplace":
        return path
    if side.exists() or path.suffix.lower() not in INPLACE_SUFFIXES:
        return side
    if read_only(path):
        log.info("%s is read-only; its keywords go to %s", path, side.name)
        return side
    return path


def signature(path: Path, cfg: WriteConfig) -> tuple[int, int]:
    """(size, mtime_ns) of the photo's sidecar, (0, 0) when it has none: the index keeps it, so
    a re-scan sees keywords another program edited there."""
    try:
        st = os.stat(sidecar(path, cfg))
    except OSError:
        return 0, 0
    return st.st_size, st.st_mtime_ns


def read_only(path: Path) -> bool:
    """No write permission, by mode bits too (root may write anything, but should not here)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return not st.st_mode & 0o222 or not os.access(path, os.W_OK)


def unchanged(index: Index, file: PhotoFile, cfg: WriteConfig) -> bool:
    """The photo and its sidecar are as the index last saw them: nothing to read again.

    Our own writes (photo or sidecar) come back as watcher events; the index holds what they
    left, so they end here as "unchanged", which is what keeps the service from looping.
    """
    if not index.unchanged(file):
        return False
    record = index.get(file.path)
    return record is None or signature(file.path, cfg) == (
        record.sidecar_size,
        record.sidecar_mtime_ns,
    )
