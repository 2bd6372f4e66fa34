"""The file-tag layer, checked with exiftool and exiv2 as independent readers on real files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyexiv2
import pytest
from PIL import Image

from phototag.config import WriteConfig
from phototag.files import keywords, metadata
from phototag.files.metadata import MetadataError
from phototag.records import Tag
from tests.conftest import exiftool, exiftool_keywords

PHOTOS = Path(__file__).parents[1].parent / "shared" / "photos"
needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} not found")
needs_tools = pytest.mark.skipif(
    not (shutil.which("exiftool") and shutil.which("exiv2")), reason="exiftool/exiv2 not installed"
)
pytestmark = [needs_photos, needs_tools]

CAT = Tag("animal|mammal|cat", 0.91)
DOG = Tag("animal|mammal|dog", 0.55)
BIRD = Tag("animal|bird", 0.42)
SUNSET = Tag("sunset", 0.3)  # one level: a flat keyword that stands alone, so IPTC gets it


def copy_photo(tmp_path: Path, name: str = "face.jpg", as_name: str | None = None) -> Path:
    dest = tmp_path / (as_name or name)
    shutil.copyfile(PHOTOS / name, dest)
    dest.chmod(0o644)
    return dest


def exiv2_values(path: Path) -> dict[str, list[str]]:
    """exiv2 -pa lines as key -> values (XMP arrays split on ', ', IPTC repeats collected)."""
    out = subprocess.run(["exiv2", "-pa", str(path)], capture_output=True).stdout.decode()
    values: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"(\S+)\s+\S+\s+\d+\s+(.*)$", line)
        if m and m[1].startswith(("Xmp.", "Iptc.")):
            key, value = m[1], m[2]
            values.setdefault(key, []).extend(
                value.split(", ") if key.startswith("Xmp") else [value]
            )
    return values


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(metadata.TEMP_SUFFIX)]


@pytest.fixture
def grandma(tmp_path: Path) -> Path:
    """A real JPEG with the user's own keyword, written by another program."""
    path = copy_photo(tmp_path)
    exiftool(path, "-XMP:Subject=Grandma", "-IPTC:Keywords=Grandma")
    return path


def test_keywords_read_back_by_exiftool_and_exiv2(grandma: Path) -> None:
    assert metadata.write(grandma, [CAT, BIRD], "m@1", WriteConfig()).target == grandma

    flat = ["Grandma", "cat", "bird", "animal", "mammal"]
    found = exiftool_keywords(grandma)
    assert found == {
        "Subject": flat,
        "HierarchicalSubject": ["Grandma", "animal|mammal|cat", "animal|bird"],
        "TagsList": ["Grandma", "animal/mammal/cat", "animal/bird"],
        "Keywords": ["Grandma"],  # levels of a hierarchy entry stay out of IPTC (darktable)
    }
    ex = exiv2_values(grandma)
    assert ex["Xmp.dc.subject"] == flat
    assert ex["Iptc.Application2.Keywords"] == ["Grandma"]
    assert ex["Xmp.lr.hierarchicalSubject"] == ["Grandma", "animal|mammal|cat", "animal|bird"]
    assert ex["Xmp.digiKam.TagsList"] == ["Grandma", "animal/mammal/cat", "animal/bird"]
    assert ex["Xmp.phototag.ModelVersion"] == ["m@1"]
    # dc:subject and lr:hierarchicalSubject are Bags (digiKam flattens a Seq), TagsList a Seq.
    packet = subprocess.run(["exiv2", "-pX", str(grandma)], capture_output=True).stdout.decode()
    assert re.search(r"<dc:subject>\s*<rdf:Bag>", packet)
    assert re.search(r"<lr:hierarchicalSubject>\s*<rdf:Bag>", packet)
    assert re.search(r"<digiKam:TagsList>\s*<rdf:Seq>", packet)

    got = metadata.read(grandma, WriteConfig())
    assert got.keywords == flat
    assert got.user_keywords == ["Grandma"]
    assert got.our_keywords == ["cat", "bird", "animal", "mammal"]
    assert [(t.path, t.score, t.source) for t in got.ours] == [
        ("animal|mammal|cat", 0.91, "auto"),
        ("animal|bird", 0.42, "auto"),
    ]
    assert got.model_version == "m@1" and got.tagged_at
    assert got.removed_by_user == []


