"""Places from GPS: positions named offline, keywords and IPTC location fields, refine, undo."""

from __future__ import annotations

import hashlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from phototag.config import Config, PlacesConfig, WriteConfig
from phototag.files import location, metadata
from phototag.library.index import PhotoRecord
from phototag.library.query import And, Term, parse
from phototag.pipeline import decode, places
from phototag.records import Position, Tag
from tests.albums import records, run
from tests.conftest import exiftool, mwg_keywords

LISBON = Position(38.7223, -9.1393)
BERLIN = Position(52.5200, 13.4050)
TOKYO = Position(35.6812, 139.7671)
AT_SEA = Position(30.0, -40.0)  # mid-Atlantic, 1000 km from the Azores
HIMEJI = Position(34.8394, 134.6939)


# ---- pure ---------------------------------------------------------------------------------


def test_valid_rejects_no_fix_and_out_of_range() -> None:
    assert places.valid(38.7, -9.1)
    assert not places.valid(0.0, 0.0)
    assert not places.valid(90.5, 10.0) and not places.valid(10.0, -180.5)
    assert not places.valid(float("nan"), 1.0) and not places.valid(1.0, float("inf"))


def test_distance_is_great_circle() -> None:
    a = np.array([[LISBON.lat, LISBON.lon], [0.0, 0.0]])
    b = np.array([[BERLIN.lat, BERLIN.lon], [0.0, 1.0]])
    lisbon_berlin, one_degree = places.distance_km(a, b)
    assert abs(lisbon_berlin - 2311) < 5  # published great-circle distance, about 2311 km
    assert abs(one_degree - 111.195) < 0.01  # 2 pi R / 360


def test_locate_names_cities_and_nothing_at_sea() -> None:
    cfg = PlacesConfig()
    found = places.locate([LISBON, BERLIN, TOKYO, HIMEJI, AT_SEA, Position(0.0, 0.0)], cfg)
    named = [(p.country, p.country_code, p.city) if p else None for p in found]
    assert named == [
        ("Portugal", "PT", "Lisbon"),
        ("Germany", "DE", "Berlin"),  # the city, not the district ("Mitte") nearest
        ("Japan", "JP", "Tokyo"),
        ("Japan", "JP", "Himeji"),
        None,
        None,
    ]
    assert found[3] is not None and found[3].state == "Hyōgo"
    # Without the big-city rule the nearest GeoNames place wins: Berlin's district.
    nearest = places.locate([BERLIN], PlacesConfig(city_km=0.0))[0]
    assert nearest is not None and nearest.city == "Mitte"


def test_place_keyword_follows_the_settings() -> None:
    place = places.Place("Japan", "JP", "Hyōgo", "Himeji")
    assert [t.path for t in places.tags(place, PlacesConfig())] == ["places|Japan|Himeji"]
    cfg = PlacesConfig(root="Where", state=True)
    assert [t.path for t in places.tags(place, cfg)] == ["Where|Japan|Hyōgo|Himeji"]
    assert places.tags(place, PlacesConfig(enabled=False)) == []
    assert places.tags(None, PlacesConfig()) == []
    assert places.with_place([], None, Config()) == []
    cfg_ = Config()
    cfg_.tags.rename = {"Berlin": "places|Deutschland|Berlin"}
    assert [t.path for t in places.with_place([], BERLIN, cfg_)] == ["places|Deutschland|Berlin"]
    cfg_.tags.exclude = ["Deutschland"]
    assert places.with_place([], BERLIN, cfg_) == []


def test_place_prefix_searches_the_place_keywords() -> None:
    assert parse("place:Berlin") == And((Term("places"), Term("berlin")))
    assert parse('"place:New York" OR Lisbon').operands[0] == And(  # type: ignore[union-attr]
        (Term("places"), Term("new york"))
    )


def test_gps_values_parse_and_malformed_ones_are_refused() -> None:
    assert location.exif_degrees("52/1 31/1 12/1", "N") == pytest.approx(52.52)
    assert location.exif_degrees("9/1 8214/1000 0/1", "W") == pytest.approx(-9.1369)
    assert location.xmp_degrees("52,31.2N") == pytest.approx(52.52)
    assert location.xmp_degrees("139,46,1.56E") == pytest.approx(139.76710)
    assert location.xmp_degrees("33,52.5S") == pytest.approx(-33.875)
    for value, ref in [("52/1 31/1", "N"), ("52/0 1/1 0/1", "N"), ("52/1 1/1 0/1", "X")]:
        with pytest.raises(ValueError):
            location.exif_degrees(value, ref)
    for value in ["52.5", "52,31.2Q", "", "N"]:
        with pytest.raises(ValueError):
            location.xmp_degrees(value)


# ---- end to end ---------------------------------------------------------------------------


def rational(value: float) -> tuple[int, int]:
    f = Fraction(value).limit_denominator(10000)
    return f.numerator, f.denominator


def dms(degrees: float) -> tuple[tuple[int, int], ...]:
    d = int(abs(degrees))
    m = int((abs(degrees) - d) * 60)
    s = (abs(degrees) - d - m / 60) * 3600
    return ((d, 1), (m, 1), rational(round(s, 2)))


