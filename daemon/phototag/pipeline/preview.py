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
    """The smallest embedded preview with short side >= `size`, upright RGB; None if none is.

    Sizes are read from the headers first; only the chosen preview is decoded, in JPEG draft
    mode (a 1620x1080 preview for a 416-px input decodes at 810x540).
    """
    if img.format not in ("JPEG", "MPO"):
        return None
    frames: list[tuple[int, int]] = []  # (pixels, frame) of the usable MPF images
    for frame in range(1, getattr(img, "n_frames", 1)):  # MPF: frame 0 is the photo itself
        try:
            img.seek(frame)
        except (OSError, ValueError, EOFError):
            break
        if min(img.size) >= size:
            frames.append((img.size[0] * img.size[1], frame))
    thumb = _exif_thumbnail(data)
    usable_thumb = thumb is not None and min(thumb.size) >= size
    try:
        if usable_thumb and (not frames or thumb.size[0] * thumb.size[1] <= min(frames)[0]):
            chosen = thumb
        elif frames:
            img.seek(min(frames)[1])
            img.draft("RGB", (size, size))
            chosen = img.copy()
        else:
            return None
        chosen.load()
    except (OSError, ValueError, EOFError):  # a broken preview: decode the photo in full
        return None
    finally:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # the full image stays the one decoded when no preview is usable
    return upright(chosen.convert("RGB"), orientation)


def upright(picture: Image.Image, orientation: object) -> Image.Image:
    """`picture` turned as EXIF `orientation` says (a photo's orientation applies to its previews)."""
    for method in ORIENTATION.get(orientation, []):  # type: ignore[call-overload]
        picture = picture.transpose(method)
    return picture


def _exif_thumbnail(data: bytes) -> Image.Image | None:
    """The EXIF thumbnail, opened (its header read), not decoded."""
    try:
        thumb = piexif.load(data).get("thumbnail")
        return Image.open(io.BytesIO(thumb)) if thumb else None
    except Exception:  # an odd EXIF block is no reason to refuse the photo: decode it in full
        return None
