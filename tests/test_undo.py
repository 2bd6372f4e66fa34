"""Undo end to end: every file's keywords back to what they were, pixels untouched."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.albums import copy_photos, pixels, records, run
from tests.conftest import exiftool, keyword_sets

PHOTOS = ["cat_720p.jpg", "owl.jpg", "hot_dog.jpg", "bird.bmp"]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def album(tmp_path: Path) -> tuple[Path, list[Path]]:
    folder = tmp_path / "album"
    photos = copy_photos(folder, PHOTOS)
    exiftool(photos[0], "-XMP:Subject=Grandma", "-IPTC:Keywords=Grandma")
    with Image.open(photos[2]) as img:  # a PNG too, written in place like JPEG
        img.save(folder / "hot_dog.png")
    return folder, [*photos, folder / "hot_dog.png"]


def undone(sets: dict[Path, dict[str, list[str]]]) -> dict[Path, dict[str, list[str]]]:
    """The keyword sets after undo: the user's flat keywords stay, now mirrored into the
    hierarchy fields too (digiKam and darktable read those first)."""
    return {
        p: f | {k: f[k] or f["Subject"] for k in ("HierarchicalSubject", "TagsList")}
        for p, f in sets.items()
    }


def test_undo_restores_every_keyword_set_and_keeps_pixels(
    album: tuple[Path, list[Path]], installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, photos = album
    before = keyword_sets(photos)
    seen = {p: pixels(p) for p in photos}
    assert run(capsys, "scan", str(folder))[0] == 0
    tagged = keyword_sets(photos)
    assert all(tagged[p] != before[p] for p in photos if p.suffix != ".bmp")
    assert (folder / "bird.bmp.xmp").exists()

    # One photo: only it changes, back to the user's own keyword.
    status, out, _ = run(capsys, "undo", str(photos[0]))
    assert status == 0 and out.startswith(f"{photos[0]}: removed cat")
    after = keyword_sets(photos)
    assert after[photos[0]] == undone(before)[photos[0]]
    assert all(after[p] == tagged[p] for p in photos[1:])
    status, _, err = run(capsys, "undo", str(folder / "gone.jpg"))
    assert status == 1 and "gone.jpg: no such file" in err

    files = digests(folder)
    status, out, err = run(capsys, "undo", "--dry-run")  # no PATH: every indexed photo
    assert status == 0, err
    assert len(out.splitlines()) == len(photos) - 1 and "would undo 4" in err
    assert "hot_dog.jpg: would remove hot dog" in out
    assert digests(folder) == files  # a dry run changes nothing

    status, out, err = run(capsys, "undo", str(folder))  # a folder: every photo below it
    assert status == 0, err
    assert "undone 4, failed 0" in err
    assert keyword_sets(photos) == undone(before)
    for photo in photos:
        np.testing.assert_array_equal(pixels(photo), seen[photo])
        if photo.suffix != ".bmp":
            packet = subprocess.run(["exiv2", "-pX", str(photo)], capture_output=True).stdout
            assert b"phototag" not in packet
    assert not (folder / "bird.bmp.xmp").exists()  # the sidecar held only ours

    # The index keeps the photos without auto tags, so neither refine nor scan re-does the undo.
    for record in records(photos).values():
        assert record.auto == [] and record.model_version == ""
    assert records(photos)[photos[0]].user == ["Grandma"]
    assert "0 need only re-scoring, 0 are up to date" in run(capsys, "refine")[2]
    err = run(capsys, "scan", str(folder))[2]
    last = err.splitlines()[-1]  # (another test's logging handler may write before it)
    assert last.startswith("tagged 0 (") and "unchanged 5," in last
    assert keyword_sets(photos) == undone(before)
