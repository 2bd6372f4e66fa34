"""Which file receives a photo's keywords: the photo itself or its XMP sidecar."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from phototag.config import RAW_EXTENSIONS, WriteConfig
from phototag.files import safeopen
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


@dataclass(frozen=True)
class Signature:
    """A photo's sidecar as the index last saw it; all zero/empty when it has none."""

    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""  # "" in records from before the hash was kept: size and mtime decide


def signature(path: Path, cfg: WriteConfig) -> Signature:
    """The photo's sidecar now: the index keeps it, so a re-scan sees keywords another program
    edited there. The content hash catches an edit that keeps size and mtime (the same mtime
    tick on a coarse file system, or mtime set back); a sidecar is a few KB, and hashing 1000
    of them costs about as much as reading them (docs/benchmarks.md)."""
    try:
        data, st = safeopen.read_regular(sidecar(path, cfg), safeopen.DEFAULT_MAX_BYTES)
    except OSError:
        return Signature()
    return Signature(st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())


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
    if record is None:
        return True
    now = signature(file.path, cfg)
    same_hash = not record.sidecar_sha256 or now.sha256 == record.sidecar_sha256
    return (now.size, now.mtime_ns) == (record.sidecar_size, record.sidecar_mtime_ns) and same_hash
