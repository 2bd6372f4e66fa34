"""Names for faces: nearest-neighbour voting over the faces the user named.

Pure maths on L2-normalised face embeddings (pipeline/faces.py makes them). A face gets a
name only when its named neighbours agree above a similarity threshold calibrated on the
user's own namings, never a name the user said it is not, at most one name per face, and a
name at most once per photo (one person is not twice in one picture).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.6  # between strangers (<= 0.46 here) and the same person (>= 0.75)
THRESHOLD_RANGE = (0.5, 0.75)
K = 5  # named neighbours that vote


@dataclass(frozen=True)
class Proposal:
    name: str | None  # None: nobody the user named
    similarity: float  # to the nearest face of that name


def calibrate(embeddings: np.ndarray, names: Sequence[str]) -> float:
    """The similarity threshold halfway between the user's named people.

    Halfway between the least similar pair of one person's faces and the most similar pair
    of two people's faces, kept within THRESHOLD_RANGE; the default while either kind of
    pair is missing (fewer than two photos of anyone, or only one person named).
    """
    labels = np.asarray(names)
    sims = embeddings @ embeddings.T
    upper = np.triu(np.ones_like(sims, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    same_sims, diff_sims = sims[upper & same], sims[upper & ~same]
    if not same_sims.size or not diff_sims.size:
        return DEFAULT_THRESHOLD
    return float(np.clip((same_sims.min() + diff_sims.max()) / 2, *THRESHOLD_RANGE))


def propose(
    faces: np.ndarray,
    named: np.ndarray,
    names: Sequence[str],
    threshold: float,
    not_names: Sequence[Collection[str]] = (),
    photos: Sequence[str] = (),
    taken: Collection[tuple[str, str]] = (),
) -> list[Proposal]:
    """A name (or None) for each row of `faces` [M, D] from the named faces [N, D].

    The K nearest named faces above `threshold` vote with their similarity; `not_names[i]`
    are names face i is not (the user's negatives). `photos[i]` is face i's photo: within a
    photo a name goes to the face that matches it best, the others get their next choice;
    `taken` (photo, name) pairs are names a photo already has on another face.
    """
    if not len(names) or not len(faces):
        return [Proposal(None, 0.0) for _ in range(len(faces))]
    labels = np.asarray(names)
    sims = faces @ named.T
    choices = []  # per face: (votes, name, similarity) best first
    for i, row in enumerate(sims):
        blocked = not_names[i] if i < len(not_names) else set()
        order = np.argsort(-row)[:K]
        votes: dict[str, tuple[float, float]] = {}
        for j in order:
            if row[j] < threshold or labels[j] in blocked:
                continue
            total, best = votes.get(labels[j], (0.0, 0.0))
            votes[labels[j]] = (total + float(row[j]), max(best, float(row[j])))
        choices.append(sorted(((v, n, b) for n, (v, b) in votes.items()), reverse=True))
    return _one_per_photo(choices, photos, taken)


def _one_per_photo(
    choices: list[list[tuple[float, str, float]]],
    photos: Sequence[str],
    already: Collection[tuple[str, str]],
) -> list[Proposal]:
    """Greedy: the strongest (face, name) pairs first; a name is used once per photo."""
    pairs = sorted(
        ((votes, i, name, best) for i, c in enumerate(choices) for votes, name, best in c),
        reverse=True,
    )
    result = [Proposal(None, 0.0) for _ in choices]
    taken = set(already)
    for _, i, name, best in pairs:
        photo = photos[i] if i < len(photos) else str(i)
        if result[i].name is None and (photo, name) not in taken:
            result[i] = Proposal(name, best)
            taken.add((photo, name))
    return result


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def assign_groups(faces: np.ndarray, centroids: np.ndarray, threshold: float) -> np.ndarray:
    """The group of each new face [M, D]: a row of `centroids` [G, D] (< G) or a new one (>= G).

    Incremental: the groups made so far stay; a new face joins the existing group whose mean
    is most similar when that passes `threshold` (one product with G means, however many
    faces the library holds); the others form new groups among themselves, leader-style, in
    order, each joining the first similar enough new group's running mean.
    """
    labels = np.full(len(faces), -1, np.int64)
    if len(centroids) and len(faces):
        sims = faces @ unit(centroids).T
        best = sims.argmax(axis=1)
        joined = sims[np.arange(len(faces)), best] >= threshold
        labels[joined] = best[joined]
    sums: list[np.ndarray] = []
    for i in np.flatnonzero(labels < 0):
        if sums:
            sims = unit(np.stack(sums)) @ faces[i]
            j = int(sims.argmax())
            if sims[j] >= threshold:
                labels[i] = len(centroids) + j
                sums[j] = sums[j] + faces[i]
                continue
        labels[i] = len(centroids) + len(sums)
        sums.append(faces[i].astype(np.float64))
    return labels
