"""Camera RAW files: tag what the camera itself rendered, never the file.

The cheapest faithful picture of a RAW is the JPEG (or TIFF) preview the camera embedded: LibRaw's
thumbnail first, then exiv2's preview list (it finds previews LibRaw misses, such as a pruned
CR3's 1620x1080 JPEG). Only when no preview is big enough for the model is the raw data
demosaiced, at half size. Metadata-only stubs carry neither: they are reported, not guessed.
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import rawpy
from PIL import Image

from phototag.pipeline import preview

# Lossless raw data needs several bits per photosite; a file holding less than one bit per
# photosite has no real sensor data (LibRaw then "decodes" zeros or noise from a stub).
MIN_BITS_PER_PHOTOSITE = 1.0

# LibRaw's `flip` (the RAW's EXIF orientation, already decoded) as EXIF orientation values.
_EXIF_OF_FLIP = {3: 3, 5: 8, 6: 6}
_PREVIEW_LINE = re.compile(r"Preview (\d+): \S+, (\d+)x(\d+) pixels, (\d+) bytes")
# Fewer bytes than this per pixel is no picture (a stub's 286-byte "1024x683" preview): not
# decoded, as libjpeg would print its own complaint on stderr beside our one line.
MIN_PREVIEW_BYTES_PER_PIXEL = 0.01


class RawError(Exception):
    """No usable picture in the RAW; the message is one line for the user."""


@dataclass(frozen=True)
class RawPicture:
    image: Image.Image  # RGB, upright
    source: str  # "preview WxH" or "half-size demosaic WxH": what was tagged


def picture(path: Path, data: bytes, size: int) -> RawPicture:
    """The best picture of a RAW for a `size`-pixel model, upright (the RAW's orientation applied)."""
    tried: list[str] = []
    try:
        raw = rawpy.imread(io.BytesIO(data))
    except (rawpy.LibRawError, OSError) as exc:
        raw = None
        tried.append(f"LibRaw cannot open it ({_message(exc)})")
    flip = raw.sizes.flip if raw is not None else 0
    with raw if raw is not None else nullcontext():
        if raw is not None:
            thumb = _thumbnail(raw, size, tried)
            if thumb is not None:
                return RawPicture(_upright(thumb, flip), f"preview {thumb.width}x{thumb.height}")
        preview = _exiv2_preview(path, size, tried)
        if preview is not None:
            return RawPicture(_upright(preview, flip), f"preview {preview.width}x{preview.height}")
        if raw is not None:
            demosaiced = _half_size(raw, len(data), tried)
            if demosaiced is not None:
                w, h = demosaiced.size
                return RawPicture(demosaiced, f"half-size demosaic {w}x{h}")
    raise RawError("RAW without a usable preview or raw data: " + "; ".join(dict.fromkeys(tried)))


def _thumbnail(raw: rawpy.RawPy, size: int, tried: list[str]) -> Image.Image | None:
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, OSError) as exc:
        tried.append(f"no LibRaw preview ({_message(exc)})")
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        image = _open(thumb.data, tried)
    else:
        image = Image.fromarray(thumb.data).convert("RGB")
    return _big_enough(image, size, tried)


def _exiv2_preview(path: Path, size: int, tried: list[str]) -> Image.Image | None:
    """The largest of exiv2's previews that decodes and is at least `size` on its short side."""
    listing = _exiv2("-pp", str(path))
    found = sorted(
        (
            (int(w) * int(h), int(n), int(w), int(h), int(b))
            for n, w, h, b in _PREVIEW_LINE.findall(listing)
        ),
        reverse=True,
    )
    with tempfile.TemporaryDirectory(prefix="phototag-preview-") as tmp:
        for pixels, number, width, height, length in found:
            if min(width, height) < size:  # too small by exiv2's listing: not even decoded
                tried.append(f"preview {width}x{height} is smaller than {size} px")
                continue
            if length < pixels * MIN_PREVIEW_BYTES_PER_PIXEL:
                tried.append(f"preview {width}x{height} has only {length} bytes")
                continue
            _exiv2(f"-ep{number}", "-l", tmp, str(path))
            files = list(Path(tmp).glob(f"*-preview{number}.*"))
            if not files:
                continue
            image = _big_enough(_open(files[0].read_bytes(), tried), size, tried)
            if image is not None:
                return image
    if not found:
        tried.append("exiv2 lists no preview")
    return None


def _half_size(raw: rawpy.RawPy, file_bytes: int, tried: list[str]) -> Image.Image | None:
    sites = raw.sizes.raw_width * raw.sizes.raw_height
    if sites == 0 or file_bytes * 8 < sites * MIN_BITS_PER_PHOTOSITE:
        tried.append(
            f"no raw data ({file_bytes:,} bytes for a {raw.sizes.raw_width}x"
            f"{raw.sizes.raw_height} sensor)"
        )
        return None
    try:
        return Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True))
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        tried.append(f"raw data does not decode ({_message(exc)})")
        return None


def _open(data: bytes | None, tried: list[str]) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data or b""))
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        tried.append(f"a preview does not decode ({_message(exc)})")
        return None


def _big_enough(image: Image.Image | None, size: int, tried: list[str]) -> Image.Image | None:
    if image is None:
        return None
    if min(image.size) < size:
        tried.append(f"preview {image.width}x{image.height} is smaller than {size} px")
        return None
    return image


def _upright(image: Image.Image, flip: int) -> Image.Image:
    return preview.upright(image, _EXIF_OF_FLIP.get(flip, 1))


def _exiv2(*args: str) -> str:
    """exiv2's CLI: pyexiv2 does not expose the preview list. Missing exiv2 means no previews."""
    try:
        done = subprocess.run(
            ["exiv2", "-q", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def _message(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).splitlines()[0] if str(text) else type(exc).__name__
