"""Helpers shared by the refine, suggest and undo tests: real photos, the real CLI, exiftool."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag import cli, config
from phototag.library.index import PhotoRecord, open_index
from tests.conftest import PHOTOS, need_shared


def copy_photos(folder: Path, names: list[str]) -> list[Path]:
    need_shared(PHOTOS)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        out.append(folder / name)
        shutil.copyfile(PHOTOS / name, out[-1])
        out[-1].chmod(0o644)
    return out


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in process: (exit status, stdout, stderr)."""
    status = cli.main(["--quiet", *args])
    out, err = capsys.readouterr()
    return status, out, err


def records(paths: list[Path]) -> dict[Path, PhotoRecord]:
    """The index records of these photos (every one must be indexed)."""
    with open_index(config.Config().index_dir, readonly=True) as index:
        found = {p: index.get(p) for p in paths}
    missing = [p for p, r in found.items() if r is None]
    assert not missing, f"not indexed: {missing}"
    return {p: r for p, r in found.items() if r is not None}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))
