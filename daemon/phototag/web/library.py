"""What the web app does with the library; the pages and the JSON API share these functions.

Every keyword change goes through the file-tag layer the CLI uses (`suggest.accept`,
`metadata.remove`), then the index is brought up to the file, as the CLI does. A photo is
served only when it is indexed and its real location (symlinks resolved) lies in a watched
folder or in the folder it was indexed in: a symlink swapped in later, or a made-up path, is
refused.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from PIL import Image

from phototag import catalogue
from phototag.config import Config
from phototag.files import fileio, metadata
from phototag.learn import suggest, train
from phototag.library import people, query
from phototag.library.index import Index, PhotoRecord
from phototag.library.tagindex import Filter, SourceFilter, date_bound
from phototag.pipeline import faces as face_stage
from phototag.pipeline import fetch
from phototag.pipeline.infer import InferenceError
from phototag.pipeline.runner import Pipeline, on_disk, tag_bytes, with_keywords
from phototag.pipeline.tagger import Tagger
from phototag.records import LEVEL_SEP, Detection, FaceRecord, Outcome, Tag

PAGE_SIZE = 60
_UNSAFE = re.compile(r"[^\w.\- ]+")  # kept out of saved file names
REVIEW_SIZE = 40  # suggestions on a page of the review queue
REVIEW_CHUNK = 500  # photos scored at a time while filling it
FACETS = 40  # tag names listed beside the grid
MAX_KEYWORD = 200
Action = Literal["accept", "reject", "remove", "add"]
NO_LEARNED_MODEL = (
    "no learned model yet: `phototag train` learns your keywords (TagProp) once "
    "enough photos carry them; then they are proposed here"
)


class NotServed(Exception):
    """The path is not a photo of the library (or is outside its folders)."""


class BadRequest(ValueError):
    """A query, keyword or upload the user can fix; one line."""


@dataclass(frozen=True)
class Page:
    query: str
    total: int
    page: int
    pages: int
    paths: list[str]
    facets: list[tuple[str, int]] = field(default_factory=list)  # (tag name, photos), most first


@dataclass(frozen=True)
class Keywords:
    """A photo's keywords, grouped as the photo page shows them."""

    path: str
    yours: list[str]
    ours: list[Tag]  # with their scores
    model_version: str | None
    deleted: list[str]  # ours that the user deleted or rejected: never added again
    suggested: list[suggest.Suggestion] = field(default_factory=list)
    taken: str | None = None
    width: int = 0
    height: int = 0
    detections: list[Detection] = field(default_factory=list)  # boxes as fractions of the photo
    # Ours that TagProp learned from the user's keywords (kept out of `ours`); the index keeps
    # no source for them, so they are told apart by the active learned model's vocabulary.
    learned: list[Tag] = field(default_factory=list)
    learned_note: str = ""  # why there are none, when there can be none
    faces: list[FaceRecord] = field(default_factory=list)  # when faces are on; boxes as fractions


def narrowed(text: str, name: str) -> str | None:
    """The query `text` narrowed to photos tagged `name` (a facet clicked); None when the query
    language cannot quote the name."""
    if '"' in name:
        return None
    term = f'"{name}"'
    return f"({text.strip()}) AND {term}" if text.strip() else term


@dataclass(frozen=True)
class Review:
    """A page of the review queue; `after` continues it (None: the queue ends here)."""

    suggestions: list[suggest.Suggestion]
    after: str | None
    note: str = ""


@dataclass(frozen=True)
class Tagging:
    """What tagging a photo from outside found, and where it was saved, if it was."""

    outcome: Outcome
    saved: Path | None = None


def file_name(name: str, data: bytes) -> str:
    """A plain file name for a photo from outside (an upload's name or a URL's last part):
    no folders, no hidden files, the image format's extension when it has none."""
    raw = unquote(urlsplit(name).path) if name.startswith(("http://", "https://")) else name
    stem = _UNSAFE.sub("_", PurePosixPath(raw).name).lstrip("._")
    if not stem:
        stem = "photo"
    if not PurePosixPath(stem).suffix:
        with contextlib.suppress(OSError, ValueError), Image.open(io.BytesIO(data)) as img:
            stem += f".{(img.format or 'jpeg').lower().replace('jpeg', 'jpg')}"
    return stem[:120]


