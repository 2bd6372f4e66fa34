"""The model catalogue: which ONNX models phototag knows, and getting them onto disk.

Entries are the `*.yaml` files shipped in `phototag.models`, one per model file. Installed
files live in `paths.data_dir()/models` under the entry's file name. A file only ever
appears there under its final name after its sha256 matched the catalogue (import and
pull write a temporary file, verify it, then rename), so loading needs only a size check.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, BinaryIO, Literal, ParamSpec, TypeVar, get_args
from urllib.parse import urlsplit

import yaml

from phototag import __version__, paths
from phototag.files.fileio import fsync_dir

MIRROR_ENV = "PHOTOTAG_MODEL_MIRROR"  # base URL that replaces the catalogue's download base
ATTEMPTS = 3  # one pull resumes this often after a dropped or stalled connection
_CHUNK = 1 << 16

Dtype = Literal["uint8", "float32"]
Layout = Literal["NHWC", "NCHW"]
Colour = Literal["RGB", "BGR"]
Kind = Literal[
    "classifier", "detector", "specialist", "face-detector", "face-embedder"
]  # what a model's outputs mean, so the pipeline knows its stage
Progress = Callable[[int, int], None]  # (bytes done, bytes total)
P = ParamSpec("P")
R = TypeVar("R")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.onnx\Z")  # a plain name: joined to the data dir
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)\Z")


class CatalogueError(Exception):
    """A catalogue entry, an import or a download went wrong; the message is one line."""


class ModelMissing(CatalogueError):
    """The wanted model is in the catalogue but not installed."""


@dataclass(frozen=True)
class InputSpec:
    """What the graph's input wants, so decoding produces it without guessing."""

    name: str
    dtype: Dtype
    layout: Layout
    size: int  # side of the square input, pixels
    colour: Colour
    normalisation: str  # how pixels are scaled before the graph; "none: ..." when the graph does it
    # 0: exactly size x size; > 0: each side any multiple of stride up to size (a detector
    # then gets the letterbox cut to the photo's shape instead of a square with black bands)
    stride: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry: a model file pinned by sha256 and how to feed and read it."""

    name: str
    version: str
    file: str
    url: str
    sha256: str
    size: int  # bytes
    licence: str
    input: InputSpec
    outputs: tuple[str, ...]
    labels: str  # label-map name: "imagenet" -> models/imagenet_labels.txt
    order: int  # higher is newer among the versions of one name
    kind: Kind = "classifier"
    domain: str = ""  # specialist: the tag path of the photos it knows, e.g. "animal|bird"
    description: str = ""
    provenance: str = ""

    @property
    def ref(self) -> str:
        """`name@version`, as the CLI takes it and ModelVersion.backbone records it."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class InstalledModel:
    spec: ModelSpec
    path: Path


def _file_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Local file trouble (a missing source, permissions, a full disk) as a one-line error."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OSError as exc:  # network errors never get here: _download converts them
            raise CatalogueError(f"{exc.filename or models_dir()}: {exc.strerror or exc}") from exc

    return wrapper


