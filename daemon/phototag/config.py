"""Settings: documented defaults in `config.yaml`, overridden by the user's file.

The dataclass defaults below are the single source of truth; tests check that the
shipped `config.yaml` says the same. Unknown keys and wrong types are errors with the
key's dotted name, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from phototag import paths

IMAGE_EXTENSIONS = [
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".heic",
    ".heif",
]


class ConfigError(ValueError):
    """A setting is missing, misspelt or of the wrong type."""


@dataclass
class ModelConfig:
    name: str = "mobilenet-v2"  # catalogue name
    version: str | None = None  # None: the newest installed version of that name
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = 16


@dataclass
class TaggingConfig:
    threshold: float = 0.2  # an auto-tag needs at least this score
    max_tags: int = 5  # most auto-tags per photo, leaf tags counted
    ancestors: bool = True  # also write "animal" and "mammal" for "animal|mammal|cat"


@dataclass
class DetectorConfig:
    enabled: bool = True  # run the object detector beside the classifier, when it is installed
    name: str = "coco-nanodet"  # catalogue name of a model of kind detector
    threshold: float = 0.35  # a detected class becomes a tag at this score
    keep: float = 0.3  # boxes stored in the index from this score (refine can go this low)
    iou: float = 0.6  # non-maximum suppression: overlap at which a box of the same class goes


@dataclass
class TagsConfig:
    """The vocabulary the user controls; applied last, to every source of auto tags."""

    exclude: list[str] = field(default_factory=list)  # tags or subtrees never written
    # broad roots not written as keywords of their own (alone or as a parent); paths keep them
    generic: list[str] = field(default_factory=lambda: ["object", "place", "clothing"])
    rename: dict[str, str] = field(default_factory=dict)  # tag or path -> the user's path
    thresholds: dict[str, float] = field(default_factory=dict)  # tag -> its own minimum score
    translations: str | None = None  # TSV file: word<TAB>word in your language, one a line


@dataclass
class WriteConfig:
    mode: Literal["auto", "inplace", "sidecar"] = "auto"  # auto: in the file where we can
    sidecar_name: Literal["append", "replace"] = "append"  # IMG.JPG.xmp or IMG.xmp
    dry_run: bool = False


@dataclass
class ScanConfig:
    extensions: list[str] = field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    follow_symlinks: bool = False
    workers: int = 0  # decode threads; 0: one per core
    max_pixels: int = 200_000_000  # larger images are refused as decompression bombs


@dataclass
class IndexConfig:
    path: str | None = None  # None: $XDG_STATE_HOME/phototag/index
    backend: Literal["sqlite", "tinydb"] = "sqlite"  # tinydb: one JSON file, one writer at a time


@dataclass
class FetchConfig:
    max_bytes: int = 50_000_000
    timeout_s: float = 20.0
    allow_private: bool = False  # allow loopback/private/link-local URLs


@dataclass
class WatchConfig:
    folders: list[str] = field(default_factory=list)
    recursive: bool = True
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    settle_s: float = 2.0  # a file must keep its size and mtime this long before tagging
    poll: bool = False  # force polling (network filesystems)
    poll_interval_s: float = 10.0  # how often a polled folder is re-listed


@dataclass
class TagPropConfig:
    """Learning the user's own keywords (`phototag train`); see train.py."""

    min_examples: int = 5  # a keyword of yours is learned once this many photos carry it
    threshold: float = 0.5  # propose a learned keyword when its probability is at least this
    max_tags: int = 3  # most learned keywords proposed per photo
    k: int = 40  # neighbours each photo is compared with
    background: int = 1000  # photos without keywords of yours sampled as negatives
    retrain_after: int = 20  # the service retrains after this many new keywords (or 10 %)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tagging: TaggingConfig = field(default_factory=TaggingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tags: TagsConfig = field(default_factory=TagsConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    tagprop: TagPropConfig = field(default_factory=TagPropConfig)
    source: Path | None = None  # the file these settings came from, if any

    @property
    def index_dir(self) -> Path:
        return (
            Path(self.index.path).expanduser() if self.index.path else paths.state_dir() / "index"
        )


def default_path() -> Path:
    return Path(os.environ.get("PHOTOTAG_CONFIG") or paths.config_dir() / "config.yaml")


def load(path: Path | None = None) -> Config:
    """Read settings from `path`, $PHOTOTAG_CONFIG or the XDG config file; defaults if none."""
    explicit = path is not None or "PHOTOTAG_CONFIG" in os.environ
    path = path or default_path()
    if not path.exists():
        if explicit:
            raise ConfigError(f"{path}: config file not found")
        return Config()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    config = _build(Config, raw, str(path))
    config.source = path
    return config


def _build(cls: type, raw: dict[str, Any], where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {prefix}{unknown[0]} (known: {', '.join(sorted(known))})"
        )
    values = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must be a mapping")
            values[name] = _build(hint, value, where, f"{key}.")
        else:
            values[name] = _check(hint, value, where, key)
    return cls(**values)


def _check(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{where}: {key} must be one of {', '.join(map(str, args))}, not {value!r}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check(next(a for a in args if a is not type(None)), value, where, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list")
        return [_check(args[0], v, where, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping")
        return {
            _check(args[0], k, where, key): _check(args[1], v, where, f"{key}.{k}")
            for k, v in value.items()
        }
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be {hint.__name__}, not {value!r}")
    return value
