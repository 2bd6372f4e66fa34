"""RAW+JPEG pairs (IMG_0001.CR3 beside IMG_0001.JPG): one photo, analysed once from the JPEG.

The camera rendered the JPEG from the same exposure, so it is the cheaper faithful picture; the
RAW is not decoded or indexed on its own, and its sidecar gets the JPEG's keywords.
"""

from __future__ import annotations

from pathlib import Path

from phototag.config import RAW_EXTENSIONS

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
_RAW_VARIANTS = [s for ext in RAW_EXTENSIONS for s in (ext, ext.upper())]


def paired_raws(names: list[str]) -> set[str]:
    """Of one folder's file names, the RAWs that have a JPEG of the same stem beside them."""
    stems = {Path(n).stem.lower() for n in names if Path(n).suffix.lower() in JPEG_SUFFIXES}
    return {
        n
        for n in names
        if Path(n).suffix.lower() in RAW_EXTENSIONS and Path(n).stem.lower() in stems
    }


def companions(path: Path) -> list[Path]:
    """The RAW files beside a JPEG that share its stem (IMG_0001.JPG -> IMG_0001.CR3)."""
    if path.suffix.lower() not in JPEG_SUFFIXES:
        return []
    return [p for p in (path.with_suffix(s) for s in _RAW_VARIANTS) if p.is_file()]
