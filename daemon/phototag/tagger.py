"""The tag stage: CNN outputs -> keywords with scores, and the model version that made them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from phototag import catalogue, labels
from phototag.config import Config, TaggingConfig
from phototag.infer import Batch, Model
from phototag.records import ModelVersion, Tag


def cnn_tags(
    probabilities: np.ndarray, labelmap: labels.LabelMap, cfg: TaggingConfig
) -> list[list[Tag]]:
    """Per photo, the most specific tag paths whose summed class probability passes the threshold."""
    scores = labels.path_scores(probabilities, labelmap)
    chosen = labels.select(scores, labelmap, cfg.threshold, cfg.max_tags)
    return [[Tag(path, float(score), "auto") for path, score in row] for row in chosen]


def settings_hash(cfg: TaggingConfig) -> str:
    """A short stable id of the thresholds, part of the model version stored per photo."""
    text = f"{cfg.threshold:.4f}/{cfg.max_tags}/{int(cfg.ancestors)}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class Tagger:
    """A loaded model with its label map: everything needed to turn pixels into tags."""

    model: Model
    labelmap: labels.LabelMap
    version: ModelVersion
    embedding_store: str  # the index's vector store for this backbone's embeddings
    probability_store: str  # and for its class probabilities: refine re-scores from them
    cfg: TaggingConfig

    def tags(self, batch: Batch) -> list[list[Tag]]:
        return cnn_tags(batch.probabilities, self.labelmap, self.cfg)


def load(cfg: Config) -> Tagger:
    """Resolve the configured model from the installed ones and open its session."""
    installed = catalogue.resolve(cfg.model.name, cfg.model.version)
    spec = installed.spec
    model = Model(installed.path, spec.input.name, spec.input.size, cfg.model.providers)
    labelmap = labels.load(spec.labels)
    version = ModelVersion(
        backbone=spec.ref,
        backbone_sha256=spec.sha256,
        labelmap=labelmap.version,
        thresholds=settings_hash(cfg.tagging),
    )
    return Tagger(
        model,
        labelmap,
        version,
        f"embedding-{spec.sha256[:12]}",
        f"probabilities-{spec.sha256[:12]}",
        cfg.tagging,
    )
