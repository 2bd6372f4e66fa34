"""Camera RAW, HEIC and AVIF end to end: real files, real model, exiftool and exiv2 as readers."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from phototag import cli
from phototag.pipeline import raw
from tests.conftest import SHARED, exiftool_keywords, need_shared

RAW_DIR = SHARED / "raw"
REAL = ["Canon-R6-pruned.CR3", "nikon_d70s_child.nef", "nikon_d70s_2.nef", "canon_eos_6d.dng"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def raws(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    shutil.copytree(need_shared(RAW_DIR), folder, ignore=shutil.ignore_patterns("README.md"))
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _exiv2_xmp(path: Path) -> dict[str, str]:
    out = subprocess.run(["exiv2", "-px", str(path)], capture_output=True, text=True).stdout
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


def test_scan_tags_real_raws_into_sidecars_and_reports_stubs(
    raws: Path, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: _sha(p) for p in raws.rglob("*") if p.is_file()}

    assert cli.main(["scan", str(raws)]) == 1  # the stubs failed
    err = capsys.readouterr().err

    for name in REAL:
        side = raws / f"{name}.xmp"
        assert side.exists(), name
        kw = exiftool_keywords(side)
        assert kw["Subject"] and kw["HierarchicalSubject"], name
        exiv2 = _exiv2_xmp(side)
        assert "Xmp.dc.subject" in exiv2 and "Xmp.lr.hierarchicalSubject" in exiv2
        for keyword in kw["Subject"]:
            assert keyword in exiv2["Xmp.dc.subject"]
    assert "monitor" in exiftool_keywords(raws / "canon_eos_6d.dng.xmp")["Subject"]
    for name in ("nikon_d70s_child.nef", "nikon_d70s_2.nef"):
        assert "pajamas" in exiftool_keywords(raws / f"{name}.xmp")["Subject"]

    stubs = sorted((raws / "stubs").iterdir())
    for stub in stubs:
        lines = [line for line in err.splitlines() if str(stub) in line]
        assert len(lines) == 1, (stub, lines)
        assert "RAW without a usable preview or raw data" in lines[0]
    assert "Traceback" not in err
    assert "failed 6" in err
    after = {p: _sha(p) for p in raws.rglob("*") if p.is_file() and p.suffix != ".xmp"}
    assert after == before  # every RAW byte-identical, nothing written beside a stub
    assert not list((raws / "stubs").glob("*.xmp"))


def test_sidecar_name_replace_and_inplace_never_rewrite_a_raw(
    tmp_path: Path, installed_model: Path
) -> None:
    nef = tmp_path / "DSC_0001.NEF"
    shutil.copyfile(need_shared(RAW_DIR / "nikon_d70s_child.nef"), nef)
    digest = _sha(nef)
    config = tmp_path / "config.yaml"
    config.write_text("write:\n  mode: inplace\n  sidecar_name: replace\n")

    assert cli.main(["-c", str(config), "scan", str(tmp_path)]) == 0
    assert _sha(nef) == digest
    assert "pajamas" in exiftool_keywords(tmp_path / "DSC_0001.xmp")["Subject"]
    assert not (tmp_path / "DSC_0001.NEF.xmp").exists()


def test_preview_is_turned_by_the_raws_orientation() -> None:
    wide = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    wide.putpixel((0, 0), (255, 0, 0))  # top-left marker
    turned = raw._upright(wide, 6)  # EXIF 6: the camera was turned 90° clockwise
    assert turned.size == (30, 40)
    assert turned.getpixel((29, 0)) == (255, 0, 0)  # top-left moves to top-right
    assert raw._upright(wide, 3).getpixel((39, 29)) == (255, 0, 0)
    assert raw._upright(wide, 0) is wide


def test_the_cr3s_preview_comes_from_exiv2_and_is_big_enough() -> None:
    path = need_shared(RAW_DIR / "Canon-R6-pruned.CR3")
    picture = raw.picture(path, path.read_bytes(), 224)
    assert picture.source == "preview 1620x1080"  # LibRaw finds none in a pruned CR3


def test_a_dng_without_previews_is_demosaiced_at_half_size() -> None:
    """The 6D DNG's largest preview is 1024x683; a 750-px model forces the LibRaw fallback."""
    path = need_shared(RAW_DIR / "canon_eos_6d.dng")
    picture = raw.picture(path, path.read_bytes(), 600)
    assert picture.source == "preview 1024x683"
    picture = raw.picture(path, path.read_bytes(), 750)
    assert picture.source.startswith("half-size demosaic")
    assert min(picture.image.size) >= 750
    assert np.asarray(picture.image).std() > 10  # a real picture, not a flat fill