class _Fields:
    """Takes checked keys out of one YAML mapping, so that leftovers can be named as unknown."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise CatalogueError(f"{where}: must be a mapping")
        self.raw = dict(raw)
        self.where = where

    def take(self, key: str, kind: type, pattern: re.Pattern[str] | None = None) -> Any:
        if key not in self.raw:
            raise CatalogueError(f"{self.where}: missing {key}")
        value = self.raw.pop(key)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise CatalogueError(f"{self.where}: {key} must be {kind.__name__}, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise CatalogueError(f"{self.where}: {key} {value!r} must match {pattern.pattern}")
        return value

    def choice(self, key: str, literal: Any) -> Any:
        value = self.take(key, str)
        if value not in get_args(literal):
            allowed = ", ".join(get_args(literal))
            raise CatalogueError(f"{self.where}: {key} must be one of {allowed}, not {value!r}")
        return value

    def done(self) -> None:
        if self.raw:
            raise CatalogueError(f"{self.where}: unknown key {sorted(map(str, self.raw))[0]}")


def parse(text: str, where: str) -> ModelSpec:
    """One catalogue entry from YAML text; `where` names it in error messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{where}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    doc = _Fields(raw, where)
    inp = _Fields(doc.take("input", dict), f"{where}: input")
    outputs = doc.take("outputs", list)
    if not outputs or not all(isinstance(o, str) for o in outputs):
        raise CatalogueError(f"{where}: outputs must be a non-empty list of names")
    spec = ModelSpec(
        name=doc.take("name", str, _NAME),
        version=doc.take("version", str, _NAME),
        file=doc.take("file", str, _FILE),
        url=doc.take("url", str),
        sha256=doc.take("sha256", str, _SHA256),
        size=doc.take("size", int),
        licence=doc.take("licence", str),
        input=InputSpec(
            name=inp.take("name", str),
            dtype=inp.choice("dtype", Dtype),
            layout=inp.choice("layout", Layout),
            size=inp.take("size", int),
            colour=inp.choice("colour", Colour),
            normalisation=inp.take("normalisation", str),
            stride=inp.take("stride", int) if "stride" in inp.raw else 0,
        ),
        outputs=tuple(outputs),
        labels=doc.take("labels", str, _NAME),
        order=doc.take("order", int),
        kind=doc.choice("kind", Kind) if "kind" in doc.raw else "classifier",
        domain=doc.take("domain", str) if "domain" in doc.raw else "",
        description=doc.take("description", str) if "description" in doc.raw else "",
        provenance=doc.take("provenance", str) if "provenance" in doc.raw else "",
    )
    inp.done()
    doc.done()
    # The mirror setting swaps the URL's base, so the URL must end in the file name.
    if not spec.url.startswith("https://") or not spec.url.endswith("/" + spec.file):
        raise CatalogueError(f"{where}: url must be https://.../{spec.file}")
    if (spec.kind == "specialist") != bool(spec.domain):
        raise CatalogueError(f"{where}: a specialist, and only a specialist, needs a domain")
    if spec.size <= 0 or spec.input.size <= 0:
        raise CatalogueError(f"{where}: size and input.size must be positive")
    if spec.input.stride < 0 or (spec.input.stride and spec.input.size % spec.input.stride):
        raise CatalogueError(f"{where}: input.stride must divide input.size")
    return spec


@functools.cache
def _catalogue() -> tuple[ModelSpec, ...]:
    found = sorted(
        (f for f in files("phototag.models").iterdir() if f.name.endswith(".yaml")),
        key=lambda f: f.name,
    )
    specs = tuple(parse(f.read_text(encoding="utf-8"), f.name) for f in found)
    for what, key in (
        ("name@version", lambda s: s.ref),
        ("file", lambda s: s.file),
        ("order", lambda s: (s.name, s.order)),
    ):
        keys = [key(s) for s in specs]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise CatalogueError(f"model catalogue: two entries share the {what} {dup}")
    return specs


def entries() -> list[ModelSpec]:
    """All catalogue entries."""
    return list(_catalogue())


def split_ref(ref: str) -> tuple[str, str | None]:
    """`name@version` or `name` as typed on the command line -> (name, version or None)."""
    name, sep, version = ref.partition("@")
    return name, (version if sep else None)


def find(name: str, version: str | None = None) -> ModelSpec:
    """The entry `name@version`; the newest of that name when `version` is None."""
    same = [s for s in entries() if s.name == name]
    if not same:
        known = ", ".join(sorted({s.name for s in entries()}))
        raise CatalogueError(f"unknown model {name!r} (known: {known})")
    if version is None:
        return max(same, key=lambda s: s.order)
    for spec in same:
        if spec.version == version:
            return spec
    known = ", ".join(s.version for s in sorted(same, key=lambda s: s.order))
    raise CatalogueError(f"unknown version {version!r} of {name} (known: {known})")


def models_dir() -> Path:
    return paths.data_dir() / "models"


def installed() -> list[InstalledModel]:
    """Catalogue entries whose file is in the data dir with the catalogue's size."""
    folder = models_dir()
    return [
        InstalledModel(spec, folder / spec.file)
        for spec in entries()
        if (folder / spec.file).is_file() and (folder / spec.file).stat().st_size == spec.size
    ]


def resolve(name: str, version: str | None) -> InstalledModel:
    """The installed model to run: `name@version`, or the newest installed version of `name`."""
    wanted = find(name, version)
    found = [
        m
        for m in installed()
        if m.spec.name == name and (version is None or m.spec.version == version)
    ]
    if found:
        return max(found, key=lambda m: m.spec.order)
    ref = name if version is None else wanted.ref
    raise ModelMissing(
        f"model {ref} is not installed: download it with `phototag models pull {ref}` "
        f"({wanted.size / 1e6:.1f} MB) or install a copy you have with "
        "`phototag models import FILE`"
    )


