"""The JPEG embedded-preview fast path: tag a camera JPEG from the preview it already carries.

Cameras store a screen-sized copy (an MPF image, e.g. 1620x1080) or a small EXIF thumbnail in the
JPEG. When its short side is at least the model's input, decoding it instead of the full image
is cheaper; `scan.jpeg_preview` turns it on (bench/preview_fastpath.py measures what it costs).
"""

from __future__ import annotations

import io

import piexif
from PIL import Image

# EXIF orientation as Pillow transposes (the main image's orientation applies to its previews).
ORIENTATION = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}


def embedded(img: Image.Image, data: bytes, size: int, orientation: object) -> Image.Image | None:
    """The smallest embedded preview with short side >= `size`, upright RGB; None if none is."""
    if img.format not in ("JPEG", "MPO"):
        return None
    found: list[Image.Image] = []
    for frame in range(1, getattr(img, "n_frames", 1)):  # MPF: frame 0 is the photo itself
        try:
            img.seek(frame)
            found.append(img.copy())
        except (OSError, ValueError, EOFError):
            break
    if found:
        img.seek(0)  # the full image stays the one decoded when no preview is usable
    thumb = _exif_thumbnail(data)
    if thumb is not None:
        found.append(thumb)
    usable = sorted((p for p in found if min(p.size) >= size), key=lambda p: p.size[0] * p.size[1])
    if not usable:
        return None
    return upright(usable[0].convert("RGB"), orientation)


def upright(picture: Image.Image, orientation: object) -> Image.Image:
    """`picture` turned as EXIF `orientation` says (a photo's orientation applies to its previews)."""
    for method in ORIENTATION.get(orientation, []):  # type: ignore[call-overload]
        picture = picture.transpose(method)
    return picture


def _exif_thumbnail(data: bytes) -> Image.Image | None:
    try:
        thumb = piexif.load(data).get("thumbnail")
        if not thumb:
            return None
        image = Image.open(io.BytesIO(thumb))
        image.load()
        return image
    except Exception:  # an odd EXIF block is no reason to refuse the photo: decode it in full
        return None
