"""Thumbnails and previews, made once and kept in the XDG cache, never beside the photos.

The cache key is the photo's real path, size and modification time and the pixel size, so an
edited photo gets a new thumbnail and a stale one is never served.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, ImageOps

from phototag import paths
from phototag.files.fileio import atomic_write
from phototag.files.safeopen import DEFAULT_MAX_BYTES, read_regular

SIZES = {"thumb": 256, "preview": 1280}


class ThumbnailError(Exception):
    """The photo cannot be decoded into a thumbnail; one line."""


def cache_dir() -> Path:
    return paths.cache_dir() / "thumbnails"


def thumbnail(photo: Path, size: int, max_pixels: int) -> Path:
    """The cached JPEG of `photo` at most `size` pixels wide and high, made if missing."""
    st = photo.stat()
    key = hashlib.sha256(f"{photo}\0{st.st_size}\0{st.st_mtime_ns}\0{size}".encode()).hexdigest()
    cached = cache_dir() / key[:2] / f"{key}.jpg"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, render(read_regular(photo, DEFAULT_MAX_BYTES)[0], size, max_pixels))
    return cached


def render(data: bytes, size: int, max_pixels: int) -> bytes:
    """JPEG bytes of the image in `data`, upright (EXIF orientation), fitted into size x size."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise ThumbnailError(f"{img.width}x{img.height} is more than scan.max_pixels")
            img.draft("RGB", (size, size))  # JPEG: decode at 1/2..1/8 scale, much faster
            small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail((size, size))
            out = io.BytesIO()
            small.save(out, "JPEG", quality=85)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"cannot make a thumbnail: {exc}".splitlines()[0]) from None
    return out.getvalue()
