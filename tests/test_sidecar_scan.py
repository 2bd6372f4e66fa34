"""Finding 4 of issue 11: keywords edited in a sidecar by another program are seen by a re-scan."""

from __future__ import annotations

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
