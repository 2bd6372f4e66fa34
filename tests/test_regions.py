"""Named faces in files: MWG regions, PersonInImage and People keywords, read back by exiftool
and exiv2; other programs' regions (made with exiftool as digiKam writes them) stay theirs."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phototag.config import WriteConfig
from phototag.files import metadata, mwg, regions
from phototag.files.regions import Region
from phototag.records import Tag
from tests.albums import run
from tests.conftest import (
    PHOTOS,
    exiftool,
    exiftool_keywords,
    exiftool_read,
    exiftool_warnings,
    need_shared,
)

pytestmark = pytest.mark.skipif(
    not (shutil.which("exiftool") and shutil.which("exiv2")), reason="exiftool/exiv2 not installed"
)

SIZE = (512, 355)  # face.jpg, as displayed
ALICE = Region("Alice", 0.25, 0.4, 0.1, 0.15)
BOB = Region("Bob", 0.7, 0.35, 0.08, 0.12)
# digiKam's face region: a named Face, its area, the image size, and a field of its own.
DIGIKAM = (
    "-RegionInfo={AppliedToDimensions={W=512,H=355,Unit=pixel},RegionList=[{Area={X=0.5,"
    "Y=0.45,W=0.12,H=0.18,Unit=normalized},Name=Grandma,Type=Face,Rotation=0}]}"
)


def photo(tmp_path: Path, *exiftool_args: str) -> Path:
    dest = tmp_path / "face.jpg"
    shutil.copyfile(need_shared(PHOTOS) / "face.jpg", dest)
    dest.chmod(0o644)
    if exiftool_args:
        exiftool(dest, *exiftool_args)
    return dest


def exif_faces(path: Path) -> dict[str, list[object]]:
    """Region names, areas and PersonInImage as exiftool, an independent reader, sees them."""
    names = ["RegionName", "RegionType", "RegionAreaX", "RegionAreaY", "RegionAreaW"]
    names += ["RegionAreaH", "RegionAppliedToDimensionsW", "RegionAppliedToDimensionsH"]
    tags = ("-XMP-mwg-rs:all", "-XMP-iptcExt:PersonInImage")
    found = exiftool_read([path], *tags, numeric=True)[path]
    return {k: v for k, v in found.items() if k in [*names, "PersonInImage"]}


def exiv2_xmp(path: Path) -> dict[str, str]:
    """XMP properties as exiv2's own command line prints them."""
    out = subprocess.run(["exiv2", "-px", str(path)], capture_output=True, check=True).stdout
    lines = (line.split(None, 3) for line in out.decode().splitlines())
    return {p[0]: p[3] if len(p) > 3 else "" for p in lines}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def theirs(path: Path) -> dict[str, str]:
    """exiv2's view of the first region (the user's), its index aside."""
    pre = f"{mwg.LIST}[1]"
    return {k[len(pre) :]: v for k, v in exiv2_xmp(path).items() if k.startswith(pre)}


def test_ours_read_back_by_exiftool_and_exiv2_in_every_keyword_field(tmp_path: Path) -> None:
    path = photo(tmp_path)
    cfg, before_warnings = WriteConfig(), exiftool_warnings(path)
    assert regions.write(path, [ALICE, BOB], SIZE, cfg) == path
    seen = exif_faces(path)
    assert seen["RegionName"] == ["Alice", "Bob"]
    assert seen["RegionType"] == ["Face", "Face"]
    assert seen["RegionAreaX"] == [0.25, 0.7] and seen["RegionAreaY"] == [0.4, 0.35]
    assert seen["RegionAreaW"] == [0.1, 0.08] and seen["RegionAreaH"] == [0.15, 0.12]
    assert seen["RegionAppliedToDimensionsW"] == [512]
    assert seen["RegionAppliedToDimensionsH"] == [355]
    assert seen["PersonInImage"] == ["Alice", "Bob"]
    xmp = exiv2_xmp(path)
    assert xmp[f"{mwg.LIST}[2]/mwg-rs:Name"] == "Bob"
    assert xmp[f"{mwg.LIST}[1]/mwg-rs:Area/stArea:unit"] == "normalized"
    assert xmp[f"{mwg.DIMS}/stDim:unit"] == "pixel"
    assert xmp[mwg.PERSONS] == "Alice, Bob"
    assert exiftool_keywords(path) == {
        "Subject": ["Alice", "Bob"],
        "HierarchicalSubject": ["People|Alice", "People|Bob"],
        "TagsList": ["People/Alice", "People/Bob"],
        "Keywords": [],  # levels of People|Name: dc:subject has them, IPTC not (darktable)
    }
    assert regions.read(path, cfg) == [
        Region("Alice", 0.25, 0.4, 0.1, 0.15, True),
        Region("Bob", 0.7, 0.35, 0.08, 0.12, True),
    ]
    assert exiftool_warnings(path) <= before_warnings  # nothing our write introduced