def test_user_keyword_survives_tag_retag_and_undo(grandma: Path) -> None:
    cfg = WriteConfig()
    before = exiftool_keywords(grandma)
    metadata.write(grandma, [CAT, DOG], "m@1", cfg)
    metadata.write(grandma, [DOG, BIRD], "m@2", cfg)
    found = exiftool_keywords(grandma)
    assert found["Subject"] == ["Grandma", "dog", "animal", "mammal", "bird"]
    assert found["Keywords"] == ["Grandma"]
    assert found["HierarchicalSubject"] == ["Grandma", "animal|mammal|dog", "animal|bird"]
    assert metadata.read(grandma, cfg).model_version == "m@2"

    assert metadata.undo(grandma, cfg) == grandma
    # The user's keyword stays, now in every field (digiKam and darktable read the hierarchy).
    assert exiftool_keywords(grandma) == before | {
        "HierarchicalSubject": ["Grandma"],
        "TagsList": ["Grandma"],
    }
    assert (
        "phototag"
        not in subprocess.run(["exiv2", "-pX", str(grandma)], capture_output=True).stdout.decode()
    )
    assert metadata.read(grandma, cfg).ours == []


def test_real_photo_keywords_survive(tmp_path: Path) -> None:
    path = copy_photo(tmp_path, "owl.jpg")  # tagged by its photographer: Brasil, beach, ...
    before = exiftool_keywords(path)
    assert before["Subject"] and before["Keywords"]
    metadata.write(path, [BIRD], "m@1", WriteConfig())
    after = exiftool_keywords(path)
    assert after["Subject"] == before["Subject"] + ["bird", "animal"]
    assert after["Keywords"] == before["Keywords"]  # ours are levels of animal|bird
    assert metadata.read(path, WriteConfig()).user_keywords == before["Subject"]
    metadata.undo(path, WriteConfig())
    assert exiftool_keywords(path) == before | {
        "HierarchicalSubject": before["Subject"],
        "TagsList": before["Subject"],
    }


def test_keyword_the_user_already_has_stays_theirs(grandma: Path) -> None:
    exiftool(grandma, "-XMP:Subject+=cat", "-IPTC:Keywords+=cat")
    cfg = WriteConfig()
    metadata.write(grandma, [CAT], "m@1", cfg)
    got = metadata.read(grandma, cfg)
    assert got.keywords == ["Grandma", "cat", "animal", "mammal"]
    assert got.our_keywords == ["animal", "mammal"]
    assert got.user_keywords == ["Grandma", "cat"]
    metadata.undo(grandma, cfg)
    assert exiftool_keywords(grandma)["Subject"] == ["Grandma", "cat"]


def test_keyword_deleted_by_user_is_reported_and_not_added_again(grandma: Path) -> None:
    cfg = WriteConfig()
    metadata.write(grandma, [CAT, DOG], "m@1", cfg)
    exiftool(grandma, "-XMP:Subject-=cat", "-IPTC:Keywords-=cat")

    got = metadata.read(grandma, cfg)
    assert got.removed_by_user == ["cat"]
    assert "cat" not in got.keywords

    metadata.write(grandma, [CAT, DOG], "m@2", cfg)
    found = exiftool_keywords(grandma)
    assert found["Subject"] == ["Grandma", "dog", "animal", "mammal"]
    assert found["Keywords"] == ["Grandma"]
    assert found["HierarchicalSubject"] == ["Grandma", "animal|mammal|dog"]  # no cat tag left
    assert found["TagsList"] == ["Grandma", "animal/mammal/dog"]
    got = metadata.read(grandma, cfg)
    assert got.removed_by_user == ["cat"]
    assert [t.path for t in got.ours] == ["animal|mammal|dog"]

    # The user adds "cat" back by hand: it is theirs now, and undo leaves it.
    exiftool(grandma, "-XMP:Subject+=cat", "-IPTC:Keywords+=cat")
    metadata.write(grandma, [CAT, DOG], "m@3", cfg)
    assert metadata.read(grandma, cfg).removed_by_user == []
    metadata.undo(grandma, cfg)
    assert exiftool_keywords(grandma)["Subject"] == ["Grandma", "cat"]