DARKTABLE = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
    xmp:Rating="3"
    xmpMM:DerivedFrom="DSC_0001.NEF"
    darktable:import_timestamp="63838221045000000"
    darktable:xmp_version="5"
    darktable:raw_params="0"
    darktable:auto_presets_applied="1"
    darktable:history_end="2"
    darktable:iop_order_version="4">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
   <darktable:masks_history><rdf:Seq/></darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="rawprepare" darktable:enabled="1"
       darktable:modversion="2" darktable:params="000000000000000000000000"
       darktable:multi_name="" darktable:multi_priority="0" darktable:blendop_version="13"/>
     <rdf:li darktable:num="1" darktable:operation="exposure" darktable:enabled="1"
       darktable:modversion="6" darktable:params="00000000000080b9333333c00000c842"
       darktable:multi_name="" darktable:multi_priority="0" darktable:blendop_version="13"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    crs:Version="15.0" crs:ProcessVersion="11.0" crs:WhiteBalance="As Shot"
    crs:Exposure2012="+0.35" crs:Contrast2012="+12" crs:HasCrop="True"
    crs:CropTop="0.05" crs:CropLeft="0.02" crs:CropBottom="0.97" crs:CropRight="0.99"
    crs:CameraProfile="Adobe Standard" photoshop:DateCreated="2010-03-01T21:50:40">
   <crs:ToneCurvePV2012><rdf:Seq><rdf:li>0, 0</rdf:li><rdf:li>255, 255</rdf:li></rdf:Seq>
   </crs:ToneCurvePV2012>
   <dc:subject><rdf:Bag><rdf:li>family</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>people|family</rdf:li></rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def _foreign(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    """exiftool -X's elements in the given namespaces, one line each with its value."""
    out = subprocess.run(["exiftool", "-X", "-b", str(path)], capture_output=True, text=True)
    lines = [line.strip() for line in out.stdout.splitlines()]
    return sorted(line for line in lines if line.startswith(tuple(f"<{p}:" for p in prefixes)))


@pytest.mark.parametrize(
    ("packet", "prefixes", "user_keyword"),
    [
        (DARKTABLE, ("XMP-darktable", "XMP-xmp", "XMP-xmpMM"), "holiday"),
        (LIGHTROOM, ("XMP-crs", "XMP-photoshop"), "family"),
    ],
    ids=["darktable", "lightroom"],
)
def test_a_sidecar_another_program_wrote_keeps_every_foreign_property(
    tmp_path: Path, installed_model: Path, packet: str, prefixes: tuple[str, ...], user_keyword: str
) -> None:
    nef = tmp_path / "DSC_0001.NEF"
    shutil.copyfile(need_shared(RAW_DIR / "nikon_d70s_child.nef"), nef)
    side = tmp_path / "DSC_0001.NEF.xmp"
    side.write_text(packet, encoding="utf-8")
    before = _foreign(side, prefixes)
    exiv2_before = {
        k: v for k, v in _exiv2_xmp(side).items() if not k.startswith(("Xmp.dc.", "Xmp.lr."))
    }
    assert len(before) >= 8

    assert cli.main(["scan", str(tmp_path)]) == 0

    assert _foreign(side, prefixes) == before  # same values, same namespaces (exiftool)
    exiv2_after = _exiv2_xmp(side)
    for key, line in exiv2_before.items():
        assert exiv2_after.get(key) == line  # and exiv2 agrees
    kw = exiftool_keywords(side)
    assert user_keyword in kw["Subject"] and "pajamas" in kw["Subject"]
    assert re.search(r"(^|\|)pajamas$", "\n".join(kw["HierarchicalSubject"]), re.M)


def _heic_and_avif(folder: Path, source: Path) -> list[Path]:
    import pillow_heif

    folder.mkdir()
    image = Image.open(source).convert("RGB")
    heic = folder / "IMG_0001.HEIC"
    pillow_heif.from_pillow(image).save(heic, quality=80)
    made = [heic]
    if features.check("avif"):  # Pillow's own AVIF (Pillow >= 11.3 wheels)
        image.save(folder / "IMG_0002.avif", quality=80)
        made.append(folder / "IMG_0002.avif")
    return made


def test_heic_and_avif_are_tagged_into_sidecars(
    tmp_path: Path, photos: Path, installed_model: Path
) -> None:
    made = _heic_and_avif(tmp_path / "iphone", photos / "cat_720p.jpg")
    digests = {p: _sha(p) for p in made}

    assert cli.main(["scan", str(tmp_path / "iphone")]) == 0

    for photo in made:
        assert _sha(photo) == digests[photo]  # sidecar: exiv2's in-file HEIF writing is unverified
        kw = exiftool_keywords(photo.with_name(photo.name + ".xmp"))
        assert any("cat" in k for k in kw["Subject"]), (photo, kw)
        assert kw["HierarchicalSubject"]


def test_a_raw_jpeg_pair_is_one_photo_analysed_once(
    tmp_path: Path,
    photos: Path,
    installed_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from phototag.pipeline import decode

    folder = tmp_path / "card"
    folder.mkdir()
    nef = folder / "DSC_0001.NEF"
    shutil.copyfile(need_shared(RAW_DIR / "nikon_d70s_child.nef"), nef)
    shutil.copyfile(photos / "cat_720p.jpg", folder / "DSC_0001.JPG")
    digest = _sha(nef)
    decoded: list[str] = []
    original = decode.load
    monkeypatch.setattr(decode, "load", lambda p, *a: decoded.append(p.name) or original(p, *a))

    assert cli.main(["scan", str(folder)]) == 0
    assert capsys.readouterr().err.startswith(
        "tagged 1 (1 written into the photo, 0 into a sidecar"
    )
    assert decoded == ["DSC_0001.JPG"]  # the cheaper file, once
    jpeg = exiftool_keywords(folder / "DSC_0001.JPG")
    assert jpeg["Subject"] and any("cat" in k for k in jpeg["Subject"])
    side = exiftool_keywords(folder / "DSC_0001.NEF.xmp")
    assert side["Subject"] == jpeg["Subject"]
    assert side["HierarchicalSubject"] == jpeg["HierarchicalSubject"]
    assert _sha(nef) == digest

    assert cli.main(["search", "cat"]) == 0
    found = capsys.readouterr().out
    assert "DSC_0001.JPG" in found and "DSC_0001.NEF" not in found


def test_stubs_print_our_line_and_nothing_else(
    tmp_path: Path, installed_model: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """No decoder's own complaint on stderr (libjpeg writes to fd 2 itself): a stub's tiny
    "previews" are refused from exiv2's listing, before anything decodes them."""
    stubs = tmp_path / "stubs"
    shutil.copytree(need_shared(RAW_DIR / "stubs"), stubs)
    assert cli.main(["-q", "scan", str(stubs)]) == 1
    lines = [line for line in capfd.readouterr().err.splitlines() if line]
    assert len(lines) == len(list(stubs.iterdir())) + 1
    assert all(line.startswith(("phototag: ", "tagged 0 ")) for line in lines), lines
