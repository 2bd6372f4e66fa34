"""What the web app does with the library; the pages and the JSON API share these functions.

Every keyword change goes through the file-tag layer the CLI uses (`suggest.accept`,
`metadata.remove`), then the index is brought up to the file, as the CLI does. A photo is
served only when it is indexed and its real location (symlinks resolved) lies in a watched
folder or in the folder it was indexed in: a symlink swapped in later, or a made-up path, is
refused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from phototag import catalogue
from phototag.config import Config
from phototag.files import metadata
from phototag.learn import suggest, train
from phototag.library import query
from phototag.library.index import Index, PhotoRecord
from phototag.library.tagindex import Filter, SourceFilter, date_bound
from phototag.pipeline import fetch
from phototag.pipeline.infer import InferenceError
from phototag.pipeline.runner import on_disk, tag_bytes, with_keywords
from phototag.pipeline.tagger import Tagger
from phototag.records import LEVEL_SEP, Outcome, Tag

PAGE_SIZE = 60
FACETS = 40  # tag names listed beside the grid
MAX_KEYWORD = 200
Action = Literal["accept", "reject", "remove", "add"]


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


def narrowed(text: str, name: str) -> str | None:
    """The query `text` narrowed to photos tagged `name` (a facet clicked); None when the query
    language cannot quote the name."""
    if '"' in name:
        return None
    term = f'"{name}"'
    return f"({text.strip()}) AND {term}" if text.strip() else term


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
        found = self.index.search(node, flt)
        pages = max(1, -(-len(found) // PAGE_SIZE))
        page = min(max(page, 1), pages)
        start = (page - 1) * PAGE_SIZE
        facets = self.index.facets(node, flt, FACETS)
        return Page(text, len(found), page, pages, found[start : start + PAGE_SIZE], facets)

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
            found = metadata.read(Path(record.path), self.cfg.write)
        except metadata.MetadataError as exc:
            raise BadRequest(str(exc)) from None
        suggested = self._suggestions(record, found) if with_suggestions else []
        return Keywords(
            record.path,
            found.user_keywords,
            found.ours,
            found.model_version,
            found.removed_by_user,
            suggested,
            record.taken,
            record.width,
            record.height,
        )

    def _suggestions(
        self, record: PhotoRecord, found: metadata.FileKeywords
    ) -> list[suggest.Suggestion]:
        """`phototag suggest` for this photo; none when no model or no stored scores."""
        try:
            tagger = self.tagger()
        except (catalogue.CatalogueError, InferenceError, train.TrainError):
            return []  # no usable model: the page works without suggestions
        if not all(s in record.vectors for s in tagger.rescore_stores):
            return []
        current = with_keywords(record, found)
        return suggest.suggest([current], suggest.learned_scores(self.index, tagger))

    # --- changing --------------------------------------------------------------------------

    def change(self, path: str, action: Action, text: str) -> Keywords:
        """Accept or add a keyword as the user's, reject one (a negative), or remove one."""
        record = self.record(path)
        tag = parse_tag(text)
        photo = Path(record.path)
        with self._lock:
            try:
                if action in ("accept", "add"):
                    suggest.accept(photo, tag, self.index, self.cfg.write)
                else:
                    metadata.remove(photo, tag, self.cfg.write, negative=action == "reject")
                    self.index.put(on_disk(record, self.cfg.write))
            except (metadata.MetadataError, OSError) as exc:
                raise BadRequest(str(exc).splitlines()[0]) from None
            self.index.flush()
        return self.keywords(record.path)

    # --- tagging from outside ----------------------------------------------------------------

    def tag_upload(self, name: str, data: bytes) -> Outcome:
        if len(data) > self.cfg.web.max_upload_bytes:
            raise BadRequest(f"{name}: more than {self.cfg.web.max_upload_bytes} bytes")
        tagger = self.tagger()
        with self._lock:
            return tag_bytes(name, data, tagger, self.cfg)

    def tag_url(self, url: str) -> Outcome:
        if not url.startswith(("http://", "https://")):
            raise BadRequest(f"{url[:80]!r}: only http(s) URLs")
        f = self.cfg.fetch
        try:
            data = fetch.fetch(url, f.max_bytes, f.timeout_s, f.allow_private)
        except fetch.FetchError as exc:
            raise BadRequest(str(exc)) from None
        return self.tag_upload(url, data)