def test_a_digikam_region_is_the_users_and_survives_our_write_and_undo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = photo(tmp_path, DIGIKAM, "-XMP-iptcExt:PersonInImage=Grandma", "-XMP:Subject=beach")
    cfg = WriteConfig()
    grandma = Region("Grandma", 0.5, 0.45, 0.12, 0.18)
    assert regions.read(path, cfg) == [grandma]
    user_region, before_warnings = theirs(path), exiftool_warnings(path)

    regions.write(path, [ALICE], SIZE, cfg)
    assert regions.read(path, cfg) == [grandma, replace(ALICE, ours=True)]
    assert theirs(path) == user_region  # every field of digiKam's region, Rotation too
    seen = exif_faces(path)
    assert seen["RegionName"] == ["Grandma", "Alice"]
    assert seen["PersonInImage"] == ["Grandma", "Alice"]
    assert seen["RegionAppliedToDimensionsW"] == [512]  # digiKam's, kept
    assert exiftool_warnings(path) <= before_warnings

    status, _, err = run(capsys, "undo", str(path))
    assert status == 0, err
    seen = exif_faces(path)
    assert seen["RegionName"] == ["Grandma"] and seen["PersonInImage"] == ["Grandma"]
    assert theirs(path) == user_region
    assert exiftool_keywords(path)["Subject"] == ["beach"]
    assert not [k for k in exiv2_xmp(path) if k.startswith("Xmp.phototag.")]
    assert regions.read(path, cfg) == [grandma]


def test_writing_twice_leaves_the_file_unchanged(tmp_path: Path) -> None:
    path = photo(tmp_path, DIGIKAM)
    cfg = WriteConfig()
    regions.write(path, [ALICE, BOB], SIZE, cfg)
    digest, mtime = sha(path), path.stat().st_mtime_ns
    regions.write(path, [ALICE, BOB], SIZE, cfg)
    assert (sha(path), path.stat().st_mtime_ns) == (digest, mtime)


def test_ours_are_replaced_and_the_users_stay(tmp_path: Path) -> None:
    path = photo(tmp_path, DIGIKAM, "-XMP-iptcExt:PersonInImage=Bob", "-XMP:Subject=Bob")
    cfg = WriteConfig()
    regions.write(path, [ALICE, BOB], SIZE, cfg)
    seen = exif_faces(path)
    assert seen["RegionName"] == ["Grandma", "Alice", "Bob"]
    assert seen["PersonInImage"] == ["Bob", "Alice"]  # the user's Bob, not added twice
    regions.write(path, [Region("Carol", 0.3, 0.3, 0.1, 0.1)], SIZE, cfg)
    seen = exif_faces(path)
    assert seen["RegionName"] == ["Grandma", "Carol"]
    assert seen["PersonInImage"] == ["Bob", "Carol"]  # the user's Bob stays
    assert exiftool_keywords(path) == {
        "Subject": ["Bob", "Carol"],  # the user's Bob stays; our People|Bob path went
        "HierarchicalSubject": ["Bob", "People|Carol"],
        "TagsList": ["Bob", "People/Carol"],
        "Keywords": ["Bob"],  # the user's; our Carol is a level of People|Carol
    }
    regions.write(path, [], SIZE, cfg)
    assert exif_faces(path)["RegionName"] == ["Grandma"]
    assert exif_faces(path)["PersonInImage"] == ["Bob"]


