"""Issue 11's findings on real photos, read back by exiftool (also with MWG rules) and exiv2."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from phototag.config import WriteConfig
from phototag.files import keywords, metadata
from phototag.records import Tag
from tests.conftest import exiftool, exiftool_read, exiftool_warnings, mwg_keywords
from tests.test_metadata import exiv2_values

SHARED = Path(__file__).parents[1].parent / "shared"
PHOTOS = SHARED / "photos"
COCO = SHARED / "coco256" / "val"
pytestmark = [
    pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} not found"),
    pytest.mark.skipif(not shutil.which("exiftool"), reason="exiftool not installed"),
]

CAT = Tag("animal|mammal|cat", 0.91)
BIRD = Tag("animal|bird", 0.42)
SUNSET = Tag("sunset", 0.3)  # one level: stands alone, so IPTC gets it
OURS = ["cat", "animal", "mammal"]


def copy(tmp_path: Path, name: str, src: Path = PHOTOS) -> Path:
    dest = tmp_path / name
    shutil.copyfile(src / name, dest)
    dest.chmod(0o644)
    return dest


def tags(path: Path, *names: str, mwg: bool = False) -> dict[str, list[object]]:
    return exiftool_read([path], *names, mwg=mwg)[path]


def as_list(found: dict[str, object], key: str) -> list[str]:
    value = found.get(key, [])
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_digikam_sees_the_users_keywords(tmp_path: Path) -> None:
    """Finding 1: TagsList (what digiKam reads first) holds the user's keywords too."""
    path = copy(tmp_path, "owl.jpg")  # the photographer's: Brasil, Brazil Trip, beach, praia
    exiftool(path, "-XMP:Subject+=Grandma", "-XMP:HierarchicalSubject+=family|Grandma")
    metadata.write(path, [CAT], "m@1", WriteConfig())
    found = tags(path, "-XMP:TagsList", "-XMP:HierarchicalSubject", "-XMP:Subject")
    assert as_list(found, "TagsList") == [
        "Brasil", "Brazil Trip", "beach", "praia", "family/Grandma", "animal/mammal/cat"
    ]  # fmt: skip
    assert "family|Grandma" in as_list(found, "HierarchicalSubject")
    assert "family" in as_list(found, "Subject")  # Lightroom-style: ancestors flat too


def test_new_sidecar_is_a_copy_of_the_photos_xmp(tmp_path: Path) -> None:
    """Finding 2: a sidecar replacing the photo's metadata in darktable must hold all of it."""
    path = copy(tmp_path, "cat_720p.jpg")
    exiftool(path, "-XMP:Rating=5", "-XMP:Label=Red", "-XMP:Subject=Grandma", "-IPTC:Keywords=old")
    side = metadata.write(path, [CAT], "m@1", WriteConfig(mode="sidecar")).target
    found = tags(side, "-XMP:Rating", "-XMP:Label", "-XMP:Subject")
    assert found["Rating"] == [5] and found["Label"] == ["Red"]
    assert as_list(found, "Subject") == ["Grandma", "old", *OURS]


def test_sidecar_darktable_made_after_our_write_gets_a_complete_record(tmp_path: Path) -> None:
    """Finding 3: our keywords that darktable copied into its sidecar stay ours."""
    path = copy(tmp_path, "cat_720p.jpg")
    exiftool(path, "-XMP:Subject=Grandma")
    cfg = WriteConfig()
    assert metadata.write(path, [CAT], "m@1", cfg).target == path
    side = path.with_name(path.name + ".xmp")  # darktable's: the photo's keywords, no record
    subprocess.run(
        ["exiftool", "-q", "-o", str(side), "-XMP-dc:Subject", "-XMP-lr:all", str(path)], check=True
    )
    assert metadata.target(path, cfg) == side  # as README and config.yaml say
    written = metadata.write(path, [CAT, BIRD], "m@2", cfg)
    assert written.target == side
    assert sorted(written.keywords.our_keywords) == sorted([*OURS, "bird"])
    assert written.keywords.user_keywords == ["Grandma"]
    found = tags(side, "-XMP-phototag:all", "-XMP:TagsList")
    assert sorted(as_list(found, "Keywords")) == sorted([*OURS, "bird"])
    assert as_list(found, "TagsList") == ["Grandma", "animal/mammal/cat", "animal/bird"]


def test_iptc_follows_xmp_and_its_digest_stays_current(tmp_path: Path) -> None:
    """Finding 5: a keyword added to XMP alone reaches IPTC; MWG readers see all of them."""
    path = copy(tmp_path, "owl.jpg")  # has a Photoshop IPTCDigest
    metadata.write(path, [CAT], "m@1", WriteConfig())
    exiftool(path, "-XMP:Subject+=Grandma")
    metadata.write(path, [CAT, BIRD], "m@2", WriteConfig())
    found = tags(path, "-IPTC:Keywords", "-XMP:Subject", "-IPTCDigest", "-CurrentIPTCDigest")
    assert as_list(found, "Keywords") == ["Brasil", "Brazil Trip", "beach", "praia", "Grandma"]
    assert found["IPTCDigest"] == found["CurrentIPTCDigest"]
    assert "Grandma" in mwg_keywords(path) and "bird" in mwg_keywords(path)


