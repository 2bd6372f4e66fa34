"""Small typed records passed between pipeline stages.

watch -> queue -> decode -> infer -> tag/refine -> write metadata -> index.
Each stage takes and returns these, never dicts of dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # names only: `phototag search` loads no image library, nor numpy
    import numpy as np
    from PIL import Image

Source = Literal["user", "auto"]
# What bringing a photo's auto-tags up to the current model version costs.
Refresh = Literal["current", "rescore", "reanalyse"]

# Separator of hierarchy levels in tag paths, as Lightroom's lr:hierarchicalSubject uses it.
LEVEL_SEP = "|"


def local_time(unix: float) -> str:
    """A Unix time as ISO 8601 in local time with its offset: the one date format shown."""
    return datetime.fromtimestamp(unix).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class PhotoFile:
    """A file as found on disk; size and mtime let a re-scan skip unchanged files."""

    path: Path
    size: int
    mtime_ns: int

    @classmethod
    def stat(cls, path: Path) -> PhotoFile:
        st = path.stat()
        return cls(path, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Letterbox:
    """A photo scaled to fit a square canvas, pasted at (x0, y0), as detectors want it."""

    pixels: np.ndarray  # uint8 [S, S, 3] RGB, black around the photo
    x0: int
    y0: int
    width: int  # of the photo inside the canvas, pixels
    height: int


@dataclass(frozen=True)
class Position:
    """Where a photo was taken: WGS 84 degrees, north and east positive."""

    lat: float
    lon: float


@dataclass
class Decoded:
    """A photo decoded to the model's input, plus what later stages need of its pixels."""

    file: PhotoFile
    sha256: str  # of the file's bytes as read, before we write anything
    pixels: np.ndarray  # uint8 [H, W, 3] RGB at the model's input size
    colour: np.ndarray  # float32 colour histogram, L1-normalised (a cheap global descriptor)
    width: int  # of the original image, after EXIF orientation
    height: int
    taken: str | None = None  # EXIF DateTimeOriginal as ISO 8601, when present
    letterbox: Letterbox | None = None  # the detector's input, from the same decode
    picture: Image.Image | None = None  # the decoded photo itself, upright, when faces are on


@dataclass
class Inference:
    """What the CNN says about one photo."""

    probabilities: np.ndarray  # float32 [n_classes], softmax
    embedding: np.ndarray  # float32 [dim], L2-normalised


@dataclass(frozen=True)
class Tag:
    """One keyword with its place in the hierarchy.

    `path` is the full hierarchy ("animal|mammal|cat"); its last level is the keyword
    people search for. User tags carry score 1.0.
    """

    path: str
    score: float = 1.0
    source: Source = "auto"

    @property
    def name(self) -> str:
        return self.path.rsplit(LEVEL_SEP, 1)[-1]

    @property
    def levels(self) -> list[str]:
        return self.path.split(LEVEL_SEP)


@dataclass(frozen=True)
class Detection:
    """One object a detector found: its tag, score and box as fractions of the photo's size.

    Fractions (0..1, after EXIF orientation) survive resizes and match MWG regions' units.
    """

    path: str  # tag path, e.g. "people|person"
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of width, height
    model: str = ""  # catalogue ref of the detector


@dataclass(frozen=True)
class ModelVersion:
    """Identity of everything that decided a photo's auto-tags.

    Stored per photo, so a change of any part tells refine which photos to revisit.
    """

    backbone: str  # catalogue name + version, e.g. "mobilenet-v2@tf1-quant"
    backbone_sha256: str
    labelmap: str  # label-map version
    tagprop: str = ""  # hash of learned TagProp parameters, "" when none
    thresholds: str = ""  # hash of the tagging thresholds and the vocabulary
    detector: str = ""  # catalogue ref + sha256[:12] of the detector, "" when none ran
    specialists: str = ""  # their refs + sha256[:12] and the gate, "" when none ran

    def __str__(self) -> str:
        parts = [f"{self.backbone}:{self.backbone_sha256[:12]}", f"labels:{self.labelmap}"]
        if self.tagprop:
            parts.append(f"tagprop:{self.tagprop}")
        if self.thresholds:
            parts.append(f"thr:{self.thresholds}")
        if self.detector:
            parts.append(f"det:{self.detector}")
        if self.specialists:
            parts.append(f"spc:{self.specialists}")
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> ModelVersion | None:
        """The version `str()` wrote (the backbone sha256 cut to 12 digits); None if malformed."""
        head, *rest = text.split("/")
        backbone, _, sha = head.rpartition(":")
        parts = dict(part.partition(":")[::2] for part in rest)
        if not backbone or not sha or "labels" not in parts or set(parts) - _VERSION_PARTS:
            return None
        return cls(
            backbone,
            sha,
            parts["labels"],
            parts.get("tagprop", ""),
            parts.get("thr", ""),
            parts.get("det", ""),
            parts.get("spc", ""),
        )

    def refresh(self, old: ModelVersion | None) -> Refresh:
        """What a photo tagged by `old` needs to be tagged as by this version.

        New backbone, detector or specialist weights (or the specialists' gate, which decides
        the photos they run on) mean new model outputs: decode and infer again. A
        new label map, TagProp, thresholds or vocabulary only re-apply to the outputs stored
        at tag time (class probabilities, detections).
        """
        if old is None or (
            old.backbone,
            old.backbone_sha256[:12],
            old.detector,
            old.specialists,
        ) != (self.backbone, self.backbone_sha256[:12], self.detector, self.specialists):
            return "reanalyse"
        same = (old.labelmap, old.tagprop, old.thresholds) == (
            self.labelmap,
            self.tagprop,
            self.thresholds,
        )
        return "current" if same else "rescore"


_VERSION_PARTS = {"labels", "tagprop", "thr", "det", "spc"}


# Who named a face: the user through phototag, the user in another program (an MWG region
# read from the file), or our vote (learn/faces.py); "" while nobody has.
FaceSource = Literal["", "user", "file", "propagated"]


@dataclass
class FaceRecord:
    """One face in one photo: where it is, its embedding's row, and who it is (if known).

    `number` counts a photo's faces from 1 in the detector's order (best score first), as
    `--face N` names them; `id` is the index's own and is set by `put_faces`.
    """

    photo: str
    number: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of width, height
    landmarks: tuple[tuple[float, float], ...]  # eyes, nose, mouth, ears as fractions
    model: str  # the face models' refs and sha256[:12]
    store: str = ""  # the vector store of its embedding, and the row there
    row: int = -1
    name: str = ""
    source: FaceSource = ""
    similarity: float = 0.0  # a propagated name: similarity to the nearest face of that name
    not_names: list[str] = field(default_factory=list)  # names the user said it is not
    group: int = 0  # its group of similar unnamed faces; 0: not grouped yet
    id: int = 0

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FaceRecord:
        values = dict(doc)
        values["box"] = tuple(doc["box"])
        values["landmarks"] = tuple(tuple(p) for p in doc["landmarks"])
        return cls(**values)


@dataclass
class Outcome:
    """The result of running one photo through the pipeline, for reporting."""

    path: Path
    tags: list[Tag] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    faces: list[FaceRecord] = field(default_factory=list)  # when faces are on
    written_to: Path | None = None  # the file or sidecar that received the keywords
    skipped: str | None = None  # why nothing was done (unchanged, dry run)
    error: str | None = None  # one line, for stderr
    permanent: bool = False  # the error is in the file's bytes: trying again cannot help
    reported: bool = False  # its log line is already written (the service, at commit)

    @property
    def ok(self) -> bool:
        return self.error is None
