"""Finding 4 of issue 11: keywords edited in a sidecar by another program are seen by a re-scan."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from phototag import cli

pytestmark = pytest.mark.skipif(not shutil.which("exiftool"), reason="exiftool not installed")


def test_rescan_sees_a_sidecar_edit(
    tmp_path: Path, photos: Path, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    photo = folder / "cat_720p.jpg"
    shutil.copyfile(photos / "cat_720p.jpg", photo)
    assert cli.main(["scan", "--sidecar", str(folder)]) == 0
    side = folder / "cat_720p.jpg.xmp"
    assert side.is_file()
    capsys.readouterr()

    # darktable (or digiKam) adds the user's keyword to the sidecar; the photo is untouched.
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP:Subject+=Grandma", str(side)], check=True
    )
    assert cli.main(["scan", "--sidecar", str(folder)]) == 0
    assert "unchanged 1" not in capsys.readouterr().err
    assert cli.main(["search", "Grandma"]) == 0
    assert str(photo) in capsys.readouterr().out

    assert cli.main(["scan", "--sidecar", str(folder)]) == 0  # and now it is unchanged again
    assert "unchanged 1" in capsys.readouterr().err


def test_rescan_sees_a_sidecar_edit_that_keeps_size_and_mtime(
    tmp_path: Path, photos: Path, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Size and mtime cannot tell an edit within the same mtime tick at the same size (or one
    whose mtime was set back): the sidecar's content hash does."""
    folder = tmp_path / "album"
    folder.mkdir()
    photo = folder / "cat_720p.jpg"
    shutil.copyfile(photos / "cat_720p.jpg", photo)
    side = folder / "cat_720p.jpg.xmp"
    subprocess.run(
        ["exiftool", "-q", "-o", str(side), "-XMP:Subject=Grandpa", str(photo)], check=True
    )
    assert cli.main(["scan", str(folder)]) == 0  # auto: the existing sidecar gets ours
    assert cli.main(["search", "Grandpa"]) == 0
    capsys.readouterr()

    before = side.stat()
    text = side.read_bytes()
    assert b"Grandpa" in text  # in every field: the user renames it everywhere
    side.write_bytes(text.replace(b"Grandpa", b"Grandma"))  # same size
    os.utime(side, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (side.stat().st_size, side.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    assert cli.main(["scan", str(folder)]) == 0
    assert "unchanged 1" not in capsys.readouterr().err
    assert cli.main(["search", "Grandma"]) == 0
    assert str(photo) in capsys.readouterr().out
