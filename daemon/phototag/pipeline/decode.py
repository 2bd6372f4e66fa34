"""Decode a photo into the model's input, cheaply and defensively.

Reads the file once (hashing the bytes on the way), refuses decompression bombs from
the header before any pixels are decoded, uses JPEG draft mode so a 12-megapixel JPEG
is decoded at 1/8 scale, and applies EXIF orientation so tags describe what people see.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from phototag.config import RAW_EXTENSIONS
from phototag.files import safeopen
from phototag.pipeline import preview, raw
from phototag.records import Decoded, Letterbox, PhotoFile

try:  # optional extra `heic`
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - depends on the extra
    pass

# We enforce our own, configurable limit from the header; Pillow's own check would only warn.
Image.MAX_IMAGE_PIXELS = None

COLOUR_BINS = 4  # per channel: a 64-bin joint RGB histogram


class DecodeError(Exception):
    """The file is not an image we can read; the message is one line for the user."""


class NotAnImage(DecodeError):
    """The bytes themselves are wrong (no image, corrupt, too large): reading again cannot help,
    so the service gives up at once instead of retrying (a changed file is queued anew)."""


def read(file: PhotoFile, max_bytes: int = safeopen.DEFAULT_MAX_BYTES) -> tuple[bytes, str]:
    """The file's bytes and their sha256 (the content hash the index matches moves by)."""
    try:
        data, _ = safeopen.read_regular(file.path, max_bytes)
    except safeopen.UnsafeFile as exc:
        raise NotAnImage(str(exc)) from None
    except IsADirectoryError:
        raise DecodeError("is a directory, not a photo") from None
    except FileNotFoundError:
        raise DecodeError("no such file (moved or deleted before it could be read)") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise NotAnImage("empty file (0 bytes)")
    return data, hashlib.sha256(data).hexdigest()


