"""People through the CLI on real photos: name the people of faces/train once, scan unseen
photos, and read the names back with exiftool where other photo managers read them."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import MODEL_V1, MODELS, SHARED, exiftool_read, need_shared
from PIL import Image, ImageOps

from phototag import catalogue, cli, config
from phototag.library.index import open_index
from phototag.pipeline import faces
from phototag.records import FaceRecord

FACES = SHARED / "faces"
ALEX = "Alex Lacamoire"  # named by "digiKam" in the file, never through phototag


def person(stem: str) -> str:
    """`kit_harington_2` -> `Kit Harington`, the names the user types."""
    return " ".join(w.capitalize() for w in stem.rsplit("_", 1)[0].split("_"))


def run(capsys: pytest.CaptureFixture[str], cfg: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main(["-q", "-c", str(cfg), *args])
    out, err = capsys.readouterr()
    return status, out, err


def faces_on_file(path: Path) -> dict[str, list[object]]:
    """Face regions, PersonInImage and the hierarchy as exiftool sees them."""
    tags = ["-XMP-mwg-rs:RegionName", "-XMP-mwg-rs:RegionAreaX", "-XMP-mwg-rs:RegionAreaY"]
    tags += ["-XMP-iptcExt:PersonInImage", "-XMP:HierarchicalSubject"]
    return exiftool_read([path], *tags, numeric=True)[path]


def digikam_region(path: Path, name: str) -> None:
    """A face region as digiKam writes it (MWG, normalised area, applied dimensions), made
    by exiftool on the face BlazeFace finds there."""
    models = faces.FaceModels(MODELS / "face_blazeface.onnx", MODELS / "face_faceres.onnx")
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    (face,) = models.find(image)
    x1, y1, x2, y2 = face.box
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            f"-XMP-mwg-rs:RegionAppliedToDimensionsW={image.width}",
            f"-XMP-mwg-rs:RegionAppliedToDimensionsH={image.height}",
            "-XMP-mwg-rs:RegionAppliedToDimensionsUnit=pixel",
            f"-XMP-mwg-rs:RegionName={name}",
            "-XMP-mwg-rs:RegionType=Face",
            f"-XMP-mwg-rs:RegionAreaX={(x1 + x2) / 2:.5f}",
            f"-XMP-mwg-rs:RegionAreaY={(y1 + y2) / 2:.5f}",
            f"-XMP-mwg-rs:RegionAreaW={x2 - x1:.5f}",
            f"-XMP-mwg-rs:RegionAreaH={y2 - y1:.5f}",
            "-XMP-mwg-rs:RegionAreaUnit=normalized",
            f"-XMP-digiKam:TagsList=People/{name}",
            str(path),
        ],
        check=True,
    )


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of faces/ and of face.jpg (four strangers), the models installed, faces on."""
    need_shared(FACES)
    if shutil.which("exiftool") is None:
        pytest.fail(
            "exiftool is needed as an independent reader: apt-get install libimage-exiftool-perl"
        )
    for model in (MODEL_V1, MODELS / "face_blazeface.onnx", MODELS / "face_faceres.onnx"):
        catalogue.import_file(need_shared(model))
    root = tmp_path / "photos"
    for part in ("train", "test"):
        shutil.copytree(FACES / part, root / part)
    (root / "strangers").mkdir()
    shutil.copy(SHARED / "photos" / "face.jpg", root / "strangers" / "face.jpg")
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.copy(FACES / "test" / "t1.jpg", root / "named_t1.jpg")  # PersonInImage: Alex Lacamoire
    # ... which test/t1.jpg holds too: taken out there, so that the vote is what is measured.
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-iptcExt:PersonInImage=",
            str(root / "test" / "t1.jpg"),
        ],
        check=True,
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text("faces:\n  enabled: true\n", encoding="utf-8")
    return root, cfg


