"""People: the names on faces, kept in the index and written where photo managers read them.

The glue between the index's faces, the naming maths of learn/faces.py and the file side
(files/regions.py). A face is named by the user (`phototag faces name`, source `user`), by
the user in another program (a named MWG region in the file, source `file`), or by our vote
over the faces of both kinds (`propagated`). Only the first and the last are written as our
regions; the user's regions are theirs and stay as they are. `refresh` re-votes every face
the user did not name, groups the unnamed ones, and rewrites the photos whose names changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from phototag.config import Config
from phototag.files import metadata, regions
from phototag.files.regions import Region
from phototag.learn import faces as naming
from phototag.library.index import Index
from phototag.records import LEVEL_SEP, FaceRecord

log = logging.getLogger(__name__)

USERS = ("user", "file")  # sources of the user's own namings: they train, and are never re-voted
EMBED_DIM = 1024  # FaceRes descriptors


@dataclass(frozen=True)
class Group:
    """A group of similar unnamed faces, shown by the face nearest its mean."""

    id: int
    size: int
    photo: str  # representative
    face: int  # its number in that photo


@dataclass(frozen=True)
class Match:
    """A face like the one asked about."""

    photo: str
    face: int
    similarity: float
    name: str


def check_name(name: str) -> str:
    """A person's name as written into files: one line, no hierarchy separator."""
    clean = " ".join(name.split())
    if not clean or LEVEL_SEP in clean or "\0" in clean:
        raise ValueError(f"{name!r} cannot be a person's name (empty, or holds {LEVEL_SEP!r})")
    return clean


def area(face: FaceRecord) -> tuple[float, float, float, float]:
    """The face's box as an MWG area: centre x, y and width, height, fractions of the photo."""
    x1, y1, x2, y2 = face.box
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def ours(faces: Iterable[FaceRecord]) -> list[Region]:
    """The regions we write for a photo's faces: named through phototag, not in the file already."""
    return [
        Region(f.name, *area(f), ours=True)
        for f in faces
        if f.name and f.source not in ("", "file")
    ]


def from_file(
    faces: list[FaceRecord], theirs: Iterable[Region], persons: Iterable[str] = ()
) -> list[FaceRecord]:
    """Faces named by the user's own regions (another program's): the region's centre lies in
    the face's box, the nearest face centre winning; such a face is the user's naming. A name
    in the user's PersonInImage without a region names the photo's face only when it is the
    one name left and the one face left (anything else would be a guess)."""
    out = list(faces)
    for region in theirs:
        if region.ours:
            continue
        inside = [
            i
            for i, f in enumerate(out)
            if f.box[0] <= region.x <= f.box[2] and f.box[1] <= region.y <= f.box[3]
        ]
        if inside:
            i = min(
                inside, key=lambda i: np.hypot(*np.subtract(area(out[i])[:2], (region.x, region.y)))
            )
            out[i] = replace(out[i], name=region.name, source="file", similarity=1.0)
    left = [n for n in dict.fromkeys(persons) if n not in {f.name for f in out}]
    nameless = [i for i, f in enumerate(out) if not f.name]
    if len(left) == 1 and len(nameless) == 1:
        out[nameless[0]] = replace(out[nameless[0]], name=left[0], source="file", similarity=1.0)
    return out


@dataclass
class Known:
    """The faces the user named, ready to vote on new ones."""

    embeddings: np.ndarray
    names: list[str]
    threshold: float

    @classmethod
    def load(cls, index: Index, store: str) -> Known:
        named = [f for f in index.faces() if f.store == store and f.source in USERS]
        vectors = index.face_vectors(named, EMBED_DIM)
        names = [f.name for f in named]
        return cls(vectors, names, naming.calibrate(vectors, names))

    def name(self, faces: list[FaceRecord], vectors: np.ndarray) -> list[FaceRecord]:
        """`faces` of one photo, the nameless ones named by the vote where it is sure enough."""
        open_ = [i for i, f in enumerate(faces) if not f.name]
        taken = {(f.photo, f.name) for f in faces if f.name}
        proposals = naming.propose(
            vectors[open_],
            self.embeddings,
            self.names,
            self.threshold,
            [faces[i].not_names for i in open_],
            [faces[i].photo for i in open_],
            taken,
        )
        out = list(faces)
        for i, p in zip(open_, proposals, strict=True):
            if p.name:
                out[i] = replace(
                    out[i], name=p.name, source="propagated", similarity=round(p.similarity, 4)
                )
        return out


def propagate(faces: list[FaceRecord], vectors: np.ndarray) -> list[FaceRecord]:
    """The faces whose voted name changes, given the user's namings among `faces` (pure)."""
    mine = [i for i, f in enumerate(faces) if f.source in USERS]
    rest = [i for i, f in enumerate(faces) if f.source not in USERS]
    names = [faces[i].name for i in mine]
    threshold = naming.calibrate(vectors[mine], names)
    proposals = naming.propose(
        vectors[rest],
        vectors[mine],
        names,
        threshold,
        [faces[i].not_names for i in rest],
        [faces[i].photo for i in rest],
        {(faces[i].photo, faces[i].name) for i in mine},
    )
    changed = []
    for i, p in zip(rest, proposals, strict=True):
        face = faces[i]
        new = replace(
            face,
            name=p.name or "",
            source="propagated" if p.name else "",
            similarity=round(p.similarity, 4) if p.name else 0.0,
        )
        if (new.name, new.source) != (face.name, face.source):
            changed.append(new)
    return changed