def test_a_face_named_as_the_users_region_is_theirs_not_written_twice(tmp_path: Path) -> None:
    path = photo(tmp_path, DIGIKAM)
    regions.write(path, [Region("Grandma", 0.51, 0.46, 0.1, 0.1), ALICE], SIZE, WriteConfig())
    assert exif_faces(path)["RegionName"] == ["Grandma", "Alice"]


def test_retagging_keeps_face_keywords_and_faces_keep_auto_keywords(tmp_path: Path) -> None:
    path = photo(tmp_path, "-XMP:Subject=beach")
    cfg = WriteConfig()
    metadata.write(path, [Tag("object|kite", 0.8), Tag("animal|bird", 0.7)], "m1", cfg, ["object"])
    auto = exiftool_keywords(path)
    regions.write(path, [ALICE], SIZE, cfg)
    with_face = exiftool_keywords(path)
    assert with_face == {
        k: [*v, *({"Subject": ["Alice"]}.get(k, []))] or v for k, v in auto.items()
    } | {
        "HierarchicalSubject": [*auto["HierarchicalSubject"], "People|Alice"],
        "TagsList": [*auto["TagsList"], "People/Alice"],
    }
    metadata.write(path, [Tag("object|kite", 0.8), Tag("animal|bird", 0.7)], "m1", cfg, ["object"])
    assert exiftool_keywords(path) == with_face  # a re-tag leaves our face keywords
    metadata.write(path, [Tag("animal|bird", 0.7)], "m2", cfg, ["object"])
    now = exiftool_keywords(path)
    assert "kite" not in now["Subject"] and "Alice" in now["Subject"]
    assert "People|Alice" in now["HierarchicalSubject"]
    metadata.undo(path, cfg)
    assert exiftool_keywords(path)["Subject"] == ["beach"]
    assert "RegionName" not in exif_faces(path)


def test_a_face_keyword_the_user_deleted_is_not_added_again(tmp_path: Path) -> None:
    path = photo(tmp_path)
    cfg = WriteConfig()
    regions.write(path, [ALICE], SIZE, cfg)
    metadata.remove(path, Tag("People|Alice"), cfg)
    regions.write(path, [ALICE, BOB], SIZE, cfg)
    assert exiftool_keywords(path)["HierarchicalSubject"] == ["People|Bob"]
    assert exif_faces(path)["RegionName"] == ["Alice", "Bob"]  # the region still says who


def test_sidecar_mode_keeps_the_photo_and_reads_both(tmp_path: Path) -> None:
    path = photo(tmp_path, DIGIKAM)
    cfg = WriteConfig(mode="sidecar")
    digest = sha(path)
    side = regions.write(path, [ALICE], SIZE, cfg)
    assert side == tmp_path / "face.jpg.xmp" and sha(path) == digest
    assert exif_faces(side)["RegionName"] == ["Grandma", "Alice"]  # a copy of the photo's XMP
    assert exiv2_xmp(side)[f"{mwg.LIST}[2]/mwg-rs:Name"] == "Alice"
    assert [r.name for r in regions.read(path, cfg)] == ["Grandma", "Alice"]
    assert exiftool_keywords(side)["HierarchicalSubject"] == ["People|Alice"]
    metadata.undo(path, cfg)
    assert exif_faces(side)["RegionName"] == ["Grandma"] and sha(path) == digest


def test_names_without_a_region_are_persons_not_regions(tmp_path: Path) -> None:
    path = photo(tmp_path, "-XMP-iptcExt:PersonInImage=Dora", "-XMP-iptcExt:PersonInImage=Ed")
    cfg = WriteConfig()
    regions.write(path, [ALICE], SIZE, cfg)
    assert regions.read(path, cfg) == [replace(ALICE, ours=True)]
    assert regions.persons(path, cfg) == ["Dora", "Ed"]


