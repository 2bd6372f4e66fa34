"""The one keyword model: what dc:subject, lr:hierarchicalSubject, digiKam:TagsList and IPTC
Keywords should hold, as pure functions on lists (no files here).

Every photo manager reads a different field first (digiKam TagsList, darktable
lr:hierarchicalSubject plus IPTC, MWG readers dc:subject reconciled with IPTC), so every XMP field
tells the whole story: the user's keywords and ours. Flat user keywords stay flat (they appear
as one-level entries in the hierarchy fields, as Lightroom and digiKam write them); a user's path
from either hierarchy field is mirrored into the other and its leaf (and, with `ancestors`, its
levels) into dc:subject; IPTC gets the dc:subject keywords that stand alone (not the levels of a
hierarchy entry, which darktable would show twice), cut to 64 bytes.

What the user wrote is remembered (`Record.mirrored`), so a keyword the user deletes from any one
field is deleted from all of them at the next write rather than copied back from the others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from phototag.records import LEVEL_SEP, Tag

IPTC_MAX_BYTES = 64  # IPTC IIM limit for one keyword
DIGIKAM_SEP = "/"


@dataclass
class Record:
    """Our provenance record (phototag: XMP namespace)."""

    tags: list[Tag] = field(default_factory=list)  # the auto tags last written
    keywords: list[str] = field(default_factory=list)  # flat keywords we added
    paths: list[str] = field(default_factory=list)  # `|` paths we added
    removed: list[str] = field(default_factory=list)  # ours the user deleted
    removed_paths: list[str] = field(default_factory=list)
    mirrored: list[str] = field(default_factory=list)  # the user's entries at our last write
    faces: list[str] = field(default_factory=list)  # `People|Name` of the face regions we wrote
    model_version: str | None = None
    date: str | None = None


@dataclass
class Fields:
    """The keyword fields of one metadata holder (a photo or a sidecar)."""

    subject: list[str]
    hierarchical: list[str]
    tags_list: list[str]
    iptc: list[str]
    iptc_writable: bool  # False in sidecars, WebP, and legacy (non-UTF-8) IPTC we leave alone
    record: Record | None  # None: nothing of ours here


def plan(
    cur: Fields,
    other: Fields | None,
    tags: list[Tag],
    ancestors: bool | None,
    generic: Collection[str] = (),
    inherited: Iterable[str] = (),
) -> Fields:
    """The fields after setting our auto tags to `tags`; model version and date left to fill.

    `other` is the photo or sidecar that is not written (its keywords are not claimed as ours);
    `inherited` are user keywords carried into a new sidecar from the photo's IPTC. With
    `ancestors` None the parent levels are those the last write added: a face write
    (files/regions.py) keeps the tagger's choice. The record's `faces` (`People|Name`) are
    ours too, as keywords of their own without their root.
    """
    rec = cur.record or Record()
    gone = _deleted(cur, rec)
    removed = unique(rec.removed + [k for k in rec.keywords if k in gone])
    removed_paths = unique(rec.removed_paths + [p for p in rec.paths if p in gone])
    # Ours by this record, or by the other holder's (a sidecar darktable made from our photo).
    claimed = _claimed(other) if other else set()
    ours_ever = set(rec.keywords) | {iptc_value(k) for k in rec.keywords} | claimed
    ours_paths = set(rec.paths) | set(rec.removed_paths) | claimed

    entries = _hierarchy(cur)
    user_paths = [p for p in entries if LEVEL_SEP in p and p not in ours_paths and p not in gone]
    user_flat = [
        k
        for k in unique([*cur.subject, *_iptc_extras(cur), *inherited, *entries])
        if LEVEL_SEP not in k and k not in ours_ever and k not in gone
    ]
    user_levels = [lv for p in user_paths for lv in _levels(p, ancestors)]
    user_flat = unique(user_flat + user_levels)

    live = [t for t in tags if t.name not in removed and t.path not in removed_paths]
    faces = [t for t in _face_tags(rec) if t.name not in removed and t.path not in removed_paths]
    skip = {g.casefold() for g in generic}  # generic roots (`object`, `place`): path only
    parents = [
        level
        for t in live
        for level in (t.levels[:-1] if ancestors is not False else [])
        if level.casefold() not in skip and (ancestors or level in rec.keywords)
    ]
    names = [t.name for t in live + faces]  # a face's `People` root is never a keyword alone
    wanted = [k for k in unique(names + parents) if k not in removed]
    theirs = set(user_flat) | (set(flat(other)) - claimed if other else set())
    keywords = [k for k in wanted if k in rec.keywords or not {k, iptc_value(k)} & theirs]
    their_paths = set(user_paths) | (set(_hierarchy(other)) - claimed if other else set())
    paths = [
        p for p in unique(t.path for t in live + faces) if p in rec.paths or p not in their_paths
    ]

    flat_now = unique(user_flat + keywords)
    all_paths = unique(user_paths + paths)
    # The user's flat keywords stay flat entries (beside any path of ours with that leaf).
    levels = {lv for p in user_paths for lv in p.split(LEVEL_SEP)}
    hierarchy = [k for k in user_flat if k not in levels] + all_paths
    subject = _settle(cur.subject, flat_now)
    iptc = cur.iptc
    if cur.iptc_writable:
        iptc = _settle(cur.iptc, _iptc(subject, hierarchy, cur.iptc, set(rec.keywords + keywords)))
    mirrored = unique(user_flat + [e for e in hierarchy if e not in paths and e not in keywords])
    return Fields(
        subject=subject,
        hierarchical=_settle(cur.hierarchical, hierarchy),
        tags_list=_settle(cur.tags_list, [digikam(e) for e in hierarchy]),
        iptc=iptc,
        iptc_writable=cur.iptc_writable,
        record=replace(
            rec,
            # A keyword the user has (typed or accepted) is theirs, never ours as well.
            tags=[t for t in live if t.name not in user_flat and t.path not in user_paths],
            keywords=keywords,
            paths=paths,
            removed=removed,
            removed_paths=removed_paths,
            mirrored=mirrored,
        ),
    )


def _face_tags(rec: Record) -> list[Tag]:
    return [Tag(p) for p in rec.faces]


def _iptc(subject: list[str], hierarchy: list[str], iptc: list[str], ours: set[str]) -> list[str]:
    """IPTC Keywords: the dc:subject keywords that stand alone in the hierarchy (and the user's
    IPTC keywords as they are), not the levels of a hierarchy entry.

    darktable imports every IPTC keyword as a flat tag beside the lr:hierarchicalSubject paths, so
    `animal` and `owl` there would show twice beside `animal|bird|owl`. MWG readers lose nothing:
    with the IPTC digest current (or absent) they take dc:subject, which holds every keyword.
    """
    alone = {e for e in hierarchy if LEVEL_SEP not in e}
    kept = set(iptc) - {iptc_value(k) for k in ours}
    return unique(iptc_value(k) for k in subject if k in alone or iptc_value(k) in kept)


def accepted(cur: Fields, tag: Tag) -> Fields:
    """The fields after the user takes `tag` as their own keyword."""
    name, paths = tag.name, [tag.path] if LEVEL_SEP in tag.path else []
    rec = cur.record
    if rec is not None:
        rec = replace(
            rec,
            tags=[t for t in rec.tags if t.name != name and t.path not in paths],
            keywords=[k for k in rec.keywords if k != name],
            paths=[p for p in rec.paths if p not in paths],
            removed=[k for k in rec.removed if k != name],
            removed_paths=[p for p in rec.removed_paths if p not in paths],
            mirrored=unique([*rec.mirrored, name, *paths]),
        )
    return replace(
        cur,
        subject=_edit(cur.subject, set(), [name]),
        hierarchical=_edit(cur.hierarchical, set(), paths),
        tags_list=_edit(cur.tags_list, set(), [digikam(p) for p in paths]),
        # A keyword with a path is a level of it: not in IPTC (see `_iptc`).
        iptc=_edit(cur.iptc, set(), [] if paths else [iptc_value(name)])
        if cur.iptc_writable
        else cur.iptc,
        record=rec,
    )


def removed(cur: Fields, tag: Tag, negative: bool) -> Fields:
    """The fields after the user deletes `tag` (and, if ours or `negative`, rejects it)."""
    name, paths = tag.name, {tag.path} if LEVEL_SEP in tag.path else set()
    rec = cur.record
    if negative or (rec is not None and (name in rec.keywords or paths & set(rec.paths))):
        rec = rec or Record()
        rec = replace(
            rec,
            tags=[t for t in rec.tags if t.name != name and t.path not in paths],
            keywords=[k for k in rec.keywords if k != name],
            paths=[p for p in rec.paths if p not in paths],
            removed=unique([*rec.removed, name]),
            removed_paths=unique([*rec.removed_paths, *sorted(paths)]),
        )
    return replace(
        cur,
        subject=_edit(cur.subject, {name}, []),
        hierarchical=_edit(cur.hierarchical, paths, []),
        tags_list=_edit(cur.tags_list, {digikam(p) for p in paths}, []),
        iptc=_edit(cur.iptc, {iptc_value(name)}, []) if cur.iptc_writable else cur.iptc,
        record=rec,
    )


def flat(f: Fields) -> list[str]:
    """The holder's flat keywords: dc:subject, then IPTC keywords not already there."""
    return f.subject + _iptc_extras(f)


