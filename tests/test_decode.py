import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag.pipeline import decode

LIMIT = 200_000_000


def save(img: Image.Image, path: Path, **kw: object) -> Path:
    img.save(path, **kw)
    return path


def gradient(w: int = 640, h: int = 480) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_every_format_decodes_to_model_input(tmp_path: Path, fmt: str) -> None:
    path = save(gradient(), tmp_path / f"x.{fmt.lower()}", format=fmt)
    d = decode.load(path, 224, LIMIT)
    assert d.pixels.shape == (224, 224, 3) and d.pixels.dtype == np.uint8
    assert (d.width, d.height) == (640, 480)
    assert d.colour.shape == (64,) and abs(float(d.colour.sum()) - 1) < 1e-5
    assert len(d.sha256) == 64


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 200, 200))  # left half blue, right half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    d = decode.load(path, 224, LIMIT)
    assert (d.width, d.height) == (200, 400)
    top, bottom = d.pixels[20, 112], d.pixels[200, 112]
    assert top[2] > 200 and top[0] < 60  # displayed top is the blue half
    assert bottom[0] > 200 and bottom[2] < 60


def test_date_taken_from_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:06:01 12:34:56"
    path = save(gradient(), tmp_path / "d.jpg", exif=exif)
    assert decode.load(path, 224, LIMIT).taken == "2024-06-01T12:34:56"


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    path = save(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), tmp_path / "t.png")
    assert decode.load(path, 224, LIMIT).pixels.min() == 255


def test_jpeg_draft_mode_decodes_large_photos_reduced(tmp_path: Path) -> None:
    path = save(gradient(4000, 3000), tmp_path / "big.jpg", quality=90)
    img = Image.open(path)
    img.draft("RGB", (224, 224))
    assert img.size == (500, 375)  # 1/8 scale: what decode.load gets to work with
    assert decode.load(path, 224, LIMIT).pixels.shape == (224, 224, 3)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = io.BytesIO()
    gradient().save(good, "JPEG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (tmp_path / "text.jpg").write_text("this is not a photo\n")
    (tmp_path / "x.jpg").mkdir()
    bomb = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(bomb)  # a few KB on disk, 900 megapixels decoded
    return {
        "empty": (tmp_path / "empty.jpg", "empty file"),
        "truncated": (tmp_path / "truncated.jpg", "corrupt image"),
        "text": (tmp_path / "text.jpg", "not an image"),
        "directory": (tmp_path / "x.jpg", "is a directory"),
        "bomb": (bomb, "decompression bomb"),
        "vanished": (tmp_path / "gone.jpg", "no such file"),
    }


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    for name, (path, message) in bad_inputs(tmp_path).items():
        with pytest.raises(decode.DecodeError) as info:
            decode.load(path, 224, LIMIT)
        assert message in str(info.value), name
        assert "\n" not in str(info.value), name


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(gradient(), tmp_path / "locked.jpg")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads whatever the mode: make the kernel's refusal explicit
        real_open = os.open

        def refuse(path: object, flags: int, *args: object) -> int:
            if str(path).endswith("locked.jpg"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(decode.DecodeError, match="permission denied"):
        decode.load(path, 224, LIMIT)


def test_real_photos_decode(photos: Path) -> None:
    for path in sorted(photos.glob("*.*")):
        if path.suffix in (".jpg", ".bmp"):
            assert decode.load(path, 224, LIMIT).pixels.shape == (224, 224, 3)