def test_hierarchical_path_deleted_by_user_is_not_added_again(grandma: Path) -> None:
    cfg = WriteConfig()
    metadata.write(grandma, [CAT, DOG], "m@1", cfg)
    exiftool(grandma, "-XMP:HierarchicalSubject-=animal|mammal|dog")
    assert metadata.read(grandma, cfg).removed_paths == ["animal|mammal|dog"]
    metadata.write(grandma, [CAT, DOG], "m@1", cfg)
    found = exiftool_keywords(grandma)
    assert found["HierarchicalSubject"] == ["Grandma", "animal|mammal|cat"]
    assert found["TagsList"] == ["Grandma", "animal/mammal/cat"]
    assert "dog" not in found["Subject"]


def test_unicode_and_iptc_64_byte_limit(grandma: Path) -> None:
    long = "東京" * 15  # 90 bytes in UTF-8
    # One-level tags: they stand alone, so IPTC gets them too.
    tags = [Tag("Zürich", 0.8), Tag("東京", 0.7), Tag(long, 0.6)]
    tags.append(Tag("type=Bag x", 0.5))  # exiv2's type= syntax must stay plain text
    cfg = WriteConfig()
    metadata.write(grandma, tags, "m@1", cfg)
    found = exiftool_keywords(grandma)
    assert found["Subject"] == ["Grandma", "Zürich", "東京", long, "type=Bag x"]
    cut = found["Keywords"][3]
    assert len(cut.encode()) == 63 and long.startswith(cut)  # 21 whole characters
    assert found["Keywords"][:3] == ["Grandma", "Zürich", "東京"]
    assert exiv2_values(grandma)["Iptc.Application2.Keywords"][3] == cut
    charset = subprocess.run(
        ["exiftool", "-s3", "-IPTC:CodedCharacterSet", str(grandma)], capture_output=True
    ).stdout
    assert charset.strip() == b"UTF8"
    got = metadata.read(grandma, cfg)
    assert got.keywords == found["Subject"]  # the cut IPTC copy is not a keyword of its own
    metadata.undo(grandma, cfg)
    assert exiftool_keywords(grandma)["Keywords"] == ["Grandma"]


@pytest.mark.parametrize(
    ("naming", "name"), [("append", "IMG_1.JPG.xmp"), ("replace", "IMG_1.xmp")]
)
def test_sidecar_naming_and_merge(grandma: Path, naming: str, name: str) -> None:
    photo = grandma.rename(grandma.with_name("IMG_1.JPG"))
    original = photo.read_bytes()
    cfg = WriteConfig(mode="sidecar", sidecar_name=naming)  # type: ignore[arg-type]
    dest = metadata.write(photo, [CAT], "m@1", cfg).target
    assert dest == photo.with_name(name) and dest.is_file()
    assert photo.read_bytes() == original
    # A new sidecar is the photo's whole metadata: its own keywords, then ours.
    assert exiftool_keywords(dest)["Subject"] == ["Grandma", "cat", "animal", "mammal"]
    assert dest.read_text().startswith("<?xml")

    got = metadata.read(photo, cfg)
    assert got.keywords == ["Grandma", "cat", "animal", "mammal"]
    assert got.our_keywords == ["cat", "animal", "mammal"]
    assert metadata.target(photo, WriteConfig(sidecar_name=naming)) == dest  # auto: sidecar wins
    metadata.undo(photo, cfg)
    assert exiftool_keywords(dest)["Subject"] == ["Grandma"]  # the photo's copy stays
    assert "phototag" not in dest.read_text()
    assert photo.read_bytes() == original


DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="4"
   darktable:history_end="1">
   <dc:subject><rdf:Bag><rdf:li>Grandpa</rdf:li></rdf:Bag></dc:subject>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:operation="exposure" darktable:enabled="1"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_existing_sidecar_is_updated_not_replaced(grandma: Path) -> None:
    side = grandma.with_name(grandma.name + ".xmp")
    side.write_text(DARKTABLE_SIDECAR)
    cfg = WriteConfig()  # auto: the existing sidecar receives the keywords
    assert metadata.write(grandma, [CAT], "m@1", cfg).target == side
    cmd = ["exiftool", "-j", "-XMP:Rating", "-XMP-darktable:all", "-XMP:Subject", str(side)]
    out = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)[0]
    assert (out["Rating"], out["History_end"], out["HistoryOperation"]) == (4, 1, "exposure")
    assert out["Subject"] == ["Grandpa", "cat", "animal", "mammal"]
    assert metadata.read(grandma, cfg).keywords == ["Grandma", "Grandpa", "cat", "animal", "mammal"]
    metadata.undo(grandma, cfg)
    out = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)[0]
    assert (out["Rating"], out["History_end"], out["Subject"]) == (4, 1, "Grandpa")


def test_read_only_photo(grandma: Path) -> None:
    original = grandma.read_bytes()
    grandma.chmod(0o444)
    with pytest.raises(MetadataError, match="read-only") as err:
        metadata.write(grandma, [CAT], "m@1", WriteConfig(mode="inplace"))
    assert str(grandma) in str(err.value) and "\n" not in str(err.value)
    assert grandma.read_bytes() == original

    dest = metadata.write(grandma, [CAT], "m@1", WriteConfig()).target
    assert dest == grandma.with_name(grandma.name + ".xmp")
    assert exiftool_keywords(dest)["Subject"] == ["Grandma", "cat", "animal", "mammal"]
    assert grandma.read_bytes() == original
    assert oct(grandma.stat().st_mode & 0o777) == oct(0o444)


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_broken_files_give_one_line_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.jpg"
    data = {
        "truncated": (PHOTOS / "face.jpg").read_bytes()[:2000],
        "text": b"this is not a photo\n",
        "empty": b"",
    }[kind]
    path.write_bytes(data)
    for call in (
        lambda: metadata.read(path, WriteConfig()),
        lambda: metadata.write(path, [CAT], "m@1", WriteConfig()),
        lambda: metadata.undo(path, WriteConfig()),
    ):
        with pytest.raises(MetadataError) as err:
            call()
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert path.read_bytes() == data
    assert sorted(tmp_path.iterdir()) == [path]


def test_unparseable_xmp_is_refused_not_dropped(grandma: Path) -> None:
    data = grandma.read_bytes().replace(b"</rdf:Bag>", b"</rdf:Bxg>", 1)
    grandma.write_bytes(data)
    with pytest.raises(MetadataError, match="XMP cannot be parsed"):
        metadata.write(grandma, [CAT], "m@1", WriteConfig())
    assert grandma.read_bytes() == data


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="no such file"):
        metadata.read(tmp_path / "gone.jpg", WriteConfig())


def test_failed_rename_leaves_original_and_no_temp(
    grandma: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = grandma.read_bytes()

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metadata.os, "replace", refuse)
    with pytest.raises(MetadataError, match="No space left"):
        metadata.write(grandma, [CAT], "m@1", WriteConfig())
    assert grandma.read_bytes() == original
    assert temp_files(grandma.parent) == []


