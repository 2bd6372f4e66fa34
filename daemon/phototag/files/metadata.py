"""Keywords in photo files: the one place that reads and writes XMP/IPTC.

Like beets' file-tag layer, the rest of phototag deals in `Tag`s and never sees exiv2. Keywords
go where other programs look: XMP dc:subject (flat), lr:hierarchicalSubject (Lightroom, `|`),
digiKam:TagsList (digiKam, Immich, `/`) and IPTC Keywords (UTF-8, 64 bytes each). What we add is
recorded in our own XMP namespace, so a re-tag replaces only our keywords, undo removes exactly
them, and refine sees which of ours the user deleted. The user's keywords are never touched.

pyexiv2 2.16 (bundling exiv2 0.28) quirks handled here:
- pyexiv2 raises on any error exiv2 logs, and exiv2 logs odd maker notes of real cameras as
  errors, so its log is muted (process-wide). Muted failures are caught instead by re-reading
  what we are about to write (`_verify`) and by refusing a file whose XMP exiv2 could not parse
  (`_has_properties`): exiv2 would otherwise silently drop that XMP, user keywords and all.
- pyexiv2 writes every list as rdf:Seq; dc:subject and lr:hierarchicalSubject are rdf:Bag (digiKam
  flattens a Seq hierarchy), so arrays are written item by item in exiv2's key syntax
  (`_to_pyexiv2`), each value behind an empty `type=""` so a keyword like "type=x" stays text.
- exiv2's sidecar image type converts XMP to Exif and IPTC and back on every write, truncating
  IPTC-mapped fields and overwriting our edits; a sidecar's packet is edited in a 1x1 PNG instead.
- exiv2 cannot remove a WebP's XMP chunk, so "no XMP left" is written as an empty packet.
- pyexiv2 needs UTF-8 path names and leaks memory unless closed: all file I/O is done here on
  bytes (`ImageData`), which also makes temp file + fsync + rename natural.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pyexiv2
from PIL import Image, PngImagePlugin

from phototag.config import WriteConfig
from phototag.files import iptcdigest, mwg, safeopen
from phototag.files import sidecar as sidecars
from phototag.files.fileio import TEMP_SUFFIX, fsync_dir, name_fits, temp_prefix
from phototag.files.keywords import Fields, Record, accepted, flat, plan, removed, unique
from phototag.files.sidecar import INPLACE_SUFFIXES, read_only, sidecar
from phototag.records import LEVEL_SEP, Tag

log = logging.getLogger(__name__)

NAMESPACE = "http://phototag.dev/ns/1.0/"
PREFIX = "phototag"

SUBJECT = "Xmp.dc.subject"
HIERARCHICAL = "Xmp.lr.hierarchicalSubject"
TAGS_LIST = "Xmp.digiKam.TagsList"
IPTC_KEYWORDS = "Iptc.Application2.Keywords"
IPTC_CHARSET = "Iptc.Envelope.CharacterSet"
IPTC_UTF8 = "\x1b%G"  # ISO 2022 escape announcing UTF-8

# Our record. Keywords/paths we added that the user has since deleted move to the Removed
# lists at the next write, so we never add them again nor claim them if the user re-adds them.
OURS = f"Xmp.{PREFIX}."
R_TAGS = OURS + "Tags"  # seq of "path=score", the auto tags last written
R_KEYWORDS = OURS + "Keywords"  # flat keywords we added (not the user's)
R_PATHS = OURS + "HierarchicalKeywords"  # `|` paths we added to lr: and digiKam:
R_REMOVED = OURS + "RemovedKeywords"
R_REMOVED_PATHS = OURS + "RemovedHierarchicalKeywords"
R_MIRRORED = OURS + "UserKeywords"  # the user's entries at our last write
R_FACES = OURS + "FaceKeywords"  # `People|Name` of our face regions (files/regions.py)
R_LOCATION = OURS + "Location"  # "key=value" location fields we filled (files/location.py)
R_MODEL = OURS + "ModelVersion"
R_DATE = OURS + "Date"  # ISO 8601, UTC

_ARRAY_FORM = {
    SUBJECT: "Bag",
    HIERARCHICAL: "Bag",
    TAGS_LIST: "Seq",
    R_TAGS: "Seq",
    R_KEYWORDS: "Bag",
    R_PATHS: "Bag",
    R_REMOVED: "Bag",
    R_REMOVED_PATHS: "Bag",
    R_MIRRORED: "Bag",
    R_FACES: "Bag",
    R_LOCATION: "Bag",
    **mwg.ARRAY_FORMS,
}
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
# "No XMP left", in every format (deleting every property would leave a WebP's XMP as it was).
_EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"

# The XMP namespaces we write, by exiv2 prefix. exiv2 keeps one process-wide table, and
# parsing a file whose XMP binds one of these prefixes to another URI re-maps it for every
# later file; `_open_bytes` binds them back after each parse. Not `iptc`/`iptcExt`: exiv2's
# names for Iptc4xmpCore/Ext, which files spell the standard way; binding them breaks those.
NAMESPACES = {
    PREFIX: NAMESPACE,
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
}


def _bind_namespaces() -> None:
    for prefix, uri in NAMESPACES.items():
        pyexiv2.registerNs(uri, prefix)


pyexiv2.set_log_level(4)
_bind_namespaces()


class MetadataError(Exception):
    """Keywords could not be read or written; the message is one line naming the file."""


class _Unreadable(MetadataError):
    """exiv2 cannot read the file's metadata (as opposed to the file itself being unreadable)."""


