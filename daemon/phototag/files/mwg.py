"""MWG face regions and IPTC PersonInImage as XMP properties: pure functions, no files here.

The model is the flat key -> value dict pyexiv2 reads (`Xmp.mwg-rs.Regions/mwg-rs:RegionList[2]/
mwg-rs:Area/stArea:x` -> "0.5", structures as `type="Struct"`), so what another program wrote
(digiKam's, Lightroom's, Picasa's and Immich's regions, their extra fields, other region types)
is carried over key by key, never re-interpreted. An area (MWG 2.0, stArea with unit
`normalized`) is the centre x, y and the size w, h as fractions of the image as displayed, that
is after its Exif orientation; AppliedToDimensions says the size of that image in pixels.

Our regions are known by our record (`phototag:Regions`, one "x,y,w,h name" item each, the
area as written): a region the user renames or moves in another program is theirs from then on.
A region of ours the user deleted, renamed or moved names someone who is not there (or whom the
user placed themselves): its name goes to `phototag:RemovedFaces` and is not written into that
photo again. `phototag:PersonInImage` lists the PersonInImage names we added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass

REGIONS = "Xmp.mwg-rs.Regions"
LIST = REGIONS + "/mwg-rs:RegionList"
DIMS = REGIONS + "/mwg-rs:AppliedToDimensions"
PERSONS = "Xmp.iptcExt.PersonInImage"
R_REGIONS = "Xmp.phototag.Regions"
R_PERSONS = "Xmp.phototag.PersonInImage"
R_REMOVED = "Xmp.phototag.RemovedFaces"  # names of our regions the user deleted or renamed
ARRAY_FORMS = {PERSONS: "Bag", R_REGIONS: "Bag", R_PERSONS: "Bag", R_REMOVED: "Bag"}
CONTAINERS = frozenset({'type="Struct"', 'type="Bag"', 'type="Seq"', 'type="Alt"'})
_STRUCT, _BAG = 'type="Struct"', 'type="Bag"'
_ITEM = re.compile(r"\[(\d+)\](.*)", re.DOTALL)
_AREA = "/mwg-rs:Area/stArea:"

Item = dict[str, object]  # one region: key suffix after `RegionList[n]` -> value ("": itself)


class Malformed(ValueError):
    """The photo's RegionInfo cannot take our regions without damaging another program's."""


@dataclass(frozen=True)
class Region:
    """One named face; its area is normalised to the displayed image: centre x, y and w, h."""

    name: str
    x: float
    y: float
    w: float
    h: float
    ours: bool = False  # True: written by phototag; False: the user's or another program's


def items(xmp: dict[str, object]) -> list[Item]:
    """The RegionList's items in their order."""
    found: dict[int, Item] = {}
    for key, value in xmp.items():
        if key.startswith(LIST + "[") and (m := _ITEM.fullmatch(key, len(LIST))):
            found.setdefault(int(m[1]), {})[m[2]] = value
    return [found[i] for i in sorted(found)]


def _face_name(item: Item) -> str | None:
    name = item.get("/mwg-rs:Name")
    if item.get("/mwg-rs:Type") != "Face" or not isinstance(name, str) or not name.strip():
        return None
    return name.strip()