def test_fields_agree_leaf_of_a_user_path(tmp_path: Path) -> None:
    """Finding 6: dc:subject gets the levels of a hierarchy entry; IPTC none (darktable would
    show them twice), and no IPTC block is made for them."""
    path = copy(tmp_path, "cat_720p.jpg")
    exiftool(path, "-XMP:HierarchicalSubject=place|beach", "-XMP:TagsList=people/Ann")
    metadata.write(path, [CAT], "m@1", WriteConfig())
    found = tags(
        path, "-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords"
    )
    assert as_list(found, "Subject") == ["place", "beach", "people", "Ann", *OURS]
    assert as_list(found, "Keywords") == []
    hierarchy = ["place|beach", "people|Ann", "animal|mammal|cat"]
    assert as_list(found, "HierarchicalSubject") == hierarchy
    assert sorted(as_list(found, "TagsList")) == sorted(p.replace("|", "/") for p in hierarchy)


@pytest.mark.parametrize("flat", [True, False])
def test_flat_ancestors_setting(tmp_path: Path, flat: bool) -> None:
    """`write.flat_ancestors`: ancestors as flat keywords in dc:subject (Lightroom) or the leaf
    alone; either way MWG readers get the whole set, and IPTC only what stands alone."""
    path = copy(tmp_path, "owl.jpg")  # IPTC and dc:subject: Brasil, Brazil Trip, beach, praia
    exiftool(path, "-XMP:HierarchicalSubject+=family|Ann")
    metadata.write(path, [CAT, Tag("sunset", 0.3)], "m@1", WriteConfig(flat_ancestors=flat))
    user = ["Brasil", "Brazil Trip", "beach", "praia"]
    levels = ["family", "Ann"] if flat else ["Ann"]
    ours = ["cat", "sunset", "animal", "mammal"] if flat else ["cat", "sunset"]
    found = tags(path, "-XMP:Subject", "-IPTC:Keywords", "-XMP:HierarchicalSubject")
    assert as_list(found, "Subject") == [*user, *levels, *ours]
    assert as_list(found, "Keywords") == [*user, "sunset"]
    hierarchy = ["family|Ann", *user, "animal|mammal|cat", "sunset"]
    assert as_list(found, "HierarchicalSubject") == hierarchy
    ex = exiv2_values(path)
    assert ex["Xmp.dc.subject"] == [*user, *levels, *ours]
    assert ex["Iptc.Application2.Keywords"] == [*user, "sunset"]
    assert mwg_keywords(path) == [*user, *levels, *ours]


def test_a_keyword_the_user_deletes_from_one_field_goes_from_all(tmp_path: Path) -> None:
    path = copy(tmp_path, "cat_720p.jpg")
    exiftool(path, "-XMP:Subject=Grandma", "-XMP:Subject+=Ann")
    metadata.write(path, [CAT], "m@1", WriteConfig())
    exiftool(path, "-XMP:TagsList-=Ann")  # digiKam-like: one field only
    metadata.write(path, [CAT], "m@2", WriteConfig())
    found = tags(
        path, "-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords"
    )
    assert all("Ann" not in as_list(found, key) for key in found)
    assert all("Grandma" in as_list(found, key) for key in found)


def test_pure_model_mirrors_and_remembers() -> None:
    cur = keywords.Fields(["Grandma"], ["place|beach"], ["people/Ann"], [], True, None)
    first = keywords.plan(cur, None, [CAT], ancestors=False)
    assert first.subject == ["Grandma", "beach", "Ann", "cat"]
    assert first.iptc == ["Grandma"]
    assert first.hierarchical == ["place|beach", "Grandma", "people|Ann", "animal|mammal|cat"]
    assert first.record is not None and first.record.keywords == ["cat"]
    first.subject.remove("Grandma")  # the user deletes it from dc:subject only
    second = keywords.plan(first, None, [CAT], ancestors=False)
    assert "Grandma" not in second.subject + second.iptc + second.hierarchical + second.tags_list


ALL_PHOTOS = sorted(p.name for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".bmp"})
COCO_SAMPLE = sorted(p.name for p in COCO.glob("*.jpg"))[:4] if COCO.is_dir() else []
RAW = SHARED / "raw"
RAWS = (
    sorted(p.name for p in RAW.iterdir() if p.is_file() and p.suffix != ".md")
    if RAW.is_dir()
    else []
)


SAMPLES = [(PHOTOS, n, m) for n in ALL_PHOTOS for m in ("auto", "sidecar")]
SAMPLES += [(COCO, n, m) for n in COCO_SAMPLE for m in ("auto", "sidecar")]
SAMPLES += [(RAW, n, "auto") for n in RAWS]  # a RAW always gets a sidecar


@pytest.mark.parametrize(
    ("folder", "name", "mode"), SAMPLES, ids=[f"{n}-{m}" for _, n, m in SAMPLES]
)
def test_every_shared_photo_validates_and_mwg_reads_all(
    tmp_path: Path, folder: Path, name: str, mode: str
) -> None:
    """`exiftool -validate` finds nothing our write introduced; MWG:Keywords is the full set."""
    path = copy(tmp_path, name, folder)
    before = exiftool_warnings(path)
    user = metadata.read(path, WriteConfig()).keywords
    cfg = WriteConfig(mode=mode)  # type: ignore[arg-type]
    ours = ["cat", "bird", "sunset", "animal", "mammal"]
    for retag in ([CAT, BIRD, SUNSET], [CAT, SUNSET, BIRD]):  # a second write changes XMP only
        dest = metadata.write(path, retag, "m@1", cfg).target
        assert exiftool_warnings(path) <= before
        if dest != path:
            assert exiftool_warnings(dest) <= set()
        assert mwg_keywords(dest) == [*user, *ours]