Unreadable = _Unreadable  # public: a file exiv2 cannot read holds nothing of ours


@dataclass
class FileKeywords:
    """What a photo's keywords are now, and which of them are ours."""

    keywords: list[str]  # all flat keywords (dc:subject, then IPTC; photo, then sidecar)
    hierarchical: list[str]  # lr:hierarchicalSubject
    ours: list[Tag]  # our recorded auto tags
    our_keywords: list[str]  # flat keywords we added that are still there
    removed_by_user: list[str]  # flat keywords we added that the user has deleted
    removed_paths: list[str] = field(default_factory=list)  # likewise for hierarchical paths
    model_version: str | None = None
    tagged_at: str | None = None  # when we last wrote, ISO 8601
    our_paths: list[str] = field(default_factory=list)  # hierarchical paths we added, still there
    faces: list[str] = field(default_factory=list)  # `People|Name` of our face regions

    @property
    def user_keywords(self) -> list[str]:
        ours = set(self.our_keywords)
        return [k for k in self.keywords if k not in ours]


@dataclass
class _Doc:
    path: Path
    sidecar: bool
    image: pyexiv2.ImageData
    xmp: dict[str, object]
    fields: Fields
    stat: os.stat_result | None  # None: a sidecar not yet on disk
    inherited: list[str] = field(default_factory=list)  # IPTC-only keywords of the photo


# ---- public API -------------------------------------------------------------------------------


def target(path: Path, cfg: WriteConfig) -> Path:
    """`sidecar.target`, but a photo whose name leaves no room for ".xmp" (255 bytes) is
    written in place when it may be, else refused with the reason."""
    side = sidecar(path, cfg)
    if not name_fits(side):
        if cfg.mode == "sidecar" or path.suffix.lower() not in INPLACE_SUFFIXES:
            raise MetadataError(
                f"{path}: file name too long for a sidecar beside it ({len(os.fsencode(side.name))}"
                " bytes, the limit is 255); shorten the name or use write.mode inplace"
            )
        return path
    return sidecars.target(path, cfg)


def read(path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES) -> FileKeywords:
    """Keywords of the photo merged with its sidecar's, and which are ours (from the target).

    `max_bytes` (every call here takes it): files larger are refused unread, as
    `scan.max_file_bytes` says.
    """
    with _open_pair(path, target(path, cfg), cfg, True, max_bytes) as (doc, other):
        return _summary(doc, other)


@dataclass
class Written:
    """What `write` did: where the keywords went, what the photo says now, and its new hash.

    Returned so callers need not open and hash the photo again (a second exiv2 parse of a
    camera JPEG costs as much as the write itself).
    """

    target: Path  # the photo or the sidecar that holds our keywords
    keywords: FileKeywords  # as they are on disk after the write
    photo_sha256: str | None  # sha256 of the photo's new bytes; None when the photo is unchanged


# Other XMP properties to set in the keyword write itself, decided from what the files say
# now: (their XMP, the target's over the other's; the photo's IPTC IIM) -> changes, None
# deleting. files/location.py fills the empty location fields so, without a second rewrite.
Fill = Callable[[dict[str, object], dict[str, object]], dict[str, object]]


