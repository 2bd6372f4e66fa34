"""The tag stage: CNN outputs -> keywords with scores, and the model version that made them.

`Tagger.tags` is the one function that decides a photo's auto tags, for `tag`, `scan`, the
service and `refine`'s re-scoring alike: the CNN's tags, plus the user's own keywords that
the active TagProp model (`phototag train`) finds likely enough, merged with the object
detector's tags, then the species of a confident specialist (which overrule the others'
guesses in its domain), then passed through the user's vocabulary (`tags:` settings).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from phototag import catalogue
from phototag.config import (
    Config,
    DetectorConfig,
    FacesConfig,
    PlacesConfig,
    SpecialistsConfig,
    TaggingConfig,
    TagPropConfig,
)
from phototag.learn import train
from phototag.library.index import PhotoRecord
from phototag.pipeline import detect, labels, specialist, vocabulary
from phototag.pipeline import faces as face_stage
from phototag.pipeline.faces import Face, FaceModels
from phototag.pipeline.infer import Batch, InferenceError, Model
from phototag.records import Decoded, Detection, ModelVersion, Tag

log = logging.getLogger(__name__)


def cnn_tags(
    probabilities: np.ndarray, labelmap: labels.LabelMap, cfg: TaggingConfig
) -> list[list[Tag]]:
    """Per photo, the most specific tag paths whose summed class probability passes the threshold."""
    scores = labels.path_scores(probabilities, labelmap)
    chosen = labels.select(scores, labelmap, cfg.threshold, cfg.max_tags)
    return [[Tag(path, float(score), "auto") for path, score in row] for row in chosen]


def learned_tags(
    scores: np.ndarray,
    keywords: Sequence[str],
    threshold: float,
    max_tags: int,
    exclude: Sequence[Collection[str]] = (),
) -> list[list[Tag]]:
    """Per photo, the user's keywords with probability >= threshold, best first, at most max_tags.

    exclude[i]: keywords photo i must not get (the user deleted them there, or has them).
    Keywords are flat: the tag path is the keyword itself, as the user wrote it.
    """
    allowed = scores >= threshold
    column = {k: j for j, k in enumerate(keywords)}
    for i, words in enumerate(exclude):
        cols = [column[w] for w in words if w in column]
        allowed[i, cols] = False
    ranked = np.where(allowed, scores, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :max_tags]
    return [
        [Tag(keywords[j], float(scores[i, j]), "auto") for j in row if allowed[i, j]]
        for i, row in enumerate(order)
    ]


def merge(cnn: list[Tag], learned: list[Tag]) -> list[Tag]:
    """Both lists by score, best first; a learned keyword the CNN also names is left to the CNN's."""
    names = {t.name.casefold() for t in cnn}
    extra = [t for t in learned if t.name.casefold() not in names]
    return sorted(cnn + extra, key=lambda t: -t.score)


def settings_hash(
    cfg: TaggingConfig,
    tagprop: TagPropConfig | None = None,
    detector: DetectorConfig | None = None,
    vocab: vocabulary.Vocabulary | None = None,
    places: PlacesConfig | None = None,
    species: SpecialistsConfig | None = None,
    flat_ancestors: bool = True,
) -> str:
    """A short stable id of the thresholds and vocabulary, part of the model version per photo.

    `write.flat_ancestors` is part of it so that `refine` rewrites the keywords when it changes.
    """
    text = f"{cfg.threshold:.4f}/{cfg.max_tags}/{int(flat_ancestors)}"
    if tagprop is not None:  # only a learned model makes its thresholds matter
        text += f"/{tagprop.threshold:.4f}/{tagprop.max_tags}"
    if detector is not None:  # only a detector that runs makes its threshold matter
        text += f"/det{detector.threshold:.4f}"
    if species is not None:  # only specialists that run make their threshold matter
        text += f"/spc{species.threshold:.4f}"
    if vocab is not None and vocab != vocabulary.Vocabulary():  # defaults keep old versions
        text += f"/voc{vocab.digest()}"
    if places is not None and places.enabled:  # refine re-decides places from stored positions
        text += f"/places:{places!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class Analysis:
    """What the models said about a batch of photos, row i for photo i."""

    batch: Batch
    detections: list[list[Detection]]
    tags: list[list[Tag]]
    faces: list[list[Face]] = field(default_factory=list)  # when faces are on


