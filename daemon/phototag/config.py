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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from phototag import paths
from phototag.files.safeopen import DEFAULT_MAX_BYTES

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
    ".avif",
]
# Camera RAW: tagged from an embedded preview, keywords always into a sidecar (never rewritten).
RAW_EXTENSIONS = [
    ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".raf", ".orf",
    ".rw2", ".pef", ".srw", ".kdc", ".3fr", ".iiq", ".mef", ".mos", ".erf", ".rwl", ".x3f",
]  # fmt: skip


class ConfigError(ValueError):
    """A setting is missing, misspelt or of the wrong type."""


def between(low: float | None = None, high: float | None = None, **more: Any) -> Any:
    """Field metadata: the range a number (each of a list's or mapping's values) must lie in,
    checked at load (`_check_range`)."""
    return {"range": (low, high), **more}


Format = Callable[[str], "str | None"]  # a value's problem, or None when it is fine


def formatted(check: Format) -> Any:
    """Field metadata: a check of a string (of each item of a list, key and string value of a
    mapping) at load, naming what the value must be (`_check_format`)."""
    return {"format": check}


def _not_empty(text: str) -> str | None:
    return "must not be empty" if not text.strip() else None


def _tag_path(text: str) -> str | None:
    if any(not level.strip() for level in text.split("|")):
        return "must be a tag or a path such as animal|bird, without an empty level"
    return None


def _one_level(text: str) -> str | None:
    return (
        "must be one tag level, not empty and without |" if _tag_path(text) or "|" in text else None
    )


def _host_port(text: str) -> str | None:
    """host:port or [v6]:port, as the web server reads it."""
    host, sep, port = text.rpartition(":")
    if sep and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536:
        return None
    return "must be host:port with a port from 1 to 65535, e.g. 127.0.0.1:8765"


@dataclass
class ModelConfig:
    name: str = field(default="mobilenet-v2", metadata=formatted(_not_empty))  # catalogue name
    # None: the newest installed version of that name
    version: str | None = field(default=None, metadata=formatted(_not_empty))
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = field(default=16, metadata=between(1, 1024))


@dataclass
class TaggingConfig:
    threshold: float = field(
        default=0.2, metadata=between(0, 1)
    )  # an auto-tag needs at least this score
    max_tags: int = field(
        default=5, metadata=between(0, 1000)
    )  # most auto-tags per photo, leaf tags counted


@dataclass
class DetectorConfig:
    enabled: bool = True  # run the object detector beside the classifier, when it is installed
    # catalogue name (the preferred installed version runs) or name@version of a detector;
    # coco-nanodet@g-416-int8 halves its CPU time for a little quality (docs/benchmarks.md)
    name: str = field(default="coco-nanodet", metadata=formatted(_not_empty))
    # a detected class becomes a tag at this score
    threshold: float = field(default=0.35, metadata=between(0, 1))
    # boxes stored in the index from this score (refine can go this low)
    keep: float = field(default=0.3, metadata=between(0, 1))
    # non-maximum suppression: overlap at which a box of the same class goes
    iou: float = field(default=0.6, metadata=between(0, 1))


@dataclass
class SpecialistsConfig:
    """Species classifiers that run only on photos the general models call a bird or insect."""

    enabled: bool = True  # run the installed ones (phototag models pull inat-bird, inat-insect)
    names: list[str] = field(
        default_factory=lambda: ["inat-bird", "inat-insect"], metadata=formatted(_not_empty)
    )
    # a photo's bird (insect) score, classifier or detector, that runs one
    gate: float = field(default=0.3, metadata=between(0, 1))
    # a species becomes a tag at this score, and overrules other birds
    threshold: float = field(default=0.5, metadata=between(0, 1))
    # species stored in the index from this score (refine can go this low)
    keep: float = field(default=0.1, metadata=between(0, 1))


@dataclass
class TagsConfig:
    """The vocabulary the user controls; applied last, to every source of auto tags."""

    # tags or subtrees never written
    exclude: list[str] = field(default_factory=list, metadata=formatted(_tag_path))
    # broad roots not written as keywords of their own (alone or as a parent); paths keep them
    generic: list[str] = field(
        default_factory=lambda: ["object", "place", "clothing"], metadata=formatted(_tag_path)
    )
    # tag or path -> the user's path
    rename: dict[str, str] = field(default_factory=dict, metadata=formatted(_tag_path))
    # tag -> its own minimum score
    thresholds: dict[str, float] = field(
        default_factory=dict, metadata=between(0, 1, format=_tag_path)
    )
    # TSV file: word<TAB>word in your language, one a line
    translations: str | None = field(default=None, metadata=formatted(_not_empty))