def indexed_faces() -> dict[str, list[FaceRecord]]:
    with open_index(config.Config().index_dir, readonly=True) as index:
        found: dict[str, list[FaceRecord]] = {}
        for face in index.faces():
            found.setdefault(Path(face.photo).name, []).append(face)
    return found


def test_people_named_once_are_found_in_unseen_photos_and_written_for_others(
    library: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, cfg = library
    train = sorted((root / "train").glob("*.jpg"))
    alex = root / "train" / "alex_lacamoire_1.jpg"
    digikam_region(alex, ALEX)
    assert run(capsys, cfg, "scan", str(root / "train"))[0] == 0
    assert indexed_faces()["alex_lacamoire_1.jpg"][0].name == ALEX  # the user's, from the file

    # One person by group, the others photo by photo, as a user would.
    status, out, _ = run(capsys, cfg, "faces", "--json")
    groups = [json.loads(line) for line in out.splitlines() if '"group"' in line]
    obama = next(g for g in groups if "obama" in g["photo"])
    assert obama["size"] == 2  # both photos of him, and nobody else
    assert run(capsys, cfg, "faces", "name", str(obama["group"]), "Obama")[0] == 0
    for photo in train:
        if photo != alex and "obama" not in photo.name:
            status, out, err = run(capsys, cfg, "faces", "name", str(photo), person(photo.stem))
            assert status == 0, err
    status, out, _ = run(capsys, cfg, "faces")
    assert (
        "named: Alex Lacamoire (1), Biden (2), Kit Harington (2), Obama (2), Rose Leslie (2)" in out
    )

    status, out, err = run(
        capsys, cfg, "--json", "scan", str(root / "test"), str(root / "strangers")
    )
    assert status == 0, err
    shown = [json.loads(line) for line in out.splitlines() if '"faces"' in line]
    assert {Path(s["path"]).name: len(s["faces"]) for s in shown}["face.jpg"] == 4

    found = indexed_faces()
    right = wrong = missed = 0
    with open(FACES / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = Path(row["file"]).name
            people = {person(p + "_x") for p in row["people"].split(";")}
            given = {x.name for x in found[name] if x.name}
            right += len(given & people)
            wrong += len(given - people)
            missed += len(people - given)
            assert all(x.source == "propagated" for x in found[name] if x.name)

            # Where others read it: one region and PersonInImage per name, on that face.
            seen = faces_on_file(root / "test" / name)
            assert sorted(map(str, seen["RegionName"])) == sorted(given)
            assert sorted(map(str, seen["PersonInImage"])) == sorted(given)
            assert {f"People|{n}" for n in given} <= set(map(str, seen["HierarchicalSubject"]))
            for who, x, y in zip(
                seen["RegionName"], seen["RegionAreaX"], seen["RegionAreaY"], strict=True
            ):
                (face,) = [f for f in found[name] if f.name == who]
                x1, y1, x2, y2 = face.box
                assert x1 < float(x) < x2 and y1 < float(y) < y2, (name, who)
    precision, recall = right / (right + wrong), right / (right + missed)
    with capsys.disabled():
        print(
            f"\nnames on faces/test through the CLI: precision {precision:.2f}, recall {recall:.2f}"
        )
    assert (precision, recall) == (1.0, 1.0)
    assert [f.name for f in found["face.jpg"]] == [""] * 4  # strangers stay strangers
    assert "RegionName" not in faces_on_file(root / "strangers" / "face.jpg")

    assert run(capsys, cfg, "search", "person:Biden AND suit")[1].strip()  # and plain names:
    assert str(root / "test" / "t5.jpg") in run(capsys, cfg, "search", "Biden")[1].split()

    # undo takes out our regions, names and People keywords; digiKam's region stays.
    status, _, err = run(capsys, cfg, "undo", str(root))
    assert status == 0, err
    for photo in [*train, *(root / "test").glob("*.jpg")]:
        seen = faces_on_file(photo)
        if photo == alex:
            assert seen["RegionName"] == [ALEX]
        else:
            assert "RegionName" not in seen and "PersonInImage" not in seen, photo.name
            assert not any("People" in str(k) for k in seen.get("HierarchicalSubject", []))
    # ... and from the index: found faces and voted names go, the user's namings stay, so
    # the next vote (a naming below) cannot name the undone photos again.
    after = indexed_faces()
    assert after.keys() == {p.name for p in train}
    assert all(f.source in ("user", "file") for faces in after.values() for f in faces)
    assert run(capsys, cfg, "search", "person:Biden")[1].split() == sorted(
        str(p) for p in train if p.name.startswith("biden")
    )
    other = next(p for p in train if p.name.startswith("rose"))
    assert run(capsys, cfg, "faces", "name", str(other), "Rose")[0] == 0  # a vote runs
    assert indexed_faces().keys() == after.keys()


def test_a_negative_takes_a_name_off_and_forget_removes_faces_and_our_regions(
    library: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, cfg = library
    folder = root / "train"
    for photo in folder.glob("*.jpg"):
        if not photo.name.startswith("biden"):
            photo.unlink()
    shutil.move(root / "named_t1.jpg", folder / "t1.jpg")
    digikam_region(folder / "biden_2.jpg", "Joe")  # the user's, in another program
    assert run(capsys, cfg, "scan", str(folder))[0] == 0
    biden_1 = folder / "biden_1.jpg"
    assert indexed_faces()["biden_1.jpg"][0].name == "Joe"  # the vote, from the file's naming
    (alex,) = indexed_faces()["t1.jpg"]  # its one face, by its PersonInImage
    assert (alex.name, alex.source) == (ALEX, "file")
    assert faces_on_file(biden_1)["RegionName"] == ["Joe"]

    status, out, _ = run(capsys, cfg, "faces", "not", str(biden_1), "--face", "1", "Joe")
    assert status == 0 and "is not 'Joe'" in out
    (face,) = indexed_faces()["biden_1.jpg"]
    assert (face.name, face.not_names) == ("", ["Joe"])
    assert "RegionName" not in faces_on_file(biden_1)

    status, _, err = run(capsys, cfg, "faces", "name", str(biden_1), "A|B")
    assert status == 2 and "cannot be a person's name" in err
    status, _, err = run(capsys, cfg, "faces", "name", str(biden_1), "--face", "3", "Joe")
    assert status == 2 and "no face 3" in err
    assert run(capsys, cfg, "faces", "name", str(biden_1), "Joseph")[0] == 0
    assert faces_on_file(biden_1)["RegionName"] == ["Joseph"]

    status, _, err = run(capsys, cfg, "faces", "forget")  # no terminal to ask on
    assert status == 2 and "--yes" in err
    status, out, _ = run(capsys, cfg, "faces", "forget", "--yes")
    assert status == 0 and "forgot 3 faces" in out
    assert indexed_faces() == {}
    assert "RegionName" not in faces_on_file(biden_1)
    assert faces_on_file(folder / "biden_2.jpg")["RegionName"] == ["Joe"]  # the user's stays


def test_faces_on_without_the_face_models_is_one_line_and_tagging_goes_on(
    tmp_path: Path,
    photos: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalogue.import_file(need_shared(MODEL_V1))
    photo = tmp_path / "grace.jpg"
    Image.open(photos / "grace_hopper.bmp").convert("RGB").save(photo)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("faces:\n  enabled: true\n", encoding="utf-8")
    status, out, err = run(capsys, cfg, "tag", str(photo))
    assert status == 0 and "uniform" in out
    (line,) = [e for e in err.splitlines() if "faces" in e]  # one line, on stderr
    assert "not installed" in line and "phototag models" in line
    status, _, err = run(capsys, cfg, "faces")
    assert status == 2 and ("faceres" in err or "blazeface" in err)


def test_faces_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["faces", "--help"])
    out = capsys.readouterr().out
    for words in ("faces name 3", "faces not", "person:Grandma", "similar", "forget --yes"):
        assert words in out
