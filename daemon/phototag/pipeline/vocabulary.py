"""The vocabulary the user controls: which auto tags are written, under which words.

Applied last, to the tags of every model and of TagProp alike, so a setting means the same
whatever proposed the tag. The settings are part of the model version (`digest`), so
`refine` re-applies a change to photos tagged before it, from stored outputs, no decoding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from phototag.config import TagsConfig
from phototag.records import LEVEL_SEP, Tag


class VocabularyError(ValueError):
    """A translation table cannot be read or is malformed; one line for the user."""


@dataclass(frozen=True)
class Vocabulary:
    """The `tags:` settings with the translation table they name, read once."""

    cfg: TagsConfig = field(default_factory=TagsConfig)
    translations: dict[str, str] = field(default_factory=dict)  # word -> the user's word

    @classmethod
    def load(cls, cfg: TagsConfig) -> Vocabulary:
        if cfg.translations is None:
            return cls(cfg)
        path = Path(cfg.translations).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise VocabularyError(f"tags.translations: cannot read {path}: {exc}") from None
        return cls(cfg, parse_translations(text, str(path)))

    def digest(self) -> str:
        """A stable id of the settings and the table, part of the model version."""
        text = json.dumps(
            [self.cfg.exclude, self.cfg.generic, self.cfg.rename, self.cfg.thresholds],
            sort_keys=True,
            ensure_ascii=False,
        ) + json.dumps(sorted(self.translations.items()), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def parse_translations(text: str, source: str) -> dict[str, str]:
    """`word<TAB>translation` lines; blank lines and `#` comments are skipped."""
    table = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        word, sep, translation = line.partition("\t")
        if not sep or not word.strip() or not translation.strip() or LEVEL_SEP in translation:
            raise VocabularyError(f"{source} line {number}: expected word<TAB>translation")
        table[word.strip()] = translation.strip()
    return table


def translated(path: str, table: dict[str, str]) -> str:
    """Every level of a path in the user's language, where the table has it."""
    return LEVEL_SEP.join(table.get(level, level) for level in path.split(LEVEL_SEP))


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


def apply(tags: list[Tag], vocabulary: Vocabulary) -> list[Tag]:
    """Drop excluded, generic-alone and below-their-own-threshold tags, rename, translate.

    Exclusion is checked on our path and on the renamed one, so either word works. Two
    tags renamed to one path become one, at the higher score.
    """
    cfg = vocabulary.cfg
    out: dict[str, Tag] = {}
    for tag in tags:
        if tag.path in cfg.generic or tag.score < cfg.thresholds.get(tag.name, 0.0):
            continue
        path = renamed(tag.path, cfg.rename)
        if excluded(tag.path, cfg.exclude) or excluded(path, cfg.exclude):
            continue
        path = translated(path, vocabulary.translations)
        if path not in out or out[path].score < tag.score:
            out[path] = Tag(path, tag.score, tag.source)
    return sorted(out.values(), key=lambda t: -t.score)