def test_failed_exiv2_leaves_original(grandma: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = grandma.read_bytes()

    def boom(self: object, data: object, encoding: str = "utf-8") -> None:
        raise RuntimeError("Failed to encode XMP metadata.\nmore")

    monkeypatch.setattr(pyexiv2.ImageData, "modify_iptc", boom)
    with pytest.raises(MetadataError, match=r"Failed to encode XMP metadata\.$"):
        metadata.write(grandma, [CAT, SUNSET], "m@1", WriteConfig())
    assert grandma.read_bytes() == original
    assert temp_files(grandma.parent) == []


def test_file_changed_during_write_is_not_overwritten(
    grandma: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify = metadata._verify

    def meanwhile(
        doc: metadata._Doc, data: bytes, new: keywords.Fields, extra: dict[str, object]
    ) -> bool:
        exiftool(grandma, "-XMP:Rating=5")  # another program saves the photo
        return verify(doc, data, new, extra)

    monkeypatch.setattr(metadata, "_verify", meanwhile)
    with pytest.raises(MetadataError, match="changed while"):
        metadata.write(grandma, [CAT], "m@1", WriteConfig())
    assert exiftool_keywords(grandma)["Subject"] == ["Grandma"]
    assert temp_files(grandma.parent) == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_pixels_identical_and_mode_kept(tmp_path: Path, fmt: str) -> None:
    suffix = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}[fmt]
    path = tmp_path / f"photo{suffix}"
    with Image.open(PHOTOS / "cat_720p.jpg") as im:
        im.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    path.chmod(0o640)
    before = pixels(path)
    assert metadata.write(path, [CAT, SUNSET], "m@1", WriteConfig()).target == path
    assert np.array_equal(pixels(path), before)
    assert path.stat().st_mode & 0o777 == 0o640
    found = exiftool_keywords(path)
    assert found["Subject"] == ["cat", "sunset", "animal", "mammal"]
    assert found["Keywords"] == (["sunset"] if fmt != "WEBP" else [])  # WebP has no IPTC
    metadata.undo(path, WriteConfig())
    assert exiftool_keywords(path)["Subject"] == []
    assert np.array_equal(pixels(path), before)


def test_camera_jpeg_keeps_exif_and_image_data(tmp_path: Path) -> None:
    path = copy_photo(tmp_path, "face.jpg")  # odd Minolta maker notes exiv2 complains about
    cmd = ["exiftool", "-j", "-a", "-G1", "-EXIF:all", "-MakerNotes:all", "-ICC_Profile:all"]
    exif_before = subprocess.run([*cmd, str(path)], capture_output=True).stdout
    scan_before = path.read_bytes().rsplit(b"\xff\xda", 1)[1]  # from the last start of scan
    metadata.write(path, [CAT, SUNSET], "m@1", WriteConfig())
    assert subprocess.run([*cmd, str(path)], capture_output=True).stdout == exif_before
    assert path.read_bytes().rsplit(b"\xff\xda", 1)[1] == scan_before


@pytest.mark.xfail(
    strict=True,
    reason="open: exiv2 0.28 zeroes 4 bytes of face.jpg's (already invalid) Minolta maker notes "
    "when it rewrites the JPEG without an IPTC change, and exiftool then finds no maker notes",
)
def test_camera_jpeg_keeps_maker_notes_on_an_xmp_only_write(tmp_path: Path) -> None:
    path = copy_photo(tmp_path, "face.jpg")
    cmd = ["exiftool", "-j", "-a", "-G1", "-MakerNotes:all"]
    before = subprocess.run([*cmd, str(path)], capture_output=True).stdout
    metadata.write(path, [CAT], "m@1", WriteConfig())  # XMP only: nothing stands alone for IPTC
    assert subprocess.run([*cmd, str(path)], capture_output=True).stdout == before


def test_formats_exiv2_cannot_write_get_a_sidecar(tmp_path: Path) -> None:
    for name in ("bird.bmp", "gif.gif"):
        if name.endswith(".gif"):
            path = tmp_path / name
            Image.new("P", (4, 4)).save(path)
        else:
            path = copy_photo(tmp_path, name)
        original = path.read_bytes()
        dest = metadata.write(path, [BIRD], "m@1", WriteConfig()).target
        assert dest == path.with_name(path.name + ".xmp")
        assert exiftool_keywords(dest)["Subject"] == ["bird", "animal"]
        assert path.read_bytes() == original
    with pytest.raises(MetadataError, match=r"bird\.bmp: exiv2 cannot write XMP"):
        metadata.write(tmp_path / "bird.bmp", [BIRD], "m@1", WriteConfig(mode="inplace"))


def test_unchanged_tags_do_not_rewrite(grandma: Path) -> None:
    metadata.write(grandma, [CAT], "m@1", WriteConfig())
    stamp = grandma.stat().st_mtime_ns, grandma.read_bytes()
    metadata.write(grandma, [Tag(CAT.path, CAT.score)], "m@1", WriteConfig())
    assert (grandma.stat().st_mtime_ns, grandma.read_bytes()) == stamp
    metadata.write(grandma, [Tag(CAT.path, 0.5)], "m@1", WriteConfig())  # a new score is news
    assert grandma.read_bytes() != stamp[1]


def test_dry_run_writes_nothing(grandma: Path) -> None:
    original = grandma.read_bytes()
    metadata.write(grandma, [CAT], "m@1", WriteConfig(dry_run=True))
    assert grandma.read_bytes() == original


def test_non_utf8_file_name_and_symlink(tmp_path: Path) -> None:
    path = copy_photo(tmp_path, "cat_720p.jpg", as_name=os.fsdecode(b"caf\xe9 cat.jpg"))
    link = tmp_path / "link.jpg"
    link.symlink_to(path.name)
    metadata.write(link, [BIRD], "m@1", WriteConfig())
    assert link.is_symlink()
    assert metadata.read(path, WriteConfig()).keywords == ["bird", "animal"]


def test_legacy_latin1_iptc_is_left_alone(tmp_path: Path) -> None:
    path = copy_photo(tmp_path, "cat_720p.jpg")
    exiftool(path, "-charset", "iptc=Latin", "-IPTC:Keywords=Café")
    cfg = WriteConfig()
    assert metadata.read(path, cfg).keywords == ["Café"]
    metadata.write(path, [BIRD], "m@1", cfg)
    # MWG: an IPTC-only keyword is carried into XMP; the legacy IPTC block itself stays as it is.
    assert metadata.read(path, cfg).keywords == ["Café", "bird", "animal"]
    iptc = subprocess.run(
        ["exiftool", "-j", "-charset", "iptc=Latin", "-IPTC:all", str(path)], capture_output=True
    ).stdout
    assert json.loads(iptc)[0]["Keywords"] == "Café"  # untouched, no charset change


# ---- the merge rules on plain lists, without files ----------------------------------------------


def holder(subject: list[str], iptc: list[str] | None = None) -> keywords.Fields:
    return keywords.Fields(subject, [], [], iptc or [], iptc_writable=True, record=None)


def test_plan_adds_after_the_users_and_records_only_ours() -> None:
    new = keywords.plan(holder(["Grandma", "cat"], ["Grandma", "cat"]), None, [CAT, DOG], True)
    assert new.subject == ["Grandma", "cat", "dog", "animal", "mammal"]
    assert new.iptc == ["Grandma", "cat"]  # the user's; ours are levels of our paths
    # The user's flat "cat" stays a flat entry beside our path.
    assert new.hierarchical == ["Grandma", "cat", "animal|mammal|cat", "animal|mammal|dog"]
    assert new.tags_list == ["Grandma", "cat", "animal/mammal/cat", "animal/mammal/dog"]
    assert new.record is not None
    assert new.record.keywords == ["dog", "animal", "mammal"]  # "cat" stays the user's

    leaves = keywords.plan(holder([]), holder(["dog"]), [CAT, DOG], ancestors=False)
    assert leaves.subject == ["cat"]  # the photo behind a sidecar already says "dog"


def test_plan_retag_and_user_deletion() -> None:
    first = keywords.plan(holder(["Grandma"], ["Grandma"]), None, [CAT, DOG], True)
    first.subject.remove("dog")  # the user deletes our "dog" (IPTC keeps a stale copy)
    second = keywords.plan(first, None, [DOG, BIRD], True)
    assert second.subject == ["Grandma", "animal", "bird"]
    assert second.iptc == ["Grandma"]
    assert second.hierarchical == ["Grandma", "animal|bird"]
    assert second.record is not None
    assert second.record.removed == ["dog"]
    assert [t.path for t in second.record.tags] == ["animal|bird"]
    third = keywords.plan(second, None, [DOG], True)  # still not added back
    assert third.subject == ["Grandma"] and third.record and third.record.removed == ["dog"]


def test_iptc_value_cuts_on_character_boundary() -> None:
    assert keywords.iptc_value("a" * 64) == "a" * 64
    assert keywords.iptc_value("a" * 63 + "é") == "a" * 63
    assert keywords.iptc_value("é" * 40) == "é" * 32


def test_write_reports_the_state_it_left(grandma: Path) -> None:
    """What `write` returns is what a fresh read sees, and the hash is of the bytes on disk."""
    import hashlib

    written = metadata.write(grandma, [CAT, BIRD], "m@1", WriteConfig())
    again = metadata.read(grandma, WriteConfig())
    assert written.keywords.keywords == again.keywords
    assert written.keywords.ours == again.ours
    assert written.keywords.user_keywords == again.user_keywords
    assert written.photo_sha256 == hashlib.sha256(grandma.read_bytes()).hexdigest()
    assert metadata.write(grandma, [CAT, BIRD], "m@1", WriteConfig()).photo_sha256 is None


def test_read_only_folder_gets_no_sidecar(tmp_path: Path) -> None:
    """A read-only photo in a read-only folder: a clear error, and nothing created there."""
    folder = tmp_path / "archive"
    folder.mkdir()
    photo = folder / "cat.jpg"
    shutil.copyfile(PHOTOS / "cat_720p.jpg", photo)
    photo.chmod(0o444)
    folder.chmod(0o555)
    try:
        with pytest.raises(metadata.MetadataError, match="its folder is read-only"):
            metadata.write(photo, [CAT], "m@1", WriteConfig())
        assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("prefix", ["dc", "lr", "digiKam", "phototag"])
def test_a_photo_rebinding_a_prefix_does_not_misfile_later_writes(
    tmp_path: Path, prefix: str
) -> None:
    """exiv2's namespace table is process-wide: a photo binding `dc` to another URI used to
    send every later photo's dc:subject into that URI (found by the metadata fuzz tests)."""
    odd = copy_photo(tmp_path, as_name="odd.jpg")
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        f'xmlns:{prefix}="http://odd.example/ns/"><{prefix}:subject>odd</{prefix}:subject>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    with Image.open(PHOTOS / "face.jpg") as im:
        im.save(odd, "JPEG", xmp=packet.encode())
    metadata.read(odd, WriteConfig())  # parsing is enough to re-map the prefix
    later = copy_photo(tmp_path, as_name="later.jpg")
    metadata.write(later, [CAT], "v1", WriteConfig())
    out = subprocess.run(
        ["exiftool", "-j", "-a", "-G1", "-XMP:all", str(later)], capture_output=True, text=True
    ).stdout
    fields = set(json.loads(out)[0])
    assert {"XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList"} <= fields
    assert "XMP-phototag:Tags" in fields and not [f for f in fields if "tmp" in f]
    assert exiftool_keywords(later)["Subject"] == ["cat", "animal", "mammal"]
