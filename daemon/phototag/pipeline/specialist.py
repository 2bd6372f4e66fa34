"""Specialists: species classifiers run only on photos the general models put in their domain.

A specialist (`kind: specialist` in the catalogue, e.g. iNaturalist birds) knows one
subtree, its `domain` (`animal|bird`). It runs on the classifier's 224 px pixels, so no
extra decode, and only on photos whose domain score (the classifier's summed probability
of the path, or the detector's best box under it) passes the gate: most photos cost
nothing. Its best species are stored as whole-photo detections, so refine re-decides the
tags from the index; a confident species then overrules the general models' guesses in
its domain (the classifier's `grouse` on a Burrowing Owl).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phototag import catalogue
from phototag.config import Config, SpecialistsConfig
from phototag.pipeline import detect, labels
from phototag.pipeline.infer import InferenceError, Model
from phototag.records import LEVEL_SEP, Detection, Tag

log = logging.getLogger(__name__)

WHOLE = (0.0, 0.0, 1.0, 1.0)  # the box of a finding about the whole photo
TOP = 3  # species stored per photo and specialist


def under(path: str, root: str) -> bool:
    """True when `path` is `root` or lies below it."""
    return path == root or path.startswith(root + LEVEL_SEP)


def gate_scores(
    path_scores: np.ndarray,
    paths: Sequence[str],
    detections: Sequence[Sequence[Detection]],
    domain: str,
) -> np.ndarray:
    """float32 [N]: how much each photo is in `domain`, by the classifier or the detector.

    path_scores: [N, n_paths] of the classifier's label map (`labels.path_scores`).
    """
    n = path_scores.shape[0]
    from_classifier = (
        path_scores[:, list(paths).index(domain)] if domain in paths else np.zeros(n, np.float32)
    )
    from_boxes = np.array(
        [max((d.score for d in row if under(d.path, domain)), default=0.0) for row in detections],
        np.float32,
    ).reshape(n)
    return np.maximum(from_classifier, from_boxes)


def findings(
    probabilities: np.ndarray, species: Sequence[str], floor: float, model: str
) -> list[list[Detection]]:
    """Per photo, its TOP species scoring >= floor, as whole-photo detections, best first.

    species[c]: the tag path of output c, "" for background (never a finding).
    """
    named = np.array([bool(p) for p in species])
    scores = np.where(named, probabilities, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP]
    return [
        [
            Detection(species[c], round(float(row[c]), 4), WHOLE, model)
            for c in best
            if row[c] >= floor
        ]
        for row, best in zip(scores, order, strict=True)
    ]


def overrule(tags: list[Tag], species: list[Tag], domain: str, max_tags: int) -> list[Tag]:
    """The photo's tags with its confident species in, other guesses in the domain out.

    Without a confident species the tags stay as they are: the specialist says nothing.
    """
    if not species:
        return tags
    kept = [t for t in tags if not under(t.path, domain)]
    return detect.merge(kept, species, max_tags)


@dataclass
class Specialist:
    """A loaded species model, its domain and the tag path of each output."""

    model: Model
    domain: str
    species: list[str]  # tag path per output, "" for background
    ref: str  # catalogue name@version:sha256[:12], part of the model version

    @property
    def name(self) -> str:
        return self.ref.split(":")[0]

    def run(self, pixels: np.ndarray, gate: np.ndarray, floor: float) -> list[list[Detection]]:
        """Findings for the photos whose gate is True, one batched inference; [] for the rest."""
        out: list[list[Detection]] = [[] for _ in range(len(pixels))]
        chosen = np.flatnonzero(gate)
        if chosen.size:
            probabilities = self.model.run(pixels[chosen]).probabilities
            found = findings(probabilities, self.species, floor, self.name)
            for i, row in zip(chosen, found, strict=True):
                out[i] = row
        return out


def species_tags(findings: Sequence[Detection], model: str, threshold: float) -> list[Tag]:
    """The tags one specialist's stored findings make at this threshold, best first."""
    return detect.detection_tags([d for d in findings if d.model == model], threshold)


def species_paths(labelmap: labels.LabelMap) -> list[str]:
    """The tag path of each output (its deepest path), "" where it has none (background)."""
    return [
        max((labelmap.paths[j] for j in np.flatnonzero(row)), key=len, default="")
        for row in labelmap.membership
    ]


def version(specialists: Sequence[Specialist], cfg: SpecialistsConfig) -> str:
    """The specialists' part of the model version: their weights and the gate that runs them."""
    if not specialists:
        return ""
    return "+".join(s.ref for s in specialists) + f",gate{cfg.gate:.2f}"


def load(cfg: Config, size: int) -> list[Specialist]:
    """The configured specialists that are installed (a missing one is logged and skipped).

    size: the classifier's input side, which specialists share so no photo is decoded twice.
    """
    if not cfg.specialists.enabled:
        return []
    loaded = []
    for name in cfg.specialists.names:
        try:
            installed = catalogue.resolve(name, None)
        except catalogue.ModelMissing as exc:
            log.info("no %s species: %s", name, exc)
            continue
        spec = installed.spec
        if spec.kind != "specialist":
            raise InferenceError(f"specialists.names: {spec.name!r} is a {spec.kind}")
        if spec.input.size != size:
            raise InferenceError(f"{spec.ref} wants {spec.input.size} px, the classifier {size}")
        model = Model(installed.path, spec.input.name, size, cfg.model.providers)
        species = species_paths(labels.load(spec.labels))
        loaded.append(Specialist(model, spec.domain, species, f"{spec.ref}:{spec.sha256[:12]}"))
    return loaded
