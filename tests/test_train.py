"""Learning the user's own keywords: training set, storage, retraining, and end to end."""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from phototag import decode, tagger, tagprop, train
from phototag.config import Config, TagPropConfig
from phototag.index import Index, PhotoRecord
from phototag.records import Tag
from tests.albums import keyword_sets, run
from tests.conftest import PHOTOS, need_shared

STORES = train.Stores("0123456789ab", 32, 10)


# --- near-duplicates, as cameras and editors make them ---------------------------------


def _variants(img: Image.Image) -> list[Image.Image]:
    w, h = img.size
    return [
        img,
        ImageOps.mirror(img),
        img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        img.crop((0, 0, w * 17 // 20, h * 17 // 20)),
        img.resize((w * 3 // 5, h * 3 // 5)),
        ImageEnhance.Brightness(img.crop((w // 8, h // 8, w, h))).enhance(1.15),
        ImageOps.mirror(img.crop((w // 20, 0, w, h - h // 12))),
    ]


def near_duplicates(source: Path, folder: Path, stem: str, picks: list[int]) -> list[Path]:
    """JPEG copies of `source`: the original re-saved, a mirror, crops, a smaller and a brighter one."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as opened:
        img = opened.convert("RGB")
    img.thumbnail((640, 640))
    variants = _variants(img)
    out = []
    for i in picks:
        out.append(folder / f"{stem}-{i}.jpg")
        variants[i].save(out[-1], quality=85 - 5 * i)
    return out
