"""The vocabulary the user controls: which auto tags are written, under which words.

Applied last, to the tags of every model and of TagProp alike, so a setting means the same
whatever proposed the tag. The settings are part of the model version (`digest`), so
`refine` re-applies a change to photos tagged before it, from stored outputs, no decoding.
"""

from __future__ import annotations

import hashlib
import json

from phototag.config import TagsConfig
from phototag.records import LEVEL_SEP, Tag


def excluded(path: str, exclude: list[str]) -> bool:
    """An entry with levels (`animal|mammal`) drops that path's subtree; a plain word
    (`clothing`, `dog`) drops every path that has it as a level. Case does not matter."""
    levels = [level.casefold() for level in path.split(LEVEL_SEP)]
    for entry in exclude:
        wanted = [level.casefold() for level in entry.split(LEVEL_SEP)]
        if (len(wanted) == 1 and wanted[0] in levels) or levels[: len(wanted)] == wanted:
            return True
    return False


def renamed(path: str, rename: dict[str, str]) -> str:
    """The user's path for a tag: a rule for its whole path wins over one for its name."""
    if path in rename:
        return rename[path]
    return rename.get(path.rsplit(LEVEL_SEP, 1)[-1], path)


def apply(tags: list[Tag], cfg: TagsConfig) -> list[Tag]:
    """Drop excluded, generic-alone and below-their-own-threshold tags, then rename.

    Exclusion is checked on our path and on the renamed one, so either word works. Two
    tags renamed to one path become one, at the higher score.
    """
    out: dict[str, Tag] = {}
    for tag in tags:
        if tag.path in cfg.generic or tag.score < cfg.thresholds.get(tag.name, 0.0):
            continue
        path = renamed(tag.path, cfg.rename)
        if excluded(tag.path, cfg.exclude) or excluded(path, cfg.exclude):
            continue
        if path not in out or out[path].score < tag.score:
            out[path] = Tag(path, tag.score, tag.source)
    return sorted(out.values(), key=lambda t: -t.score)


def digest(cfg: TagsConfig) -> str:
    """A stable text of the settings, for the model version's settings hash."""
    text = json.dumps(
        [cfg.exclude, cfg.generic, cfg.rename, cfg.thresholds], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()[:8]