def unique_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `name-1`, `name-2`, ... when that is taken: nothing is overwritten."""
    path, stem, suffix = folder / name, Path(name).stem, Path(name).suffix
    n = 0
    while path.exists() or path.is_symlink():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def parse_tag(text: str) -> Tag:
    """A keyword or `a|b|c` path typed by the user; BadRequest when it cannot be one."""
    text = text.strip()
    levels = text.split(LEVEL_SEP)
    if not text or len(text) > MAX_KEYWORD or not all(level.strip() for level in levels):
        raise BadRequest(
            f"{text[:40]!r}: a keyword is 1 to {MAX_KEYWORD} characters, no empty level"
        )
    if not text.isprintable():
        raise BadRequest("a keyword has no control characters")
    return Tag(text, 1.0, "user")


class WebLibrary:
    """The index (shared with the service when it runs), the settings, a tagger loaded on need."""

    def __init__(self, cfg: Config, index: Index, load_tagger: Callable[[], Tagger]) -> None:
        self.cfg = cfg
        self.index = index
        self._load_tagger = load_tagger
        self._tagger: Tagger | None = None
        self._lock = threading.Lock()  # one keyword change or tagging at a time

    def tagger(self) -> Tagger:
        with self._lock:
            if self._tagger is None:
                self._tagger = self._load_tagger()
            return self._tagger

    # --- reading ---------------------------------------------------------------------------

    def search(
        self,
        text: str = "",
        page: int = 1,
        folder: str | None = None,
        source: SourceFilter = "any",
        taken_from: str = "",
        taken_to: str = "",
    ) -> Page:
        """A page of the photos matching a `phototag search` query (empty: all), sorted by path,
        with the tag facets of all of them. Dates mean what `search --from/--to` mean."""
        try:
            node = query.parse(text) if text.strip() else None
            flt = Filter(
                source=source,
                folder=os.path.abspath(folder) if folder else None,
                taken_from=date_bound(taken_from) if taken_from.strip() else None,
                taken_before=date_bound(taken_to, end=True) if taken_to.strip() else None,
            )
        except query.QueryError as exc:
            raise BadRequest(f"search: {exc}") from None
        except (ValueError, OverflowError) as exc:
            raise BadRequest(str(exc)) from None
        page = max(page, 1)
        found = self.index.browse(node, flt, (page - 1) * PAGE_SIZE, PAGE_SIZE, FACETS)
        pages = max(1, -(-found.total // PAGE_SIZE))
        if page > pages:  # past the end: the last page
            page = pages
            found = self.index.browse(node, flt, (page - 1) * PAGE_SIZE, PAGE_SIZE, FACETS)
        return Page(text, found.total, page, pages, found.paths, found.facets)

    @property
    def limit(self) -> int:
        """The largest file the file-tag layer reads (scan.max_file_bytes, as everywhere)."""
        return self.cfg.scan.max_file_bytes

    def record(self, path: str) -> PhotoRecord:
        """The index record of a photo the app may serve; NotServed otherwise."""
        if not path or "\0" in path or not os.path.isabs(path) or ".." in Path(path).parts:
            raise NotServed(path)
        record = self.index.get(path)
        if record is None:
            raise NotServed(path)
        real = os.path.realpath(record.path)
        folders = [*self.cfg.watch.folders, os.path.dirname(record.path)]
        roots = [os.path.realpath(os.path.expanduser(f)) for f in folders]
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots):
            raise NotServed(path)
        if not os.path.isfile(real):
            raise NotServed(path)
        return record

    def keywords(self, path: str, with_suggestions: bool = True) -> Keywords:
        record = self.record(path)
        try:
            found = metadata.read(Path(record.path), self.cfg.write, self.limit)
        except metadata.MetadataError as exc:
            raise BadRequest(str(exc)) from None
        tagger = self._usable_tagger()
        suggested = self._suggestions(tagger, record, found) if with_suggestions else []
        vocabulary = set(tagger.learned.tags) if tagger and tagger.learned else set()
        note = "" if vocabulary else NO_LEARNED_MODEL
        return Keywords(
            record.path,
            found.user_keywords,
            [t for t in found.ours if t.path not in vocabulary],
            found.model_version,
            found.removed_by_user,
            suggested,
            record.taken,
            record.width,
            record.height,
            record.detections,
            [t for t in found.ours if t.path in vocabulary],
            note,
            self.index.faces(record.path),
        )

    def _usable_tagger(self) -> Tagger | None:
        try:
            return self.tagger()
        except (catalogue.CatalogueError, InferenceError, train.TrainError):
            return None  # no usable model: the pages work without suggestions

    def _suggestions(
        self, tagger: Tagger | None, record: PhotoRecord, found: metadata.FileKeywords
    ) -> list[suggest.Suggestion]:
        """`phototag suggest` for this photo; none when no model or no stored scores."""
        if tagger is None or not all(s in record.vectors for s in tagger.rescore_stores):
            return []
        current = with_keywords(record, found)
        return suggest.suggest([current], suggest.learned_scores(self.index, tagger))

    def review(self, after: str = "", limit: int = REVIEW_SIZE) -> Review:
        """The next suggestions across the library (`phototag suggest`), photos in path order
        after `after`, scored a chunk at a time so a page costs the photos it looks at.

        Keywords come from the index, which every change here and the service bring up to the
        file; reading 100 000 files' metadata for one page would not be fast.
        """
        tagger = self._usable_tagger()
        if tagger is None:
            return Review([], None, "no model installed: `phototag models install`")
        scores = suggest.learned_scores(self.index, tagger)
        paths = self.index.search(None)
        at = bisect.bisect_right(paths, after) if after else 0
        found: list[suggest.Suggestion] = []
        while at < len(paths) and len(found) < limit:
            chunk = [r for p in paths[at : at + REVIEW_CHUNK] if (r := self.index.get(p))]
            at += REVIEW_CHUNK
            scored = [r for r in chunk if all(s in r.vectors for s in tagger.rescore_stores)]
            found += suggest.suggest(scored, scores)
        if len(found) > limit:
            last = found[limit - 1].path
            return Review([s for s in found if s.path <= last], last)  # a photo's stay together
        return Review(found, paths[at - 1] if at < len(paths) else None)

    # --- changing --------------------------------------------------------------------------

    def change(self, path: str, action: Action, text: str) -> Keywords:
        """Accept or add a keyword as the user's, reject one (a negative), or remove one."""
        record = self.record(path)
        tag = parse_tag(text)
        photo = Path(record.path)
        with self._lock:
            try:
                if action in ("accept", "add"):
                    suggest.accept(photo, tag, self.index, self.cfg.write, self.limit)
                else:
                    negative = action == "reject"
                    metadata.remove(photo, tag, self.cfg.write, negative, self.limit)
                    self.index.put(on_disk(record, self.cfg.write, max_bytes=self.limit))
            except (metadata.MetadataError, OSError) as exc:
                raise BadRequest(str(exc).splitlines()[0]) from None
            self.index.flush()
        return self.keywords(record.path)

    # --- people ----------------------------------------------------------------------------

    def face_groups(self, limit: int = 24) -> list[people.Group]:
        """Groups of similar unnamed faces for the review queue, largest first; none when
        faces are off or their embedder is not installed."""
        store = self._face_store()
        if store is None:
            return []
        faces, vectors = people.store_faces(self.index, store)
        return people.groups(faces, vectors)[:limit]

    def name_group(self, group: int, who: str) -> int:
        """Name every face of an unnamed group (then the name propagates, as `faces name`);
        returns how many faces were named."""
        store = self._face_store()
        if store is None:
            raise BadRequest("faces are off (faces.enabled) or their models are not installed")
        try:
            who = people.check_name(who)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        with self._lock:
            chosen = people.group_members(people.faces_of(self.index, store), group)
            if not chosen:
                raise BadRequest(f"no group {group} of unnamed faces")
            errors = people.name(self.index, chosen, who, self.cfg, store)
        if errors:
            raise BadRequest(errors[0])
        return len(chosen)

    def _face_store(self) -> str | None:
        if not self.cfg.faces.enabled:
            return None
        try:
            return face_stage.installed_store()
        except catalogue.CatalogueError:
            return None

    # --- tagging from outside ----------------------------------------------------------------

    def watched(self, folder: str) -> Path:
        """`folder` if it is one of `watch.folders` (symlinks resolved); BadRequest otherwise."""
        usable = folder.strip() and "\x00" not in folder  # a NUL byte is no path on any OS
        real = os.path.realpath(os.path.expanduser(folder)) if usable else ""
        for watched in self.cfg.watch.folders:
            if (
                real
                and real == os.path.realpath(os.path.expanduser(watched))
                and os.path.isdir(real)
            ):
                return Path(real)
        raise BadRequest(f"{folder[:200]!r}: not a watched folder (watch.folders)")

    def tag_upload(self, name: str, data: bytes, save_to: str = "") -> Tagging:
        """Tags for a photo from outside; with `save_to` (a watched folder) it is first saved
        there under a new name, then tagged there like any photo of the library."""
        if len(data) > self.cfg.web.max_upload_bytes:
            raise BadRequest(f"{name}: more than {self.cfg.web.max_upload_bytes} bytes")
        folder = self.watched(save_to) if save_to else None
        tagger = self.tagger()
        with self._lock:
            outcome = tag_bytes(name, data, tagger, self.cfg)
            if folder is None or outcome.error:
                return Tagging(outcome)  # not an image we can read: nothing is saved
            path = unique_path(folder, file_name(name, data))
            try:
                fileio.atomic_write(path, data)
            except OSError as exc:
                raise BadRequest(f"{path}: {exc.strerror or exc}") from None
            return Tagging(Pipeline(self.cfg, tagger, self.index).run([path])[0], path)

    def tag_url(self, url: str, save_to: str = "") -> Tagging:
        if not url.startswith(("http://", "https://")):
            raise BadRequest(f"{url[:80]!r}: only http(s) URLs")
        f = self.cfg.fetch
        try:
            data = fetch.fetch(url, f.max_bytes, f.timeout_s, f.allow_private)
        except fetch.FetchError as exc:
            raise BadRequest(str(exc)) from None
        return self.tag_upload(url, data, save_to)