def test_rotated_photo_areas_are_for_the_displayed_image(tmp_path: Path) -> None:
    """MWG 2.0: areas and AppliedToDimensions are for the image with its orientation applied;
    phototag stores them as the caller gives them for the displayed image, and reads them back
    unchanged (no rotation on either side)."""
    path = photo(tmp_path, "-Orientation#=6")  # stored 512x355, displayed 355x512
    cfg = WriteConfig()
    regions.write(path, [ALICE], (355, 512), cfg)
    seen = exif_faces(path)
    assert (seen["RegionAppliedToDimensionsW"], seen["RegionAppliedToDimensionsH"]) == (
        [355],
        [512],
    )
    assert regions.read(path, cfg) == [replace(ALICE, ours=True)]


def test_malformed_areas_are_skipped_with_one_line_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = DIGIKAM.replace("X=0.5", "X=left").replace("W=0.12", "W=0")
    path = photo(tmp_path, bad)
    cfg = WriteConfig()
    with caplog.at_level(logging.WARNING):
        assert regions.read(path, cfg) == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == [f"{path}: 1 named face region(s) with a malformed area ignored"]
    user_region = theirs(path)
    regions.write(path, [ALICE], SIZE, cfg)
    assert theirs(path) == user_region  # theirs, kept as it was
    assert exif_faces(path)["RegionName"] == ["Grandma", "Alice"]


@pytest.mark.parametrize(
    "region, size",
    [
        (Region("", 0.5, 0.5, 0.1, 0.1), SIZE),
        (Region("A|B", 0.5, 0.5, 0.1, 0.1), SIZE),
        (Region("Alice", 1.5, 0.5, 0.1, 0.1), SIZE),
        (Region("Alice", 0.5, 0.5, 0.0, 0.1), SIZE),
        (Region("Alice", float("nan"), 0.5, 0.1, 0.1), SIZE),
        (ALICE, (0, 355)),
    ],
)
def test_a_callers_bad_region_is_refused_before_any_write(
    tmp_path: Path, region: Region, size: tuple[int, int]
) -> None:
    path = photo(tmp_path)
    digest = sha(path)
    with pytest.raises(ValueError):
        regions.write(path, [region], size, WriteConfig())
    assert sha(path) == digest


def test_plan_renumbers_the_users_items_after_ours_went() -> None:
    """Pure: a user's region after ours moves up, key by key, ours go, theirs keep their fields."""
    base = mwg.plan({}, [ALICE], SIZE)
    xmp = {k: v for k, v in base.items() if v is not None}
    user = {f"{mwg.LIST}[2]": 'type="Struct"', f"{mwg.LIST}[2]/mwg-rs:Type": "Pet"}
    user[f"{mwg.LIST}[2]/mwg-rs:Description"] = "Rex"
    xmp |= user
    after = mwg.plan(xmp, [], SIZE)
    assert after[f"{mwg.LIST}[1]/mwg-rs:Type"] == "Pet"
    assert after[f"{mwg.LIST}[1]/mwg-rs:Description"] == "Rex"
    assert after[f"{mwg.LIST}[2]/mwg-rs:Type"] is None
    assert after[f"{mwg.LIST}[1]/mwg-rs:Name"] is None
    assert after[mwg.PERSONS] is None and after[mwg.R_REGIONS] is None
    changes = mwg.changes(xmp, after)
    deleted = [k for k, v in changes.items() if v is None]
    assert list(changes)[: len(deleted)] == deleted  # deletions first
    xmp[f"{mwg.LIST}[2]/mwg-rs:Extensions"] = ["a", "b"]  # a list exiv2 cannot say Bag or Seq
    with pytest.raises(mwg.Malformed):
        mwg.plan(xmp, [], SIZE)