def write(
    path: Path,
    tags: list[Tag],
    model_version: str,
    cfg: WriteConfig,
    generic: Collection[str] = (),
    max_bytes: int = safeopen.DEFAULT_MAX_BYTES,
    fill: Fill | None = None,
) -> Written:
    """Set our auto tags on `path` to exactly `tags` (and what `fill` adds, in the same write).

    Ours no longer wanted are removed, the user's are kept as they are, and a keyword of ours
    the user deleted is not added again. Nothing is written when nothing would change.
    Ancestor levels named in `generic` (`object`, `place`) are not written as keywords of
    their own: alone they only clutter search; the hierarchy field keeps the full path.
    """
    dest = target(path, cfg)
    with _open_pair(path, dest, cfg, True, max_bytes) as (doc, other):
        extra = None
        if fill is not None:
            photo = other if doc.sidecar else doc
            iim = photo.image.read_iptc() if photo is not None else {}
            extra = fill({**(other.xmp if other else {}), **doc.xmp}, iim)
        new = plan(
            doc.fields,
            other.fields if other else None,
            tags,
            cfg.flat_ancestors,
            generic,
            doc.inherited,
        )
        assert new.record is not None
        new.record.model_version = model_version
        new.record.date = datetime.now(timezone.utc).isoformat(timespec="seconds")
        data = _commit(doc, new, cfg, extra)
        keywords = _summary(replace(doc, fields=new), other)
    photo_sha256 = hashlib.sha256(data).hexdigest() if data and not doc.sidecar else None
    return Written(dest, keywords, photo_sha256)


def undo(path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES) -> Path:
    """Remove exactly the keywords we added and our namespace; return the file changed."""
    dest = target(path, cfg)
    with _open_pair(path, dest, cfg, False, max_bytes) as (doc, _):
        if doc.fields.record is not None and (doc.stat is not None or not doc.sidecar):
            faceless = replace(doc.fields, record=replace(doc.fields.record, faces=[]))
            new = plan(faceless, None, [], ancestors=False)
            new.record = None
            try:
                regions = mwg.cleared(doc.xmp)
            except mwg.Malformed as exc:
                raise MetadataError(f"{doc.path}: {exc}; left as it is") from None
            _commit(doc, new, cfg, regions)
    return dest


def accept(
    path: Path, tag: Tag, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES
) -> Path:
    """Add `tag` as the user's own keyword, as if they had typed it (an explicit user action).

    Its flat keyword goes in, and its path when it has levels. Were they ours, they become the
    user's (undo leaves them), and a keyword the user had deleted is no longer counted deleted.
    """
    dest = target(path, cfg)
    with _open_pair(path, dest, cfg, False, max_bytes) as (doc, _):
        _commit(doc, accepted(doc.fields, tag), cfg)
    return dest


def remove(
    path: Path,
    tag: Tag,
    cfg: WriteConfig,
    negative: bool = False,
    max_bytes: int = safeopen.DEFAULT_MAX_BYTES,
) -> Path:
    """Take `tag` off the photo, as if the user had deleted it (an explicit user action).

    Its flat keyword goes from every field, and its path when it has levels. One of ours, or any
    with `negative` (the user rejects a suggestion), is recorded as deleted by the user: never
    added again, and a negative example for training. Return the file changed.
    """
    dest = target(path, cfg)
    with _open_pair(path, dest, cfg, False, max_bytes) as (doc, _):
        _commit(doc, removed(doc.fields, tag, negative), cfg)
    return dest


def _summary(doc: _Doc, other: _Doc | None) -> FileKeywords:
    holders = sorted([d for d in (doc, other) if d is not None], key=lambda d: d.sidecar)
    rec = doc.fields.record or Record()
    subject = doc.fields.subject
    return FileKeywords(
        keywords=unique(k for d in holders for k in flat(d.fields)),
        hierarchical=unique(p for d in holders for p in d.fields.hierarchical if LEVEL_SEP in p),
        ours=rec.tags,
        our_keywords=[k for k in rec.keywords if k in subject],
        removed_by_user=[k for k in unique(rec.removed + rec.keywords) if k not in subject],
        removed_paths=[
            p for p in unique(rec.removed_paths + rec.paths) if p not in doc.fields.hierarchical
        ],
        model_version=rec.model_version,
        tagged_at=rec.date,
        our_paths=[p for p in rec.paths if p in doc.fields.hierarchical],
        faces=rec.faces,
    )