def decode(
    file: PhotoFile,
    data: bytes,
    sha256: str,
    size: int,
    max_pixels: int,
    letterbox: int = 0,
    fast: bool = False,
    picture: int = 0,
) -> Decoded:
    """Turn a photo's bytes into a `size` x `size` RGB array (bilinear, no crop, as the model expects).

    With `letterbox` > 0 the same decode also yields the detector's input: the photo scaled
    to fit a `letterbox`-pixel square, centred on black. One draft-mode decode at the larger
    of the two sizes serves both. `fast`: a JPEG's embedded preview stands in for it when big
    enough for both (pipeline/preview.py). `picture` > 0: the decode is at least that large
    and the upright picture itself comes along (faces are cut from it, not from the copies).
    """
    if file.path.suffix.lower() in RAW_EXTENSIONS:
        return _decode_raw(file, data, sha256, size, letterbox, picture)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF; errors still raise
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise NotAnImage(
                    f"image too large ({width}x{height} pixels, limit {max_pixels:,}): refused "
                    "as a possible decompression bomb"
                )
            exif = _exif(img)
            taken = _date_taken(exif)
            if exif.get(0x0112) in (5, 6, 7, 8):  # rotated 90°: people see it the other way up
                width, height = height, width
            side = max(size, letterbox, picture)
            small = preview.embedded(img, data, side, exif.get(0x0112)) if fast else None
            if small is not None:
                img = small
            else:
                img.draft("RGB", _draft_size(img.size, size, max(letterbox, picture)))  # JPEG only
                img = ImageOps.exif_transpose(img)
            if img.mode != "RGB":
                img = _to_rgb(img)
            pixels = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))
            boxed = letterboxed(img, letterbox) if letterbox else None
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise NotAnImage("not an image Pillow can read (unknown or fake format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotAnImage(f"corrupt image: {message}") from None
    kept = img if picture else None
    return Decoded(
        file, sha256, pixels, colour_histogram(pixels), width, height, taken, boxed, kept
    )


def _draft_size(size: tuple[int, int], square: int, fit: int) -> tuple[int, int]:
    """What JPEG draft mode must keep: `square` both ways (the classifier's stretch) and `fit`
    on the long side (the letterbox, the faces' picture), the short side in proportion. So
    a 4000x3000 photo decodes at 1/8 (500x375) for a 416 letterbox (416x312 of photo), not
    at 1/4 as a 416x416 request would, and at 2000x1500 for a 1600 picture."""
    long = max(size)
    return (
        max(square, -(-fit * size[0] // long)),
        max(square, -(-fit * size[1] // long)),
    )


def letterboxed(img: Image.Image, side: int) -> Letterbox:
    """`img` scaled by r = min(side/W, side/H) (bilinear) and pasted centred on a black square."""
    r = min(side / img.width, side / img.height)
    w, h = max(1, round(img.width * r)), max(1, round(img.height * r))
    canvas = np.zeros((side, side, 3), np.uint8)
    x0, y0 = (side - w) // 2, (side - h) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = np.asarray(img.resize((w, h), Image.Resampling.BILINEAR))
    return Letterbox(canvas, x0, y0, w, h)


def _decode_raw(
    file: PhotoFile, data: bytes, sha256: str, size: int, letterbox: int, keep: int
) -> Decoded:
    """A RAW through its embedded preview or a half-size demosaic (pipeline/raw.py)."""
    try:
        picture = raw.picture(file.path, data, max(size, letterbox, keep))
    except raw.RawError as exc:
        raise DecodeError(str(exc)) from None
    pixels = np.asarray(picture.image.resize((size, size), Image.Resampling.BILINEAR))
    boxed = letterboxed(picture.image, letterbox) if letterbox else None
    width, height = picture.image.size
    kept = picture.image if keep else None
    return Decoded(file, sha256, pixels, colour_histogram(pixels), width, height, None, boxed, kept)


def load(
    path: Path,
    size: int,
    max_pixels: int,
    letterbox: int = 0,
    fast: bool = False,
    max_bytes: int = safeopen.DEFAULT_MAX_BYTES,
    picture: int = 0,
) -> Decoded:
    """Stat, read and decode one path: the decode stage for one photo."""
    try:
        file = PhotoFile.stat(path)
    except FileNotFoundError:
        raise DecodeError("no such file (moved or deleted before it could be read)") from None
    except OSError as exc:
        raise DecodeError(f"cannot stat: {exc.strerror or exc}") from None
    data, sha256 = read(file, max_bytes)
    return decode(file, data, sha256, size, max_pixels, letterbox, fast, picture)


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """A joint RGB histogram, L1-normalised: TagProp's cheap second distance next to the CNN's."""
    q = (pixels.reshape(-1, 3) // (256 // COLOUR_BINS)).astype(np.int32)
    codes = (q[:, 0] * COLOUR_BINS + q[:, 1]) * COLOUR_BINS + q[:, 2]
    hist = np.bincount(codes, minlength=COLOUR_BINS**3).astype(np.float32)
    return hist / hist.sum()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white (as viewers show it) and bring any mode to RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        arr = arr * (255.0 / max(float(arr.max()), 1.0))
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _exif(img: Image.Image) -> Image.Exif:
    try:
        return img.getexif()
    except Exception:  # odd EXIF is no reason to refuse a photo
        return Image.Exif()


def _date_taken(exif: Image.Exif) -> str | None:
    """EXIF DateTimeOriginal as ISO 8601 ("2024:06:01 12:00:00" -> "2024-06-01T12:00:00")."""
    try:
        value = exif.get_ifd(0x8769).get(36867)
    except Exception:  # odd EXIF is no reason to refuse a photo
        return None
    if not isinstance(value, str) or len(value) < 19 or value.startswith("0000"):
        return None
    value = value.strip("\x00 ")
    return f"{value[:4]}-{value[5:7]}-{value[8:10]}T{value[11:19]}"