def test_one_region_per_name_and_numbers_cut_to_six_decimals() -> None:
    values = mwg.plan(
        {}, [Region("Ann", 1 / 3, 0.5, 0.1, 0.1), Region("Ann", 0.1, 0.1, 0.1, 0.1)], SIZE
    )
    assert values[f"{mwg.LIST}[1]/mwg-rs:Area/stArea:x"] == "0.333333"
    assert f"{mwg.LIST}[2]" not in values
    assert values[mwg.R_REGIONS] == ["0.333333,0.5,0.1,0.1 Ann"]


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_other_formats_in_place_and_undone(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    path = tmp_path / f"face{suffix}"
    with Image.open(need_shared(PHOTOS) / "face.jpg") as img:
        img.save(path)
    exiftool(path, DIGIKAM)
    cfg = WriteConfig()
    assert regions.write(path, [ALICE], SIZE, cfg) == path
    assert exif_faces(path)["RegionName"] == ["Grandma", "Alice"]
    assert exiv2_xmp(path)[f"{mwg.LIST}[2]/mwg-rs:Name"] == "Alice"
    status, _, err = run(capsys, "undo", str(path))
    assert status == 0, err
    assert exif_faces(path)["RegionName"] == ["Grandma"]


def test_a_region_of_ours_the_user_deleted_is_not_written_again(tmp_path: Path) -> None:
    path = photo(tmp_path)
    cfg = WriteConfig()
    regions.write(path, [ALICE, BOB], SIZE, cfg)
    # In digiKam the user deletes the Alice face: its RegionInfo is written anew without it.
    exiftool(
        path,
        "-RegionInfo={AppliedToDimensions={W=512,H=355,Unit=pixel},RegionList=[{Area={X=0.7,"
        "Y=0.35,W=0.08,H=0.12,Unit=normalized},Name=Bob,Type=Face}]}",
    )
    regions.write(path, [ALICE, BOB], SIZE, cfg)
    assert regions.read(path, cfg) == [replace(BOB, ours=True)]
    assert regions.rejected(path, cfg) == ["Alice"]
    assert exif_faces(path)["PersonInImage"] == ["Bob"]
    assert exiftool_keywords(path)["HierarchicalSubject"] == ["People|Bob"]


def test_a_format_exiv2_cannot_write_gets_a_sidecar_and_undo_empties_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bird.bmp"
    shutil.copyfile(need_shared(PHOTOS) / "bird.bmp", path)
    digest = sha(path)
    side = regions.write(path, [ALICE], SIZE, WriteConfig())
    assert side == tmp_path / "bird.bmp.xmp" and sha(path) == digest
    assert exif_faces(side)["RegionName"] == ["Alice"]
    assert exiftool_warnings(side) == set()
    status, _, err = run(capsys, "undo", str(path))
    assert status == 0, err
    assert not side.exists()  # it held only ours


@pytest.mark.parametrize(
    "regions_xml",
    [
        "<mwg-rs:Regions>Grandma at the left</mwg-rs:Regions>",
        '<mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:RegionList><rdf:Bag>'
        "<rdf:li>Grandma</rdf:li></rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>",
    ],
    ids=["text", "list-of-text"],
)
def test_regioninfo_that_is_no_structure_refuses_with_one_line(
    tmp_path: Path, regions_xml: str
) -> None:
    path = photo(tmp_path)
    packet = tmp_path / "bad.xmp"
    packet.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        '22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:mwg-rs="http://www.'
        f'metadataworkinggroup.com/schemas/regions/">{regions_xml}'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    exiftool(path, f"-xmp<={packet}")
    digest = sha(path)
    cfg = WriteConfig()
    assert regions.read(path, cfg) == []
    with pytest.raises(metadata.MetadataError) as err:
        regions.write(path, [ALICE], SIZE, cfg)
    assert str(err.value) == (
        f"{path}: its mwg-rs:RegionInfo is not a structure with a RegionList; left as it is"
    )
    assert sha(path) == digest


def test_a_users_region_after_ours_moves_up_whole_when_ours_go(tmp_path: Path) -> None:
    path = photo(tmp_path, DIGIKAM)
    cfg = WriteConfig()
    regions.write(path, [ALICE], SIZE, cfg)
    # Then digiKam adds a face after ours, with a description.
    exiftool(
        path,
        "-XMP-mwg-rs:RegionList+={Area={X=0.6,Y=0.6,W=0.1,H=0.1,Unit=normalized},Name=Dora,"
        "Type=Face,Description=at the back}",
    )
    regions.write(path, [], SIZE, cfg)  # nobody of ours is in it any more
    dora = Region("Dora", 0.6, 0.6, 0.1, 0.1)
    assert regions.read(path, cfg) == [Region("Grandma", 0.5, 0.45, 0.12, 0.18), dora]
    xmp = exiv2_xmp(path)
    assert xmp[f"{mwg.LIST}[2]/mwg-rs:Description"] == "at the back"
    assert not [k for k in xmp if k.startswith(f"{mwg.LIST}[3]") or k.startswith("Xmp.phototag")]
    assert "Alice" not in exiftool_keywords(path)["Subject"]


def _apply(xmp: dict[str, object], values: dict[str, object]) -> dict[str, object]:
    out = dict(xmp)
    for k, v in mwg.changes(xmp, values).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_unit = st.floats(0, 1, allow_nan=False)
_size = st.floats(0.001, 1, allow_nan=False)
_names = st.text("abcÄé -'", min_size=1, max_size=6).filter(lambda s: s.strip() == s)
_user_items = st.lists(
    st.fixed_dictionaries(
        {"": st.just('type="Struct"'), "/mwg-rs:Type": st.sampled_from(["Face", "Pet", "Focus"])},
        optional={"/mwg-rs:Name": _names, "/mwg-rs:Area/stArea:x": st.sampled_from(["0.5", "x"])},
    ),
    max_size=4,
)
_ours = st.lists(st.builds(Region, _names, _unit, _unit, _size, _size), max_size=4)


@settings(max_examples=200, deadline=None)
@given(user=_user_items, first=_ours, second=_ours)
def test_plan_keeps_the_users_items_and_is_idempotent(
    user: list[dict[str, object]], first: list[Region], second: list[Region]
) -> None:
    """Pure, on pyexiv2's key model: whatever the user's items, writing ours, then others,
    then the same again keeps theirs in order, field by field; the last write changes nothing;
    undo leaves exactly theirs."""
    xmp: dict[str, object] = {mwg.REGIONS: 'type="Struct"', mwg.LIST: 'type="Bag"'} if user else {}
    for n, item in enumerate(user, 1):
        xmp |= {f"{mwg.LIST}[{n}]{k}": v for k, v in item.items()}
    for regions_now in (first, second):
        xmp = _apply(xmp, mwg.plan(xmp, regions_now, SIZE))
        assert mwg.items(xmp)[: len(user)] == user
        taken = {
            str(i["/mwg-rs:Name"])
            for i in user
            if i.get("/mwg-rs:Name") and i["/mwg-rs:Type"] == "Face"
        }
        found = [r for r in mwg.faces(xmp)[0] if r.ours]
        want = list(dict.fromkeys(r.name for r in regions_now if r.name not in taken))
        assert [r.name for r in found] == [n for n in want if n not in mwg.rejected(xmp)]
        assert mwg.changes(xmp, mwg.plan(xmp, regions_now, SIZE)) == {}
    undone = _apply(xmp, mwg.cleared(xmp))
    assert mwg.items(undone) == user
    assert not [k for k in undone if k.startswith("Xmp.phototag.")]


def test_ours_stay_ours_when_another_program_rewrites_the_numbers() -> None:
    """digiKam and others re-save every region with their own number format."""
    xmp = {k: v for k, v in mwg.plan({}, [ALICE], SIZE).items() if v is not None}
    xmp[f"{mwg.LIST}[1]/mwg-rs:Area/stArea:x"] = "0.250000"
    assert mwg.faces(xmp)[0] == [replace(ALICE, ours=True)]
    after = _apply(xmp, mwg.plan(xmp, [BOB], SIZE))
    assert mwg.faces(after)[0] == [replace(BOB, ours=True)] and mwg.rejected(after) == []


def test_no_faces_on_a_photo_we_never_wrote_changes_nothing(tmp_path: Path) -> None:
    path = photo(tmp_path, "-XMP:Subject=beach", DIGIKAM)
    digest = sha(path)
    regions.write(path, [], SIZE, WriteConfig())
    assert sha(path) == digest
