"""Helpers shared by the refine, suggest and undo tests: real photos, the real CLI, exiftool."""

from __future__ import annotations

import json
import shutil
import subprocess
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


def exiftool(path: Path, *args: str) -> None:
    """Edit keywords as the user would, with another program."""
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def keyword_sets(paths: list[Path]) -> dict[Path, dict[str, list[str]]]:
    """Keyword fields of many files as exiftool, an independent reader, sees them (one call)."""
    fields = ("Subject", "HierarchicalSubject", "TagsList", "Keywords")
    tags = ["-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords"]
    out = subprocess.run(
        ["exiftool", "-j", *tags, *map(str, paths)],
        capture_output=True,
        check=True,
    ).stdout
    found = {Path(d["SourceFile"]): d for d in json.loads(out)}

    def as_list(value: object) -> list[str]:
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    return {p: {f: as_list(found[p][f]) if f in found[p] else [] for f in fields} for p in paths}


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