@dataclass
class WriteConfig:
    mode: Literal["auto", "inplace", "sidecar"] = "auto"  # auto: in the file where we can
    sidecar_name: Literal["append", "replace"] = "append"  # IMG.JPG.xmp or IMG.xmp
    dry_run: bool = False
    # dc:subject also gets "animal" and "mammal" for "animal|mammal|cat" (as Lightroom exports)
    flat_ancestors: bool = True


@dataclass
class ScanConfig:
    extensions: list[str] = field(default_factory=lambda: IMAGE_EXTENSIONS + RAW_EXTENSIONS)
    follow_symlinks: bool = False
    workers: int = field(default=0, metadata=between(0, 256))  # decode threads; 0: one per core
    # larger images are refused as decompression bombs
    max_pixels: int = field(default=200_000_000, metadata=between(1))
    # larger files are not read at all (a FIFO, a device or a runaway file)
    max_file_bytes: int = field(default=DEFAULT_MAX_BYTES, metadata=between(1))
    # tag a JPEG from its embedded preview when big enough: 1.3-1.6x faster decoding, but the same
    # top-3 tags on only 67 % of 140 photos with the default models (docs/benchmarks.md)
    jpeg_preview: bool = False


@dataclass
class IndexConfig:
    # None: $XDG_STATE_HOME/phototag/index
    path: str | None = field(default=None, metadata=formatted(_not_empty))
    backend: Literal["sqlite", "tinydb"] = "sqlite"  # tinydb: one JSON file, one writer at a time


@dataclass
class FetchConfig:
    max_bytes: int = field(default=50_000_000, metadata=between(1))
    timeout_s: float = field(default=20.0, metadata=between(0.1, 3600))
    allow_private: bool = False  # allow loopback/private/link-local URLs


@dataclass
class WatchConfig:
    folders: list[str] = field(default_factory=list, metadata=formatted(_not_empty))
    recursive: bool = True
    include: list[str] = field(default_factory=lambda: ["*"], metadata=formatted(_not_empty))
    exclude: list[str] = field(default_factory=list, metadata=formatted(_not_empty))
    settle_s: float = field(
        default=2.0, metadata=between(0, 3600)
    )  # a file must keep its size and mtime this long before tagging
    poll: bool = False  # force polling (network filesystems)
    poll_interval_s: float = field(
        default=10.0, metadata=between(0.1, 86400)
    )  # how often a polled folder is re-listed


@dataclass
class TagPropConfig:
    """Learning the user's own keywords (`phototag train`); see train.py."""

    min_examples: int = field(
        default=5, metadata=between(1)
    )  # a keyword of yours is learned once this many photos carry it
    threshold: float = field(
        default=0.5, metadata=between(0, 1)
    )  # propose a learned keyword when its probability is at least this
    max_tags: int = field(
        default=3, metadata=between(0, 1000)
    )  # most learned keywords proposed per photo
    k: int = field(
        default=40, metadata=between(1, 10_000)
    )  # neighbours each photo is compared with
    background: int = field(
        default=1000, metadata=between(0)
    )  # photos without keywords of yours sampled as negatives
    retrain_after: int = field(
        default=20, metadata=between(1)
    )  # the service retrains after this many new keywords (or 10 %)


@dataclass
class WebConfig:
    """The local web app (`phototag web`; `phototag watch` serves it too when enabled)."""

    enabled: bool = True  # `phototag watch` also serves the web app
    # host:port; anything but loopback wants a TLS proxy
    listen: str = field(default="127.0.0.1:8765", metadata=formatted(_host_port))
    tls: bool = False  # served over HTTPS (by a proxy): session cookies get Secure
    max_upload_bytes: int = field(default=50_000_000, metadata=between(1))
    # failed logins allowed per address per minute
    login_attempts: int = field(default=5, metadata=between(1, 10_000))
    session_hours: float = field(default=24.0, metadata=between(0.01, 24 * 366))


