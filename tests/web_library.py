"""A small real library for the web app's tests: shared photos tagged by the real model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from phototag import cli, config
from phototag.library.index import Index, open_index
from phototag.pipeline import tagger
from phototag.web import auth
from phototag.web.app import create_app

USER, PASSWORD = "ada", "correct horse battery"
ALBUM = ["cat_720p.jpg", "parrot.jpg", "pets.jpg", "owl.jpg"]


@dataclass
class WebLibrary:
    folder: Path
    photos: dict[str, Path]
    cfg: config.Config
    index: Index


def build(root: Path, photos: Path) -> Iterator[WebLibrary]:
    """Scan an album (parrot and owl then undone, so suggestions exist), set a password."""
    folder = root / "album"
    folder.mkdir()
    copied = {}
    for name in ALBUM:
        copied[name] = folder / name
        shutil.copyfile(photos / name, copied[name])
    assert cli.main(["-q", "scan", str(folder)]) == 0
    assert cli.main(["-q", "undo", str(copied["parrot.jpg"]), str(copied["owl.jpg"])]) == 0
    auth.set_password(USER, PASSWORD)
    cfg = config.load()
    with open_index(cfg.index_dir, cfg.index.backend) as index:
        yield WebLibrary(folder, copied, cfg, index)


def app_of(lib: WebLibrary) -> FastAPI:
    return create_app(lib.cfg, lib.index, lambda: tagger.load(lib.cfg))