def regroup(faces: list[FaceRecord], vectors: np.ndarray, threshold: float) -> list[FaceRecord]:
    """The unnamed faces not grouped yet, each put in a group (pure; learn/faces.assign_groups)."""
    unnamed = [i for i, f in enumerate(faces) if not f.name]
    grouped = [i for i in unnamed if faces[i].group]
    new = [i for i in unnamed if not faces[i].group]
    if not new:
        return []
    ids = sorted({faces[i].group for i in grouped})
    column = {g: j for j, g in enumerate(ids)}
    sums = np.zeros((len(ids), vectors.shape[1]))
    np.add.at(sums, [column[faces[i].group] for i in grouped], vectors[grouped])
    labels = naming.assign_groups(vectors[new], sums, threshold)
    first = max((f.group for f in faces), default=0) + 1
    return [
        replace(faces[i], group=ids[label] if label < len(ids) else first + label - len(ids))
        for i, label in zip(new, labels.tolist(), strict=True)
    ]


def groups(faces: list[FaceRecord], vectors: np.ndarray) -> list[Group]:
    """The groups of unnamed faces, largest first, each shown by its most typical face (pure)."""
    members: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        if not f.name and f.group:
            members.setdefault(f.group, []).append(i)
    out = []
    for gid, rows in members.items():
        mean = naming.unit(vectors[rows].mean(0))
        best = rows[int(np.argmax(vectors[rows] @ mean))]
        out.append(Group(gid, len(rows), faces[best].photo, faces[best].number))
    return sorted(out, key=lambda g: (-g.size, g.id))


def group_members(faces: list[FaceRecord], group: int) -> list[FaceRecord]:
    """The unnamed faces of one group (pure): what naming a group names."""
    return [f for f in faces if f.group == group and not f.name]


def similar(
    faces: list[FaceRecord], vectors: np.ndarray, query: np.ndarray, limit: int
) -> list[Match]:
    """The faces most like `query` (an embedding), best first (pure)."""
    sims = vectors @ query
    order = np.argsort(-sims, kind="stable")[:limit]
    return [
        Match(faces[i].photo, faces[i].number, round(float(sims[i]), 4), faces[i].name)
        for i in order
    ]


# ---- with the index and the files --------------------------------------------------------


def faces_of(index: Index, store: str) -> list[FaceRecord]:
    """Every face of one embedder's store (names are compared within one store)."""
    return [f for f in index.faces() if f.store == store]


def store_faces(index: Index, store: str) -> tuple[list[FaceRecord], np.ndarray]:
    """Every face of one embedder's store and its embeddings."""
    faces = faces_of(index, store)
    return faces, index.face_vectors(faces, EMBED_DIM)


def write(index: Index, paths: Iterable[str], cfg: Config) -> list[str]:
    """Our regions, names and People keywords into each photo as the index has them, and the
    record refreshed from the file; returns one error line per photo that failed."""
    from phototag.pipeline.runner import on_disk  # the runner calls us: import when used

    errors = []
    for path in sorted(set(paths)):
        record = index.get(path)
        if record is None:
            continue
        faces = index.faces(path)
        try:
            if record.width and record.height:
                regions.write(
                    Path(path),
                    ours(faces),
                    (record.width, record.height),
                    cfg.write,
                    cfg.faces.keyword_prefix,
                    cfg.scan.max_file_bytes,
                )
            on_file = on_disk(record, cfg.write, max_bytes=cfg.scan.max_file_bytes)
            index.put(replace(on_file, people=names(faces)))
        except (metadata.MetadataError, OSError, ValueError) as exc:
            errors.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return errors


def names(faces: Iterable[FaceRecord]) -> list[str]:
    """The people on a photo's faces, each once, as search finds them."""
    return list(dict.fromkeys(f.name for f in faces if f.name))


def refresh(index: Index, cfg: Config, store: str, also: Iterable[str] = ()) -> list[str]:
    """Re-vote every face the user did not name, group new unnamed faces, write the photos
    whose names changed (and `also`); returns error lines."""
    faces, vectors = store_faces(index, store)
    changed = propagate(faces, vectors)
    by_id = {f.id: f for f in faces} | {f.id: f for f in changed}
    current = list(by_id.values())
    rows = {f.id: i for i, f in enumerate(faces)}
    grouped = regroup(current, vectors[[rows[f.id] for f in current]], cfg.faces.group_similarity)
    index.update_faces(list(({f.id: f for f in changed} | {f.id: f for f in grouped}).values()))
    return write(index, [f.photo for f in changed] + list(also), cfg)


def name(index: Index, faces: list[FaceRecord], who: str, cfg: Config, store: str) -> list[str]:
    """The user names these faces `who`; the name then propagates. Returns error lines."""
    who = check_name(who)
    index.update_faces(
        [
            replace(
                f,
                name=who,
                source="user",
                similarity=1.0,
                not_names=[n for n in f.not_names if n != who],
            )
            for f in faces
        ]
    )
    return refresh(index, cfg, store, [f.photo for f in faces])


def refuse(index: Index, face: FaceRecord, who: str, cfg: Config, store: str) -> list[str]:
    """The user says this face is not `who`: a negative; a name `who` on it goes."""
    who = check_name(who)
    cleared = face.name == who
    index.update_faces(
        [
            replace(
                face,
                not_names=list(dict.fromkeys([*face.not_names, who])),
                name="" if cleared else face.name,
                source="" if cleared else face.source,
                similarity=0.0 if cleared else face.similarity,
            )
        ]
    )
    return refresh(index, cfg, store, [face.photo])


def forget(index: Index, cfg: Config) -> tuple[int, list[str]]:
    """Every face record gone, and our regions with them; the user's regions stay."""
    paths = {f.photo for f in index.faces()}
    count = index.forget_faces()
    return count, write(index, paths, cfg)