def gps_ifd(p: Position) -> dict[int, object]:
    return {
        piexif.GPSIFD.GPSLatitudeRef: b"N" if p.lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: dms(p.lat),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if p.lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: dms(p.lon),
    }


def photo(folder: Path, name: str, gps: dict[int, object] | None, seed: int) -> Path:
    """A small real JPEG with this GPS IFD in its EXIF."""
    rng = np.random.default_rng(seed)
    path = folder / name
    image = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    exif = piexif.dump({"0th": {}, "Exif": {}, "GPS": gps or {}, "1st": {}}) if gps else b""
    image.save(path, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return path


def read_back(paths: list[Path]) -> dict[str, dict[str, object]]:
    """Location fields and keywords as exiftool, an independent reader, sees them."""
    fields = ["-XMP:Country", "-XMP:CountryCode", "-XMP:State", "-XMP:City"]
    fields += ["-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords"]
    out = subprocess.run(
        ["exiftool", "-j", "-struct", *fields, *map(str, paths)], capture_output=True, check=True
    ).stdout
    return {Path(d.pop("SourceFile")).name: d for d in json.loads(out)}


def as_list(value: object) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]


@pytest.fixture
def album(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "album"
    folder.mkdir()
    malformed = gps_ifd(LISBON) | {piexif.GPSIFD.GPSLatitude: ((38, 1), (42, 1))}
    out = [
        photo(folder, "lisbon.jpg", gps_ifd(LISBON), 1),
        photo(folder, "berlin.jpg", gps_ifd(BERLIN), 2),
        photo(folder, "tokyo.jpg", gps_ifd(TOKYO), 3),
        photo(folder, "sea.jpg", gps_ifd(AT_SEA), 4),
        photo(folder, "zero.jpg", gps_ifd(Position(0.0, 0.0)), 5),
        photo(folder, "malformed.jpg", malformed, 6),
        photo(folder, "no_gps.jpg", None, 7),
        photo(folder, "user_city.jpg", gps_ifd(BERLIN), 8),
    ]
    exiftool(out[-1], "-XMP-photoshop:City=Kreuzberg", "-XMP:Subject=holiday")
    # A photo geotagged in its sidecar only (darktable, digiKam): a BMP, which takes no XMP.
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(folder / "himeji.bmp")
    (folder / "himeji.bmp.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
        ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
        ' xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="34,50.364N"'
        ' exif:GPSLongitude="134,41.634E"/></rdf:RDF></x:xmpmeta>'
    )
    return [*out, folder / "himeji.bmp"]


def test_places_from_gps_written_searched_refined_and_undone(
    album: list[Path],
    tmp_path: Path,
    installed_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = album[0].parent
    status, _, err = run(capsys, "scan", str(folder))
    assert status == 0, err
    files = [*album[:-1], folder / "himeji.bmp.xmp"]
    seen = read_back(files)
    expect = {
        "lisbon.jpg": ("Portugal", "PT", "Lisbon", "Lisbon"),
        "berlin.jpg": ("Germany", "DE", "State of Berlin", "Berlin"),
        "tokyo.jpg": ("Japan", "JP", "Tokyo", "Tokyo"),
        "himeji.bmp.xmp": ("Japan", "JP", "Hyōgo", "Himeji"),
    }
    for name, (country, code, state, city) in expect.items():
        got = seen[name]
        assert (got.get("Country"), got.get("CountryCode"), got.get("State"), got.get("City")) == (
            country,
            code,
            state,
            city,
        ), name
        path = f"places|{country}|{city}"
        assert path in as_list(got.get("HierarchicalSubject")), name
        assert f"places/{country}/{city}" in as_list(got.get("TagsList")), name
        assert {country, city} <= set(as_list(got.get("Subject"))), name
        if name.endswith(".jpg"):  # levels of places|country|city: in dc:subject, not IPTC
            assert not {country, city} & set(as_list(got.get("Keywords"))), name
            assert {country, city} <= set(mwg_keywords(folder / name)), name
    for name in ["sea.jpg", "zero.jpg", "malformed.jpg", "no_gps.jpg"]:
        got = seen[name]
        assert not {"Country", "CountryCode", "State", "City"} & set(got), name
        assert not any(p.startswith("places|") for p in as_list(got.get("HierarchicalSubject")))
    # The user's city stays; only the empty fields are filled.
    mine = seen["user_city.jpg"]
    assert mine["City"] == "Kreuzberg" and mine["Country"] == "Germany"
    assert "holiday" in as_list(mine["Subject"])

    by_name = {p.name: r for p, r in records(album).items()}
    berlin = by_name["berlin.jpg"].position
    assert berlin is not None and (berlin.lat, berlin.lon) == pytest.approx(
        (BERLIN.lat, BERLIN.lon)
    )
    assert by_name["sea.jpg"].position is not None and by_name["zero.jpg"].position is None

    status, out, _ = run(capsys, "search", "place:Berlin")
    assert status == 0 and sorted(Path(p).name for p in out.split()) == [
        "berlin.jpg",
        "user_city.jpg",
    ]
    assert [Path(p).name for p in run(capsys, "search", "Japan")[1].split()] == [
        "himeji.bmp",
        "tokyo.jpg",
    ]

    # `tags --source auto` lists the places with their photo counts.
    status, out, _ = run(capsys, "tags", "--source", "auto", "--json")
    counts = {t["tag"]: t["photos"] for t in json.loads(out)["tags"]}
    assert status == 0 and counts["places|Germany|Berlin"] == 2
    assert counts["places|Japan"] == 2 and counts["places|Portugal|Lisbon"] == 1

    # A new root re-decides places from the index: nothing is decoded.
    monkeypatch.setattr(decode, "load", pytest.fail)
    new_cfg = tmp_path / "config.yaml"
    new_cfg.write_text("places:\n  root: Where\n  state: true\n")
    status, _, err = run(capsys, "--config", str(new_cfg), "refine")
    assert status == 0, err
    assert "0 photos need re-analysis" in err and f"{len(album)} need only re-scoring" in err
    seen = read_back(files)
    assert "Where|Germany|State of Berlin|Berlin" in as_list(
        seen["berlin.jpg"]["HierarchicalSubject"]
    )
    assert not any("places|" in p for p in as_list(seen["berlin.jpg"]["HierarchicalSubject"]))

    # Undo takes out exactly what we filled; the user's city and keyword stay.
    status, _, err = run(capsys, "undo", str(folder))
    assert status == 0, err
    seen = read_back(files)
    for name in ["lisbon.jpg", "berlin.jpg", "tokyo.jpg"]:
        assert not {"Country", "CountryCode", "State", "City", "Subject"} & set(seen[name]), name
    assert seen["user_city.jpg"]["City"] == "Kreuzberg" and "Country" not in seen["user_city.jpg"]
    assert as_list(seen["user_city.jpg"]["Subject"]) == ["holiday"]
    assert (
        not (folder / "himeji.bmp.xmp").exists()
        or "City" not in read_back([folder / "himeji.bmp.xmp"])["himeji.bmp.xmp"]
    )


def test_fill_and_undo_leave_what_the_user_wrote(tmp_path: Path) -> None:
    """Fill only empty fields, in the keyword write; undo removes only values still as we
    wrote them; dry runs write nothing."""
    cfg = WriteConfig()
    path = photo(tmp_path, "berlin.jpg", gps_ifd(BERLIN), 9)
    found = location.read(path, cfg)
    assert found is not None and (found.lat, found.lon) == pytest.approx((BERLIN.lat, BERLIN.lon))
    place = places.place_of(found, PlacesConfig())
    assert place is not None
    before = path.read_bytes()
    cat = [Tag("animal|mammal|cat", 0.9)]
    fill = location.filler(place)
    assert (
        metadata.write(path, cat, "m@1", WriteConfig(dry_run=True), fill=fill).photo_sha256 is None
    )
    assert path.read_bytes() == before
    written = metadata.write(path, cat, "m@1", cfg, fill=fill)
    assert written.photo_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # one rewrite
    got = read_back([path])["berlin.jpg"]
    assert (got["Country"], got["City"]) == ("Germany", "Berlin") and "cat" in got["Subject"]
    filled = path.read_bytes()
    assert metadata.write(path, cat, "m@1", cfg, fill=fill).photo_sha256 is None  # nothing empty
    assert path.read_bytes() == filled
    exiftool(path, "-XMP-photoshop:City=Charlottenburg")  # the user corrects our city
    assert location.undo(path, cfg) == path
    got = read_back([path])["berlin.jpg"]
    assert got.get("City") == "Charlottenburg"
    assert not {"Country", "CountryCode", "State"} & set(got)
    assert location.undo(path, cfg) is None  # nothing of ours left


def test_positions_read_from_exif_and_refused_when_malformed(tmp_path: Path) -> None:
    cfg = WriteConfig()
    bad = gps_ifd(TOKYO) | {piexif.GPSIFD.GPSLongitudeRef: b"Q"}
    cases = {
        "tokyo.jpg": gps_ifd(TOKYO),
        "zero.jpg": gps_ifd(Position(0.0, 0.0)),
        "bad_ref.jpg": bad,
        "no_gps.jpg": None,
    }
    got = {
        n: location.read(photo(tmp_path, n, g, i), cfg) for i, (n, g) in enumerate(cases.items())
    }
    tokyo = got.pop("tokyo.jpg")
    assert tokyo is not None and (tokyo.lat, tokyo.lon) == pytest.approx((TOKYO.lat, TOKYO.lon))
    assert got == {"zero.jpg": None, "bad_ref.jpg": None, "no_gps.jpg": None}


def test_position_survives_the_index_document() -> None:
    record = PhotoRecord("a.jpg", 1, 2, "0" * 64, position=Position(38.7, -9.1))
    assert PhotoRecord.from_doc(json.loads(json.dumps(record.to_doc()))) == record
    assert PhotoRecord.from_doc(PhotoRecord("b.jpg", 1, 2, "").to_doc()).position is None