def _iptc_extras(f: Fields) -> list[str]:
    """IPTC keywords that are not just a dc:subject keyword cut to 64 bytes."""
    known = set(f.subject) | {iptc_value(k) for k in f.subject}
    return [k for k in f.iptc if k not in known]


def _hierarchy(f: Fields) -> list[str]:
    """lr:hierarchicalSubject and digiKam:TagsList entries, both in `|` form."""
    return unique(f.hierarchical + [e.replace(DIGIKAM_SEP, LEVEL_SEP) for e in f.tags_list])


def _claimed(f: Fields) -> set[str]:
    """What another holder's record says is ours (so it is never taken for the user's)."""
    rec = f.record or Record()
    return set(rec.keywords) | set(rec.paths) | {iptc_value(k) for k in rec.keywords}


def _deleted(cur: Fields, rec: Record) -> set[str]:
    """Entries present at our last write (ours or the user's) now missing from some field."""
    subject, iptc = set(cur.subject), set(cur.iptc)
    lr = set(cur.hierarchical)
    dk = {e.replace(DIGIKAM_SEP, LEVEL_SEP) for e in cur.tags_list}
    levels = {lv for p in lr | dk for lv in p.split(LEVEL_SEP) if LEVEL_SEP in p}
    gone = set()
    for k in unique(rec.keywords + rec.mirrored):
        in_hierarchy = k in lr and k in dk
        if (LEVEL_SEP in k or (k in rec.mirrored and k not in levels)) and not in_hierarchy:
            gone.add(k)
        in_iptc = not cur.iptc_writable or k not in lr | dk or iptc_value(k) in iptc
        if LEVEL_SEP not in k and (k not in subject or not in_iptc):
            gone.add(k)
    for p in rec.paths:
        if p not in lr or p not in dk:
            gone.add(p)
    return gone


def _levels(path: str, ancestors: bool) -> list[str]:
    parts = path.split(LEVEL_SEP)
    return parts if ancestors else parts[-1:]


def _settle(items: list[str], want: list[str]) -> list[str]:
    """`want`, keeping the order the field already has for what stays."""
    return _edit(items, set(items) - set(want), want)


def _edit(items: list[str], drop: set[str], add: list[str]) -> list[str]:
    """`items` in their order without `drop`, then the new ones of `add`."""
    kept = [x for x in unique(items) if x not in drop]
    return kept + [x for x in unique(add) if x not in kept]


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def digikam(path: str) -> str:
    return path.replace(LEVEL_SEP, DIGIKAM_SEP)


def iptc_value(keyword: str) -> str:
    """The keyword cut to IPTC's 64 bytes on a UTF-8 character boundary."""
    return keyword.encode()[:IPTC_MAX_BYTES].decode("utf-8", "ignore")