@dataclass
class Tagger:
    """A loaded model with its label map and the learned TagProp model, if any."""

    model: Model
    labelmap: labels.LabelMap
    version: ModelVersion
    stores: train.Stores  # the index's vector stores of this backbone
    cfg: TaggingConfig
    tagprop_cfg: TagPropConfig = field(default_factory=TagPropConfig)
    learned: train.Learned | None = None  # the active model for this backbone
    detector: detect.Detector | None = None
    vocab: vocabulary.Vocabulary = field(default_factory=vocabulary.Vocabulary)
    places_cfg: PlacesConfig | None = None  # part of the version (refine re-decides places)
    specialists: list[specialist.Specialist] = field(default_factory=list)
    specialists_cfg: SpecialistsConfig = field(default_factory=SpecialistsConfig)
    faces: FaceModels | None = None  # faces.enabled and the face models installed
    faces_cfg: FacesConfig = field(default_factory=FacesConfig)
    flat_ancestors: bool = True  # write.flat_ancestors, part of the version

    @property
    def embedding_store(self) -> str:
        return self.stores.embedding

    @property
    def probability_store(self) -> str:
        """Refine re-scores from the class probabilities stored here."""
        return self.stores.probability

    @property
    def rescore_stores(self) -> tuple[str, ...]:
        """The vector stores a photo needs to be re-scored without decoding."""
        return self.stores.names if self.learned is not None else (self.stores.probability,)

    def tags(
        self,
        batch: Batch,
        colours: np.ndarray,
        records: Sequence[PhotoRecord | None] = (),
        detections: Sequence[Sequence[Detection]] = (),
    ) -> list[list[Tag]]:
        """Each photo's auto tags from its CNN outputs, colour histogram and detected boxes.

        records[i]: photo i's index record, if it has one. The learned model does not propose
        the user's own keywords on it nor those they deleted there (metadata.write would refuse
        those anyway), and does not count the photo as its own neighbour. detections[i]: photo
        i's boxes (fresh, or stored in its record when refine re-scores).
        """
        tags = cnn_tags(batch.probabilities, self.labelmap, self.cfg)
        if self.learned is not None:
            query = train.Features(batch.embeddings, colours, batch.probabilities)
            scores = self.learned.scores(query, [r.path if r else None for r in records])
            exclude = [[*r.user, *r.negatives] if r else [] for r in records]
            cfg = self.tagprop_cfg
            mine = learned_tags(scores, self.learned.tags, cfg.threshold, cfg.max_tags, exclude)
            tags = [merge(c, m) for c, m in zip(tags, mine, strict=True)]
        if self.detector is not None and detections:
            threshold, name = self.detector.cfg.threshold, self.detector.name
            tags = [
                detect.merge(
                    t,
                    detect.detection_tags([b for b in d if b.model == name], threshold),
                    self.cfg.max_tags,
                )
                for t, d in zip(tags, detections, strict=True)
            ]
        for s in self.specialists if detections else ():
            threshold = self.specialists_cfg.threshold
            tags = [
                specialist.overrule(
                    t, specialist.species_tags(d, s.name, threshold), s.domain, self.cfg.max_tags
                )
                for t, d in zip(tags, detections, strict=True)
            ]
        return [vocabulary.apply(t, self.vocab) for t in tags]

    @property
    def letterbox(self) -> int:
        """The detector's input side, for decode to prepare beside the classifier's; 0: none."""
        return self.detector.input_size if self.detector is not None else 0

    @property
    def picture(self) -> int:
        """The side of the picture decode keeps for the face stage; 0: no face stage."""
        return self.faces_cfg.picture_px if self.faces is not None else 0

    def analyse(
        self, photos: Sequence[Decoded], records: Sequence[PhotoRecord | None] = ()
    ) -> Analysis:
        """Run every stage on decoded photos, batched per model: outputs, boxes and tags."""
        pixels = np.stack([d.pixels for d in photos])
        batch = self.model.run(pixels)
        colours = np.stack([d.colour for d in photos])
        frames = [d.letterbox for d in photos]
        boxes: list[list[Detection]] = [[] for _ in photos]
        if self.detector is not None and all(f is not None for f in frames):
            boxes = self.detector.run(frames)  # type: ignore[arg-type]
        if self.specialists:
            scores = labels.path_scores(batch.probabilities, self.labelmap)
            cfg = self.specialists_cfg
            gates = [
                specialist.gate_scores(scores, self.labelmap.paths, boxes, s.domain) >= cfg.gate
                for s in self.specialists
            ]
            for s, gate in zip(self.specialists, gates, strict=True):
                for row, found in zip(boxes, s.run(pixels, gate, cfg.keep), strict=True):
                    row.extend(found)
        found = [
            self.faces.find(d.picture, self.faces_cfg.min_score)
            if self.faces is not None and d.picture is not None
            else []
            for d in photos
        ]
        return Analysis(batch, boxes, self.tags(batch, colours, records, boxes), found)

    def use(self, digest: str, learned: train.Learned | None) -> None:
        """Tag with this learned model from now on (None: the CNN alone)."""
        self.learned = learned
        self.version = replace(
            self.version,
            tagprop=digest if learned is not None else "",
            thresholds=self._settings_hash(),
        )

    def _settings_hash(self) -> str:
        return settings_hash(
            self.cfg,
            self.tagprop_cfg if self.learned is not None else None,
            self.detector.cfg if self.detector is not None else None,
            self.vocab,
            self.places_cfg,
            self.specialists_cfg if self.specialists else None,
            self.flat_ancestors,
        )