@_file_errors
def import_file(src: Path, name: str | None = None) -> InstalledModel:
    """Install a local copy of a catalogue model, recognised by its sha256."""
    candidates = [s for s in entries() if name is None or s.name == name]
    if not candidates:
        find(name or "")  # raises the "unknown model" message
    folder = _make_models_dir()
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".import-", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            digest = _copy(inp, out)
        spec = next((s for s in candidates if s.sha256 == digest), None)
        if spec is None:
            what = f"{name} model" if name else "catalogue model"
            raise CatalogueError(
                f"{src}: not a known {what} file (sha256 {digest[:16]}...); "
                "`phototag models list` shows the known ones"
            )
        return _install(tmp, spec)
    finally:
        tmp.unlink(missing_ok=True)


def download_url(spec: ModelSpec) -> str:
    """The catalogue URL, or the same file under $PHOTOTAG_MODEL_MIRROR (an internal copy)."""
    mirror = os.environ.get(MIRROR_ENV)
    url = f"{mirror.rstrip('/')}/{spec.file}" if mirror else spec.url
    if urlsplit(url).scheme not in ("http", "https"):
        raise CatalogueError(f"{MIRROR_ENV}={mirror}: must be an http:// or https:// URL")
    return url


@_file_errors
def pull(
    name: str,
    version: str | None = None,
    progress: Progress | None = None,
    stall_timeout_s: float = 30.0,
) -> InstalledModel:
    """Download a catalogue model into the data dir, resuming a `.part` left by an earlier try.

    The bytes land in `<file>.part` and are renamed to the final name only after size and
    sha256 match, so a crash or a bad mirror never leaves a broken model where it is loaded.
    A part file with the wrong sha256 is deleted, since resuming it could never succeed.
    """
    spec = find(name, version)
    folder = _make_models_dir()
    dest = folder / spec.file
    if dest.is_file() and dest.stat().st_size == spec.size and _sha256(dest) == spec.sha256:
        return InstalledModel(spec, dest)
    url = download_url(spec)
    part = folder / f"{spec.file}.part"
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _download(url, part, spec.size, stall_timeout_s, progress)
            break
        except _Interrupted as exc:
            if attempt == ATTEMPTS:
                have = part.stat().st_size if part.exists() else 0
                if not have:  # nothing arrived: unreachable, retrying will not help
                    raise CatalogueError(
                        f"cannot download {spec.ref} from {url} ({exc}); offline, install the "
                        f"file with `phototag models import FILE`, or set {MIRROR_ENV} to a mirror"
                    ) from exc
                raise CatalogueError(
                    f"download of {spec.ref} from {url} interrupted ({exc}) at {have} of "
                    f"{spec.size} bytes; run the same command again to resume"
                ) from exc
    digest = _sha256(part)
    if digest != spec.sha256:
        part.unlink()
        raise CatalogueError(
            f"download of {spec.ref} from {url} has sha256 {digest[:16]}..., expected "
            f"{spec.sha256[:16]}...; deleted it (wrong file or corrupted mirror)"
        )
    return _install(part, spec)


class _Interrupted(Exception):
    """The connection dropped or stalled; what arrived stays in the part file for resuming."""


def _download(url: str, part: Path, size: int, timeout_s: float, progress: Progress | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return  # complete from an earlier run; the sha256 check decides
    headers = {"User-Agent": f"phototag/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # our part does not fit the server's file: start afresh
            part.unlink()
            raise _Interrupted("server refused to resume") from exc
        raise CatalogueError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _Interrupted(_reason(exc)) from exc
    with response:
        if response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != have or match[2] not in ("*", str(size)):
                raise CatalogueError(f"{url}: bad Content-Range for a resume from byte {have}")
        else:
            have = 0  # the server ignored Range and sends the whole file
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) != size - have:
            raise CatalogueError(
                f"{url}: server offers {int(length) + have} bytes, catalogue says {size}"
            )
        with part.open("ab" if have else "wb") as out:
            if progress:
                progress(have, size)
            while have < size:
                try:
                    chunk = response.read(min(_CHUNK, size - have))
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(_reason(exc)) from exc
                if not chunk:
                    raise _Interrupted("connection closed early")
                out.write(chunk)
                have += len(chunk)
                if progress:
                    progress(have, size)
            out.flush()
            os.fsync(out.fileno())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "stalled"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _make_models_dir() -> Path:
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _copy(inp: BinaryIO, out: BinaryIO) -> str:
    """Copy to a file being written and fsync it; returns the sha256 of what was copied."""
    digest = hashlib.sha256()
    while chunk := inp.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _install(verified: Path, spec: ModelSpec) -> InstalledModel:
    """Rename a verified, fsynced file to its final name, durably."""
    dest = verified.parent / spec.file
    os.replace(verified, dest)
    fsync_dir(dest.parent)
    return InstalledModel(spec, dest)
