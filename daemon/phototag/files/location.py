"""A photo's GPS position, and the IPTC location fields we fill from its place.

The position comes from the sidecar's XMP (where darktable and digiKam geotag), else the
photo's EXIF GPS IFD, else the photo's XMP exif:GPSLatitude/Longitude. The location fields
(photoshop:Country, Iptc4xmpCore:CountryCode, photoshop:State, photoshop:City: what Lightroom,
Bridge and digiKam show) are filled only where the photo, its sidecar and its IPTC IIM say
nothing, in the file that holds our keywords. What we filled is recorded in our namespace
(`phototag:Location`, "key=value" items), so undo removes exactly those, and only while they
still say what we wrote: a value the user corrected since is theirs.
"""

from __future__ import annotations

import logging
import os
import re
from fractions import Fraction
from pathlib import Path

import pyexiv2

from phototag.config import WriteConfig
from phototag.files import fileio, metadata, safeopen
from phototag.pipeline.places import Place, valid
from phototag.records import Position

log = logging.getLogger(__name__)

R_LOCATION = metadata.R_LOCATION
COUNTRY = "Xmp.photoshop.Country"
COUNTRY_CODE = "Xmp.iptc.CountryCode"  # Iptc4xmpCore:CountryCode
STATE = "Xmp.photoshop.State"
CITY = "Xmp.photoshop.City"
# IPTC IIM fields that say the same; a value there counts as the user's too.
_IIM = {
    COUNTRY: "Iptc.Application2.CountryName",
    COUNTRY_CODE: "Iptc.Application2.CountryCode",
    STATE: "Iptc.Application2.ProvinceState",
    CITY: "Iptc.Application2.City",
}
_XMP_COORD = re.compile(r"^\s*(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?\s*([NSEW])\s*$")


class _NoPosition(ValueError):
    """A GPS field that is there but does not say a position."""


def exif_degrees(value: str, ref: str) -> float:
    """EXIF "52/1 31/1 1200/100" with ref "N" -> 52.52; _NoPosition if malformed."""
    parts = value.split()
    if len(parts) != 3 or ref.strip().upper() not in ("N", "S", "E", "W"):
        raise _NoPosition(f"GPS {value!r} {ref!r}")
    try:
        d, m, s = (Fraction(p) for p in parts)
    except (ValueError, ZeroDivisionError) as exc:
        raise _NoPosition(f"GPS {value!r}") from exc
    degrees = float(d + m / 60 + s / 3600)
    return -degrees if ref.strip().upper() in ("S", "W") else degrees


def xmp_degrees(value: str) -> float:
    """XMP "52,31.2N" or "52,31,12N" (the XMP spec's GPSCoordinate) -> 52.52."""
    match = _XMP_COORD.match(value)
    if match is None:
        raise _NoPosition(f"GPS {value!r}")
    d, m, s, ref = match.groups()
    degrees = float(d) + float(m) / 60 + float(s or 0) / 3600
    return -degrees if ref in "SW" else degrees


def _position(exif: dict[str, str], xmp: dict[str, object]) -> Position | None:
    """EXIF first, then XMP, as MWG reads them; None when neither says a usable position."""
    gps = "Exif.GPSInfo.GPS"
    try:
        if f"{gps}Latitude" in exif and f"{gps}Longitude" in exif:
            lat = exif_degrees(exif[f"{gps}Latitude"], exif.get(f"{gps}LatitudeRef", ""))
            lon = exif_degrees(exif[f"{gps}Longitude"], exif.get(f"{gps}LongitudeRef", ""))
        elif "Xmp.exif.GPSLatitude" in xmp and "Xmp.exif.GPSLongitude" in xmp:
            lat = xmp_degrees(str(xmp["Xmp.exif.GPSLatitude"]))
            lon = xmp_degrees(str(xmp["Xmp.exif.GPSLongitude"]))
        else:
            return None
    except _NoPosition as exc:
        log.debug("malformed %s; no place", exc)
        return None
    if not valid(lat, lon):
        log.debug("GPS position (%s, %s) is no real position; no place", lat, lon)
        return None
    return Position(lat, lon)


