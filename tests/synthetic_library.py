"""A synthetic photo library for search tests and benchmarks (imported by bench/ scripts too).

Tags follow a Zipf law over a three-level hierarchy, as keywords do in real libraries (a
few very common, a long tail); embeddings are noisy copies of planted cluster centres,
non-negative like MobileNetV2's ReLU6 features, so neighbours and clusters exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phototag.library.index import PhotoRecord
from phototag.library.tagindex import Entry
from phototag.records import Tag

ROOTS = 6
MIDS = 30
LEAVES = 300
KEYWORDS = 40  # flat user keywords


def vocabulary() -> list[str]:
    """Leaf paths `r{i}|m{j}|t{k}`; leaf names repeat across branches only as full paths."""
    return [f"r{k % ROOTS}|m{k % MIDS}|t{k}" for k in range(LEAVES)]


@dataclass(frozen=True)
class Library:
    entries: list[Entry]
    embeddings: np.ndarray  # float16 [n, dim], unit rows
    planted: np.ndarray  # int [n], the centre each embedding was drawn around


def zipf_choice(rng: np.random.Generator, n_items: int, size: int, s: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n_items + 1) ** s
    return rng.choice(n_items, size=size, p=p / p.sum())


def embeddings(
    n: int, dim: int = 1280, centres: int = 200, noise: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centre = np.abs(rng.standard_normal((centres, dim), dtype=np.float32))
    planted = rng.integers(centres, size=n)
    out = np.empty((n, dim), np.float16)
    for start in range(0, n, 8192):
        rows = planted[start : start + 8192]
        x = centre[rows] + noise * rng.standard_normal((len(rows), dim), dtype=np.float32)
        x = np.maximum(x, 0)
        out[start : start + len(rows)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, planted


def library(n: int, dim: int = 1280, seed: int = 0) -> Library:
    rng = np.random.default_rng(seed)
    paths = vocabulary()
    n_auto = rng.integers(1, 6, size=n)
    auto = zipf_choice(rng, LEAVES, int(n_auto.sum()))
    auto_scores = rng.uniform(0.05, 1.0, size=len(auto)).round(3)
    n_user = rng.binomial(3, 0.3, size=n)
    user = zipf_choice(rng, LEAVES + KEYWORDS, int(n_user.sum()))
    folders = [f"/photos/{2015 + y}/{m:02d}" for y in range(10) for m in range(1, 13)]
    folder = rng.integers(len(folders), size=n)
    day = rng.integers(0, 3650, size=n)
    dated = rng.random(n) < 0.9
    taken = (np.datetime64("2015-01-01T08:00:00") + day.astype("timedelta64[D]")).astype(str)
    auto_tags = [Tag(paths[a], float(s), "auto") for a, s in zip(auto, auto_scores, strict=True)]
    user_names = paths + [f"kw{k}" for k in range(KEYWORDS)]
    user_tags = [Tag(user_names[u], 1.0, "user") for u in user]
    auto_at = np.concatenate([[0], np.cumsum(n_auto)]).tolist()
    user_at = np.concatenate([[0], np.cumsum(n_user)]).tolist()
    entries = [
        Entry(
            i + 1,
            (*auto_tags[auto_at[i] : auto_at[i + 1]], *user_tags[user_at[i] : user_at[i + 1]]),
            str(taken[i]) if dated[i] else None,
            folders[folder[i]],
        )
        for i in range(n)
    ]
    vectors, planted = (
        embeddings(n, dim, seed=seed) if dim else (np.empty((n, 0), np.float16), np.zeros(n, int))
    )
    return Library(entries, vectors, planted)


def photo_records(lib: Library) -> list[PhotoRecord]:
    """The library as stored index records: auto tags with scores, user keywords flat (leaf names)."""
    return [
        PhotoRecord(
            path=f"{entry.folder}/IMG_{entry.id:06d}.jpg",
            size=2_000_000 + entry.id,
            mtime_ns=entry.id,
            sha256=f"{entry.id:064x}",
            width=4000,
            height=3000,
            taken=entry.taken,
            model_version="synthetic",
            auto=[t for t in entry.tags if t.source == "auto"],
            user=list(dict.fromkeys(t.name for t in entry.tags if t.source == "user")),
        )
        for entry in lib.entries
    ]