def _xmp_values(f: Fields) -> dict[str, list[str] | str | None]:
    """The XMP properties these fields are written as; None: the property is absent."""
    values: dict[str, list[str] | str | None] = {
        SUBJECT: f.subject or None,
        HIERARCHICAL: f.hierarchical or None,
        TAGS_LIST: f.tags_list or None,
    }
    rec = f.record
    if rec is not None:
        values |= {
            R_TAGS: [f"{t.path}={t.score:.4f}" for t in rec.tags] or None,
            R_KEYWORDS: rec.keywords or None,
            R_PATHS: rec.paths or None,
            R_REMOVED: rec.removed or None,
            R_REMOVED_PATHS: rec.removed_paths or None,
            R_MIRRORED: rec.mirrored or None,
            R_FACES: rec.faces or None,
            R_MODEL: rec.model_version,
            R_DATE: rec.date,
        }
    return values


def _to_pyexiv2(changes: dict[str, object]) -> dict[str, str | None]:
    """Arrays as exiv2 container + item keys, so each gets its proper Bag or Seq form;
    structures (MWG regions) as the container markers pyexiv2 reads them as."""
    out: dict[str, str | None] = {}
    for key, value in changes.items():
        if isinstance(value, list):
            out[key] = f"type={_ARRAY_FORM[key]}"
            out |= {f"{key}[{i}]": f'type="" {item}' for i, item in enumerate(value, 1)}
        elif value is None or (isinstance(value, str) and value in mwg.CONTAINERS):
            out[key] = value  # type: ignore[assignment]
        else:
            out[key] = f'type="" {value}'
    return out


# ---- reading ----------------------------------------------------------------------------------


def _as_list(value: object) -> list[str]:
    """pyexiv2 gives an array as a list, a simple property (a malformed array) as a str."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _text(xmp: dict[str, object], key: str) -> str | None:
    value = xmp.get(key)
    return None if value is None else str(value)


def _record(xmp: dict[str, object]) -> Record | None:
    if not any(key.startswith(OURS) for key in xmp):
        return None
    tags = []
    for item in _as_list(xmp.get(R_TAGS)):
        path, _, score = item.rpartition("=")
        with suppress(ValueError):
            tags.append(Tag(path, float(score), "auto"))
    return Record(
        tags=tags,
        keywords=_as_list(xmp.get(R_KEYWORDS)),
        paths=_as_list(xmp.get(R_PATHS)),
        removed=_as_list(xmp.get(R_REMOVED)),
        removed_paths=_as_list(xmp.get(R_REMOVED_PATHS)),
        mirrored=_as_list(xmp.get(R_MIRRORED)),
        faces=_as_list(xmp.get(R_FACES)),
        model_version=_text(xmp, R_MODEL),
        date=_text(xmp, R_DATE),
    )


def _fields(image: pyexiv2.ImageData, xmp: dict[str, object], sidecar: bool) -> Fields:
    try:
        iptc, utf8 = image.read_iptc(), True
    except UnicodeDecodeError:  # legacy 8-bit IPTC: read it, but leave it alone
        iptc, utf8 = image.read_iptc("latin-1"), False
    access = image.get_access_mode().get("iptc") or ""
    return Fields(
        subject=_as_list(xmp.get(SUBJECT)),
        hierarchical=_as_list(xmp.get(HIERARCHICAL)),
        tags_list=_as_list(xmp.get(TAGS_LIST)),
        iptc=_as_list(iptc.get(IPTC_KEYWORDS)),
        iptc_writable=not sidecar and utf8 and "write" in access,
        record=_record(xmp),
    )


def _carrier(packet: str) -> bytes:
    """A 1x1 PNG holding an XMP packet, so exiv2 edits a sidecar's XMP as plain XMP."""
    info = PngImagePlugin.PngInfo()
    if packet.strip():
        info.add_itxt("XML:com.adobe.xmp", packet)
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _open_bytes(data: bytes, sidecar: bool) -> pyexiv2.ImageData:
    """Open with pyexiv2; a sidecar's bytes must be UTF-8 XMP."""
    try:
        return pyexiv2.ImageData(_carrier(data.decode("utf-8")) if sidecar else data)
    finally:
        _bind_namespaces()  # whatever the file's XMP declared