def load(cfg: Config) -> Tagger:
    """Resolve the configured model from the installed ones and open its session.

    The active TagProp model of this backbone comes along; one trained on another
    backbone's embeddings does not fit, and the CNN tags alone until `phototag train`.
    """
    installed = catalogue.resolve(cfg.model.name, cfg.model.version)
    spec = installed.spec
    model = Model(installed.path, spec.input.name, spec.input.size, cfg.model.providers)
    dim = next((o.shape[-1] for o in model.session.get_outputs() if o.name == "embedding"), None)
    if not isinstance(dim, int):
        raise InferenceError(f"{installed.path}: the model has no fixed-size embedding output")
    labelmap = labels.load(spec.labels)
    specialists = specialist.load(cfg, spec.input.size)
    try:
        detector = detect.load(cfg)
    except catalogue.ModelMissing as exc:  # "when installed": the classifier alone still tags
        detector = None
        log.info("no object detection: %s", exc)
    try:
        face_models = face_stage.load(cfg)
    except catalogue.ModelMissing as exc:  # switched on, not installed: say so, tag without
        face_models = None
        log.warning("faces are on but not found: %s", exc)
    try:
        vocab = vocabulary.Vocabulary.load(cfg.tags)
    except vocabulary.VocabularyError as exc:
        raise InferenceError(str(exc)) from None
    version = ModelVersion(
        backbone=spec.ref,
        backbone_sha256=spec.sha256,
        labelmap=labelmap.version,
        detector=detector.ref if detector is not None else "",
        specialists=specialist.version(specialists, cfg.specialists),
    )
    stores = train.Stores(spec.sha256[:12], dim, labelmap.n_outputs)
    tagger = Tagger(
        model,
        labelmap,
        version,
        stores,
        cfg.tagging,
        cfg.tagprop,
        None,
        detector,
        vocab,
        cfg.places,
        specialists,
        cfg.specialists,
        face_models,
        cfg.faces,
        cfg.write.flat_ancestors,
    )
    tagger.use(*(train.active(stores.backbone) or ("", None)))
    return tagger
