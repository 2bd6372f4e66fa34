"""The JPEG embedded-preview fast path on camera-like files made here (MPF previews)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from phototag.pipeline import decode, preview
from phototag.records import PhotoFile


def _camera_jpeg(
    photo: Path, main: tuple[int, int], small: tuple[int, int], exif: bytes = b""
) -> bytes:
    img = Image.open(photo).convert("RGB")
    out = io.BytesIO()
    img.resize(main).save(
        out, "MPO", save_all=True, append_images=[img.resize(small)], quality=90, exif=exif
    )
    return out.getvalue()


def test_the_mpf_preview_is_used_when_big_enough(photos: Path, tmp_path: Path) -> None:
    data = _camera_jpeg(photos / "cat_720p.jpg", (1600, 1200), (400, 300))
    found = preview.embedded(Image.open(io.BytesIO(data)), data, 224, 1)
    assert found is not None and found.size == (400, 300)
    assert preview.embedded(Image.open(io.BytesIO(data)), data, 320, 1) is None  # too small

    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(data)
    file = PhotoFile.stat(path)
    fast = decode.decode(file, data, "", 224, 10**9, fast=True)
    full = decode.decode(file, data, "", 224, 10**9, fast=False)
    assert (
        (fast.width, fast.height) == (full.width, full.height) == (1600, 1200)
    )  # the photo's size
    diff = np.abs(fast.pixels.astype(int) - full.pixels.astype(int)).mean()
    assert diff < 8  # the same picture, resampled from another size


def test_the_photos_orientation_turns_its_preview(photos: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _camera_jpeg(photos / "cat_720p.jpg", (1600, 1200), (400, 300), exif.tobytes())
    found = preview.embedded(Image.open(io.BytesIO(data)), data, 224, 6)
    assert found is not None and found.size == (300, 400)


def test_a_plain_jpeg_or_png_has_no_preview(photos: Path) -> None:
    data = (photos / "cat_720p.jpg").read_bytes()
    assert preview.embedded(Image.open(io.BytesIO(data)), data, 224, 1) is None
    out = io.BytesIO()
    Image.new("RGB", (640, 480)).save(out, "PNG")
    png = out.getvalue()
    assert preview.embedded(Image.open(io.BytesIO(png)), png, 224, 1) is None


def test_a_large_preview_is_decoded_in_draft_mode(photos: Path) -> None:
    """A 1620x1080 preview for a 416-px input decodes at 810x540, not whole."""
    data = _camera_jpeg(photos / "cat_720p.jpg", (4000, 3000), (1620, 1080))
    found = preview.embedded(Image.open(io.BytesIO(data)), data, 416, 1)
    assert found is not None and found.size == (810, 540)


def test_the_fast_path_is_off_by_default() -> None:
    """Measured agreement of the top tags is below 95 % (docs/benchmarks.md)."""
    from phototag.config import Config

    assert Config().scan.jpeg_preview is False