def _has_properties(packet: str) -> bool:
    """Whether an XMP packet holds anything (True too when it is not even XML)."""
    if not packet.strip():
        return False
    try:
        root = ET.fromstring(packet.strip())
    except ET.ParseError:
        return True
    return any(len(d) or set(d.attrib) - {f"{_RDF}about"} for d in root.iter(f"{_RDF}Description"))


# Each XMP packet opens so; JPEG's extended XMP continues one packet without a wrapper.
_PACKET_START = b"<?xpacket begin="


def _open(path: Path, sidecar: bool, stack: ExitStack, max_bytes: int, seed: str = "") -> _Doc:
    """Open a photo or sidecar; a sidecar not yet on disk opens as the XMP packet `seed`."""
    try:
        data, st_found = safeopen.read_regular(path, max_bytes)
        st: os.stat_result | None = st_found
    except FileNotFoundError:
        if not sidecar:
            raise MetadataError(f"{path}: no such file") from None
        st, data = None, seed.encode()
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not sidecar and (packets := data.count(_PACKET_START)) > 1:
        raise MetadataError(
            f"{path}: holds {packets} XMP packets; exiv2 sees only the first, so keywords in the "
            "others would be lost: left as it is (merge them, e.g. with exiftool)"
        )
    try:
        image = _open_bytes(data, sidecar)
        stack.enter_context(image)
        xmp = image.read_xmp()
        if not xmp and _has_properties(image.read_raw_xmp()):
            raise _Unreadable(f"{path}: its XMP cannot be parsed; left as it is")
        return _Doc(path, sidecar, image, xmp, _fields(image, xmp, sidecar), st)
    except (RuntimeError, ValueError) as exc:
        raise _Unreadable(f"{path}: cannot read metadata: {_one_line(exc)}") from exc


def _open_embedded(path: Path, stack: ExitStack, max_bytes: int) -> _Doc | None:
    """The photo behind a sidecar, only read for its keywords: None if exiv2 cannot read it
    (formats exiv2 does not know, such as some GIFs, are what sidecars are for)."""
    try:
        return _open(path, False, stack, max_bytes)
    except _Unreadable as exc:
        log.debug("%s", exc)
        return None


@contextmanager
def _open_pair(
    path: Path, dest: Path, cfg: WriteConfig, other: bool, max_bytes: int
) -> Iterator[tuple[_Doc, _Doc | None]]:
    """The target, and (when `other`) the photo or existing sidecar that is not the target."""
    side = sidecar(path, cfg)
    with ExitStack() as stack:
        if dest == side and not side.exists():
            # A new sidecar starts as a copy of the photo's XMP: darktable, digiKam and Lightroom
            # take a sidecar for the photo's whole metadata (rating, label, keywords...).
            rest = _open_embedded(path, stack, max_bytes)
            doc = _open(side, True, stack, max_bytes, rest.image.read_raw_xmp() if rest else "")
            if rest is not None:
                doc.inherited = [k for k in flat(rest.fields) if k not in doc.fields.subject]
        elif dest == side:
            doc = _open(side, True, stack, max_bytes)
            rest = _open_embedded(path, stack, max_bytes) if other else None
        else:
            doc = _open(path, False, stack, max_bytes)
            has_side = other and name_fits(side) and side.exists()
            rest = _open(side, True, stack, max_bytes) if has_side else None
        yield doc, rest


# ---- writing ----------------------------------------------------------------------------------