def read(
    path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES
) -> Position | None:
    """The photo's position, None if it has none; MetadataError if its sidecar is unreadable."""
    side = metadata.sidecar(path, cfg)
    position = _position({}, _read_xmp(side, True, max_bytes)) if os.path.exists(side) else None
    if position is not None:
        return position
    try:
        photo_exif, photo_xmp = _read_photo(path, max_bytes)
    except metadata.MetadataError as exc:  # exiv2 cannot read it: what sidecars are for
        log.debug("%s", exc)
        return None
    return _position(photo_exif, photo_xmp)


def filler(place: Place) -> metadata.Fill:
    """The location fields of `place` that the photo, its sidecar and its IPTC IIM leave
    empty, with our record of them: changes for `metadata.write`'s own rewrite."""
    wanted = {COUNTRY: place.country, COUNTRY_CODE: place.country_code}
    wanted |= {STATE: place.state, CITY: place.city}

    def fill(taken: dict[str, object], iim: dict[str, object]) -> dict[str, object]:
        new = {k: v for k, v in wanted.items() if v and not taken.get(k) and not iim.get(_IIM[k])}
        if not new:
            return {}
        return {**new, R_LOCATION: [f"{k}={v}" for k, v in (_filled(taken) | new).items()]}

    return fill


def undo(path: Path, cfg: WriteConfig, max_bytes: int = safeopen.DEFAULT_MAX_BYTES) -> Path | None:
    """Remove the location fields we filled that still say what we wrote, and our record of them."""
    dest = metadata.target(path, cfg)
    is_side = dest == metadata.sidecar(path, cfg)
    if is_side and not os.path.exists(dest):
        return None
    xmp = _read_xmp(dest, is_side, max_bytes)
    if R_LOCATION not in xmp:
        return None
    ours = {k: v for k, v in _filled(xmp).items() if xmp.get(k) == v}
    if not cfg.dry_run:
        _edit(dest, is_side, dict.fromkeys([*ours, R_LOCATION]), max_bytes)
    return dest


def _filled(xmp: dict[str, object]) -> dict[str, str]:
    items = xmp.get(R_LOCATION) or []
    pairs = (str(item).partition("=") for item in (items if isinstance(items, list) else [items]))
    return {k: v for k, sep, v in pairs if sep and k in _IIM}


def _read_photo(path: Path, max_bytes: int) -> tuple[dict[str, str], dict[str, object]]:
    """EXIF and XMP of a photo."""
    with _open(path, False, max_bytes) as image:
        return image.read_exif(), image.read_xmp()


def _read_xmp(path: Path, sidecar: bool, max_bytes: int) -> dict[str, object]:
    with _open(path, sidecar, max_bytes) as image:
        return image.read_xmp()


def _open(path: Path, sidecar: bool, max_bytes: int) -> pyexiv2.ImageData:
    """The file in pyexiv2 as metadata.py opens it (a sidecar's XMP inside a PNG carrier)."""
    try:
        data, _ = safeopen.read_regular(path, max_bytes)  # a FIFO never blocks
        return metadata._open_bytes(data, sidecar)
    except OSError as exc:
        raise metadata.MetadataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (RuntimeError, ValueError) as exc:
        raise metadata.MetadataError(
            f"{path}: cannot read metadata: {exc}".splitlines()[0]
        ) from exc


def _edit(path: Path, sidecar: bool, changes: dict[str, object], max_bytes: int) -> None:
    """Apply XMP changes (None deletes) to a photo or sidecar: temp file, fsync, rename."""
    with _open(path, sidecar, max_bytes) as image:
        try:
            image.modify_xmp(changes)
            data = (
                (metadata._XML_DECL + image.read_raw_xmp()).encode()
                if sidecar
                else image.get_bytes()
            )
        except (RuntimeError, ValueError) as exc:
            raise metadata.MetadataError(
                f"{path}: cannot write location: {exc}".splitlines()[0]
            ) from exc
    fileio.atomic_write(path, data, mode=os.stat(path).st_mode & 0o7777)