@dataclass
class PlacesConfig:
    """Place keywords and IPTC location fields from the GPS position (pipeline/places.py)."""

    enabled: bool = True
    root: str = field(default="places", metadata=formatted(_one_level))  # root|country|city
    state: bool = False  # also a level for the state or region: places|Germany|Bavaria|Munich
    fill_location: bool = True  # fill photoshop:Country/State/City and the country code if empty
    # no town this close: no place (at sea, wilderness)
    max_km: float = field(default=25.0, metadata=between(0.01, 20_000))
    city_population: int = field(default=500_000, metadata=between(0))  # a city this big ...
    # ... this close names the photo, not the district or village nearest
    city_km: float = field(default=20.0, metadata=between(0, 20_000))


@dataclass
class FacesConfig:
    """Faces found, grouped and named (pipeline/faces.py, library/people.py, `phototag faces`).

    Off by default: a face descriptor is biometric data, and the shared embedder's weights are
    for research use only (its catalogue entry); the user opts in, and nothing else needs it.
    """

    enabled: bool = False
    min_score: float = field(default=0.75, metadata=between(0.0, 1.0))  # animal faces score less
    group_similarity: float = field(  # cosine at which an unnamed face joins a group
        default=0.6, metadata=between(0.0, 1.0)
    )
    picture_px: int = field(default=1600, metadata=between(256, 10_000))  # decode side for faces
    # a named face is the keyword People|Name
    keyword_prefix: str = field(default="People", metadata=formatted(_one_level))


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    tagging: TaggingConfig = field(default_factory=TaggingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    specialists: SpecialistsConfig = field(default_factory=SpecialistsConfig)
    tags: TagsConfig = field(default_factory=TagsConfig)
    write: WriteConfig = field(default_factory=WriteConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    tagprop: TagPropConfig = field(default_factory=TagPropConfig)
    web: WebConfig = field(default_factory=WebConfig)
    places: PlacesConfig = field(default_factory=PlacesConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
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
        raw = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    config = _build(Config, raw, str(path))
    config.source = path
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice is an error (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise ConfigError(
                    f"setting {key} given twice (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


# Settings that moved: an old config file gets told where, rather than "unknown setting".
MOVED = {"tagging.ancestors": "write.flat_ancestors"}


def _build(cls: type, raw: dict[str, Any], where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = {name for name in fields if name != "source"}
    unknown = sorted(set(raw) - known)
    if unknown and f"{prefix}{unknown[0]}" in MOVED:
        raise ConfigError(
            f"{where}: setting {prefix}{unknown[0]} is now {MOVED[prefix + unknown[0]]}"
        )
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
            _check_range(fields[name], values[name], where, key)
            _check_format(fields[name], values[name], where, key)
    if cls is ScanConfig:
        bad = [e for e in values.get("extensions", []) if not e.startswith(".") or len(e) < 2]
        if bad:
            raise ConfigError(
                f"{where}: {prefix}extensions: {bad[0]!r} must start with a dot, as .jpg"
            )
    return cls(**values)


def _items(value: Any, key: str) -> list[tuple[str, Any]]:
    """A setting's values with their dotted names: a mapping's by key, a list's as a whole."""
    if isinstance(value, dict):
        return [(f"{key}.{k}", v) for k, v in value.items()]
    return [(key, v) for v in value] if isinstance(value, list) else [(key, value)]


def _check_range(f: dataclasses.Field[Any], value: Any, where: str, key: str) -> None:
    if "range" not in f.metadata:
        return
    low, high = f.metadata["range"]
    for name, number in _items(value, key):
        if number != number:  # NaN compares false with every bound
            raise ConfigError(f"{where}: {name} must be a number, not {number!r}")
        if (low is not None and number < low) or (high is not None and number > high):
            limits = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"{where}: {name} must be {limits}, not {number!r}")


def _check_format(f: dataclasses.Field[Any], value: Any, where: str, key: str) -> None:
    check: Format | None = f.metadata.get("format")
    if check is None or value is None:
        return
    texts = (
        [*value.keys(), *(v for v in value.values() if isinstance(v, str))]
        if isinstance(value, dict)
        else [v for _, v in _items(value, key)]
    )
    for text in texts:
        problem = check(text)
        if problem:
            raise ConfigError(f"{where}: {key}: {text!r} {problem}")


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