def _commit(
    doc: _Doc, new: Fields, cfg: WriteConfig, extra: dict[str, object] | None = None
) -> bytes | None:
    """Write `new` into the doc's file, atomically, if anything but the date changes.

    `extra` sets other XMP properties (as pyexiv2 reads them; None: absent), such as the face
    regions of files/regions.py or the location fields of files/location.py, in the same
    write and verified the same way.
    Returns the bytes now in the file, or None when nothing was written (or it was deleted).
    """
    old_values, new_values = _xmp_values(doc.fields), _xmp_values(new)
    changes: dict[str, object] = {k: v for k, v in new_values.items() if old_values.get(k) != v}
    if new.record is None:
        changes |= {k: None for k in doc.xmp if k.startswith(OURS)}
    changes |= mwg.changes(doc.xmp, extra or {})
    iptc_changed = new.iptc_writable and new.iptc != doc.fields.iptc
    if (set(changes) <= {R_DATE} and not iptc_changed) or cfg.dry_run:
        return None
    if doc.stat is not None and read_only(doc.path):
        raise MetadataError(f"{doc.path}: read-only; use write.mode auto or sidecar")
    if doc.stat is None and read_only(doc.path.parent):
        raise MetadataError(f"{doc.path}: cannot create the sidecar: its folder is read-only")
    if not doc.sidecar and "write" not in (doc.image.get_access_mode().get("xmp") or ""):
        raise MetadataError(f"{doc.path}: exiv2 cannot write XMP into this format; use a sidecar")
    try:
        deleted = {k for k, v in changes.items() if v is None}
        if set(changes) == deleted and set(doc.xmp) <= deleted:
            doc.image.modify_raw_xmp(_EMPTY_PACKET)
        else:
            doc.image.modify_xmp(_to_pyexiv2(changes))
        if iptc_changed:
            doc.image.modify_iptc({IPTC_KEYWORDS: new.iptc or None, IPTC_CHARSET: IPTC_UTF8})
        if doc.sidecar:
            data = (_XML_DECL + doc.image.read_raw_xmp()).encode()
        else:
            # exiv2 re-encodes the IPTC block on every write, IPTC change or not, and XMP now
            # holds what IPTC says (plan reads its keywords in): the digest says so.
            data = iptcdigest.refresh(doc.image.get_bytes())
    except (RuntimeError, ValueError) as exc:
        raise MetadataError(f"{doc.path}: cannot write metadata: {_one_line(exc)}") from exc
    empty = _verify(doc, data, new, extra or {})
    if doc.sidecar and empty:  # undo emptied a sidecar: it was ours alone
        if doc.stat is not None:
            _check_unchanged(doc)
            doc.path.unlink()
        return None
    _replace(doc, data)
    return data


def _verify(doc: _Doc, data: bytes, new: Fields, extra: dict[str, object]) -> bool:
    """Re-read what we are about to write: exiv2's muted failures show here. True: XMP empty."""
    try:
        with _open_bytes(data, doc.sidecar) as image:
            xmp = image.read_xmp()
            got = _fields(image, xmp, doc.sidecar)
    except (RuntimeError, ValueError) as exc:
        raise MetadataError(
            f"{doc.path}: exiv2 wrote unreadable metadata: {_one_line(exc)}"
        ) from exc
    if _present(_xmp_values(got)) != _present(_xmp_values(new)) or got.iptc != new.iptc:
        raise MetadataError(f"{doc.path}: exiv2 did not write the keywords as asked; left as it is")
    if any(xmp.get(k) != v for k, v in extra.items()):
        raise MetadataError(
            f"{doc.path}: exiv2 did not write the XMP properties as asked; left as it is"
        )
    return not xmp


def _present(values: dict[str, list[str] | str | None]) -> dict[str, list[str] | str]:
    """The properties there (an emptied record reads back as no record at all)."""
    return {k: v for k, v in values.items() if v is not None}


def _check_unchanged(doc: _Doc) -> None:
    """Refuse to replace a file someone changed since we read it (we would lose their edit)."""
    assert doc.stat is not None
    try:
        now = os.stat(doc.path)
    except OSError as exc:
        raise MetadataError(f"{doc.path}: vanished while writing: {exc.strerror}") from exc
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (
        doc.stat.st_size,
        doc.stat.st_mtime_ns,
        doc.stat.st_ino,
    ):
        raise MetadataError(f"{doc.path}: changed while we were writing it; left as it is")


def _replace(doc: _Doc, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over the original: all or nothing.

    The temp file keeps the original's mode (and owner, where allowed); a new sidecar gets the
    mode any new file gets (0666 less the umask).
    """
    real = Path(os.path.realpath(doc.path))
    tmp = real.with_name(f"{temp_prefix(real.name)}{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise MetadataError(f"{doc.path}: cannot write in its folder: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if doc.stat is not None:
            os.chmod(tmp, stat.S_IMODE(doc.stat.st_mode))
            if (doc.stat.st_uid, doc.stat.st_gid) != (os.getuid(), os.getgid()):
                with suppress(OSError):
                    os.chown(tmp, doc.stat.st_uid, doc.stat.st_gid)
            _check_unchanged(doc)
        elif real.exists():
            raise MetadataError(f"{doc.path}: appeared while we were writing it; left as it is")
        os.replace(tmp, real)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise MetadataError(f"{doc.path}: cannot write: {exc.strerror or exc}") from exc
        raise
    fsync_dir(real.parent)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