def face(item: Item, ours: frozenset[str] = frozenset()) -> Region | None:
    """The item as a named face region; None when it is another kind, unnamed or malformed."""
    name = _face_name(item)
    if name is None:
        return None
    if item.get(_AREA + "unit", "normalized") != "normalized":
        return None  # MWG allows no other unit
    try:
        x, y, w, h = (float(str(item[_AREA + k])) for k in "xywh")
    except (KeyError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or not (0 <= x <= 1 and 0 <= y <= 1):
        return None
    if not (0 < w <= 1 and 0 < h <= 1):
        return None
    return Region(name, x, y, w, h, _record_item(item) in ours)


def faces(xmp: dict[str, object]) -> tuple[list[Region], int]:
    """Named face regions (ours marked), and how many Face items are malformed."""
    ours = frozenset(_recorded(xmp))
    found, bad = [], 0
    for item in items(xmp):
        region = face(item, ours)
        if region is not None:
            found.append(region)
        elif _face_name(item) is not None:
            bad += 1
    return found, bad


def persons(xmp: dict[str, object]) -> list[str]:
    return _as_list(xmp.get(PERSONS))


def plan(
    xmp: dict[str, object],
    regions: list[Region],
    size: tuple[int, int],
    others: Collection[str] = (),
) -> dict[str, object]:
    """The values of the region and PersonInImage properties after ours become `regions`.

    The user's items keep their order and every field; ours follow. A region of ours named as
    one of the user's named faces is left out (theirs wins). `others` are PersonInImage names
    in the file we do not write (the photo behind a sidecar): they count as the user's.
    Raises Malformed when the user's RegionInfo has no room for ours.
    """
    old = items(xmp)
    recorded = _recorded(xmp)
    kept = [i for i in old if _record_item(i) not in recorded]
    present = {_record_item(i) for i in old}
    removed = list(
        dict.fromkeys(
            [*rejected(xmp), *(item.partition(" ")[2] for item in recorded if item not in present)]
        )
    )
    taken = {_face_name(i) for i in kept} | set(removed)  # a malformed area still names
    new = [r for r in _unique_regions(regions) if r.name not in taken]
    added = [_item(r) for r in new]
    values: dict[str, object] = {}
    if added or len(kept) < len(old):
        values = _tree(xmp, kept, added, old, size)
    ours_persons = set(_as_list(xmp.get(R_PERSONS)))
    theirs = [p for p in persons(xmp) if p not in ours_persons]
    names = list(dict.fromkeys(r.name for r in new if r.name not in {*theirs, *others}))
    values[PERSONS] = [*theirs, *names] or None
    values[R_PERSONS] = names or None
    values[R_REGIONS] = [_record_item(i) for i in added] or None
    values[R_REMOVED] = removed or None
    return values


def _tree(
    xmp: dict[str, object],
    kept: list[Item],
    added: list[Item],
    old: list[Item],
    size: tuple[int, int],
) -> dict[str, object]:
    """Every property under mwg-rs:Regions: the user's items, then ours (None: deleted)."""
    tree = {k: v for k, v in xmp.items() if k.startswith(REGIONS)}
    want: dict[str, object] = {}
    if kept or added:
        if tree.get(REGIONS, _STRUCT) != _STRUCT or not _container(tree.get(LIST, _BAG)):
            raise Malformed("its mwg-rs:RegionInfo is not a structure with a RegionList")
        want = {k: v for k, v in tree.items() if not k.startswith(LIST + "[")}
        want = {REGIONS: _STRUCT, **want, LIST: tree.get(LIST, _BAG)}
        if added and not any(k.startswith(DIMS) for k in want):
            w, h = size
            want |= {DIMS: _STRUCT, f"{DIMS}/stDim:w": str(w), f"{DIMS}/stDim:h": str(h)}
            want[f"{DIMS}/stDim:unit"] = "pixel"
        for n, item in enumerate(kept, 1):
            if old[n - 1] is not item and any(not isinstance(v, str) for v in item.values()):
                raise Malformed("a region of another program holds a list phototag cannot move")
        for n, item in enumerate(kept + added, 1):
            want |= {f"{LIST}[{n}]{k}": v for k, v in item.items()}
    return {k: None for k in tree if k not in want} | want


def recorded(values: dict[str, object]) -> list[str]:
    """The names of our regions in `plan`'s values."""
    return [item.partition(" ")[2] for item in _as_list(values.get(R_REGIONS))]


def rejected(xmp: dict[str, object]) -> list[str]:
    """Names of our regions the user deleted, renamed or moved."""
    return _as_list(xmp.get(R_REMOVED))


def cleared(xmp: dict[str, object]) -> dict[str, object]:
    """The values after our regions, names and record are taken out (undo)."""
    return plan(xmp, [], (0, 0)) | {R_REMOVED: None}


def changes(xmp: dict[str, object], values: dict[str, object]) -> dict[str, object]:
    """Only what differs from the file: deletions first (exiv2 erases a key's subtree)."""
    diff = {k: v for k, v in values.items() if xmp.get(k) != v}
    return {k: v for k, v in diff.items() if v is None} | {
        k: v for k, v in diff.items() if v is not None
    }


def _container(value: object) -> bool:
    return isinstance(value, str) and value in CONTAINERS


def _item(r: Region) -> Item:
    return {
        "": _STRUCT,
        "/mwg-rs:Name": r.name,
        "/mwg-rs:Type": "Face",
        "/mwg-rs:Area": _STRUCT,
        _AREA + "x": _num(r.x),
        _AREA + "y": _num(r.y),
        _AREA + "w": _num(r.w),
        _AREA + "h": _num(r.h),
        _AREA + "unit": "normalized",
    }


def _record_item(item: Item) -> str:
    """Our record's item for a region: its area, numbers as we write them, and its name (so a
    program that rewrites "0.25" as "0.250000" leaves the region ours)."""
    area = ",".join(_canon(item.get(_AREA + k, "")) for k in "xywh")
    return f"{area} {item.get('/mwg-rs:Name', '')}"


def _recorded(xmp: dict[str, object]) -> list[str]:
    """Our record's items, in `_record_item`'s form."""
    out = []
    for item in _as_list(xmp.get(R_REGIONS)):
        area, _, name = item.partition(" ")
        out.append(f"{','.join(_canon(v) for v in area.split(','))} {name}")
    return out


def _canon(value: object) -> str:
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return _num(number) if math.isfinite(number) else str(value)


def _num(v: float) -> str:
    """Six decimals (a 100 MP photo's pixel is 1e-4 wide), no trailing zeros."""
    return f"{min(max(v, 0.0), 1.0):.6f}".rstrip("0").rstrip(".") or "0"


def _unique_regions(regions: list[Region]) -> list[Region]:
    """One region per name, the first: a person is in a photo once."""
    seen: dict[str, Region] = {}
    for r in regions:
        name = r.name.strip()
        if name and name not in seen:
            seen[name] = Region(name, r.x, r.y, r.w, r.h, True)
    return list(seen.values())


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
