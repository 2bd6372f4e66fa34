"""`search`, `similar`, `duplicates` and `cluster` end to end over a real tagged folder.

The shared photos are copied, one gets another keyword of the user's (added by exiftool), pets.jpg
gets a re-save at JPEG quality 70 and a 50 % resize, and `phototag scan` tags them all with
the real model once per module; each test then runs the command line in-process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from phototag import catalogue, cli
from tests.conftest import MODEL_V1, PHOTOS, need_shared

NAMES = [
    "bird.bmp",
    "cat_1080p.jpg",
    "cat_720p.jpg",
    "dragonfly.bmp",
    "face.jpg",
    "grace_hopper.bmp",
    "hot_dog.jpg",
    "kite_and_cold.jpg",
    "owl.jpg",
    "parrot.jpg",
    "pets.jpg",
    "sunflower.bmp",
]
COPIES = ["pets_q70.jpg", "pets_half.jpg"]  # in the sub-folder copies/


@dataclass(frozen=True)
class Library:
    folder: Path
    config: Path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    need_shared(PHOTOS)
    need_shared(MODEL_V1)
    root = tmp_path_factory.mktemp("search")
    folder = root / "photos"
    (folder / "copies").mkdir(parents=True)
    for name in NAMES:
        shutil.copyfile(PHOTOS / name, folder / name)
    pets = Image.open(PHOTOS / "pets.jpg")
    pets.save(folder / "copies" / "pets_q70.jpg", quality=70)
    pets.resize((pets.width // 2, pets.height // 2), Image.LANCZOS).save(
        folder / "copies" / "pets_half.jpg", quality=90
    )
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP:Subject+=Holiday 2023",
            "-IPTC:Keywords+=Holiday 2023",
            str(folder / "kite_and_cold.jpg"),
        ],
        check=True,
    )
    config = root / "config.yaml"
    config.write_text(f"index:\n  path: {root / 'index'}\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:  # this module's own model folder for the scan
        env.setenv("XDG_DATA_HOME", str(root / "data"))
        catalogue.import_file(MODEL_V1, "mobilenet-v2")
        assert cli.main(["-q", "-c", str(config), "scan", str(folder)]) == 0
    return Library(folder, config)


def run(capsys: pytest.CaptureFixture[str], library: Library, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["-q", "-c", str(library.config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def names(out: str) -> list[str]:
    return [Path(line).name for line in out.splitlines()]


def search(capsys: pytest.CaptureFixture[str], library: Library, *args: str) -> list[str]:
    code, out, err = run(capsys, library, "search", *args)
    assert code == (0 if out else 1), err  # no match: 1, as grep
    return names(out)


def test_search_is_hierarchical_and_case_insensitive(
    capsys: pytest.CaptureFixture[str], library: Library
) -> None:
    code, out, _ = run(capsys, library, "search", "animal")
    assert code == 0
    assert out.splitlines() == sorted(out.splitlines())  # one path a line, in path order
    animals = names(out)
    assert {"cat_720p.jpg", "cat_1080p.jpg", "parrot.jpg", "pets.jpg", "owl.jpg"} <= set(animals)
    assert not {"hot_dog.jpg", "sunflower.bmp", "grace_hopper.bmp"} & set(animals)
    assert search(capsys, library, "ANIMAL") == animals
    assert search(capsys, library, "animal|bird") == ["bird.bmp", "owl.jpg", "parrot.jpg"]


def test_search_boolean_operators(capsys: pytest.CaptureFixture[str], library: Library) -> None:
    not_birds = search(capsys, library, "animal NOT bird")
    assert {"cat_720p.jpg", "pets.jpg", "dragonfly.bmp"} <= set(not_birds)
    assert not {"parrot.jpg", "owl.jpg", "bird.bmp"} & set(not_birds)
    assert search(capsys, library, "cat OR parrot") == [
        "cat_1080p.jpg",
        "cat_720p.jpg",
        "parrot.jpg",
    ]
    assert search(capsys, library, "animal AND (food OR flower)") == []
    assert search(capsys, library, "--", "-animal AND food") == ["hot_dog.jpg"]


def test_user_keywords_are_flat_tags_found_by_source(
    capsys: pytest.CaptureFixture[str], library: Library
) -> None:
    assert search(capsys, library, "--source", "user", '"holiday 2023"') == ["kite_and_cold.jpg"]
    assert search(capsys, library, "--source", "auto", '"Holiday 2023"') == []
    # The shared kite_and_cold.jpg and owl.jpg already carry keywords of their owners.
    assert search(capsys, library, "--source", "user", "beach") == ["kite_and_cold.jpg", "owl.jpg"]
    # The model sees a beach in kite_and_cold.jpg too, but the keyword is its owner's: not ours.
    assert search(capsys, library, "--source", "auto", "beach") == []
    assert search(capsys, library, "beach NOT praia") == ["kite_and_cold.jpg"]
    assert search(capsys, library, '"brazil trip" AND "HOLIDAY 2023"') == []


def test_search_filters_by_score_folder_and_date(
    capsys: pytest.CaptureFixture[str], library: Library
) -> None:
    # owl.jpg's best bird tag (grouse) scores 0.72, the other birds over 0.98
    assert search(capsys, library, "--min-score", "0.8", "bird") == ["bird.bmp", "parrot.jpg"]
    copies = str(library.folder / "copies")
    assert search(capsys, library, "--folder", copies, "dog") == ["pets_half.jpg", "pets_q70.jpg"]
    # EXIF dates: parrot 2009-02-20, pets 2010-07-31, owl 2014; the cats have none
    dated = ["--from", "2009", "--to", "2010-07", "animal"]
    assert search(capsys, library, *dated) == ["parrot.jpg", "pets.jpg"]
    assert search(capsys, library, "--to", "2010-06", "animal") == ["parrot.jpg"]


def test_search_json_and_unknown_terms(
    capsys: pytest.CaptureFixture[str], library: Library
) -> None:
    code, out, err = run(capsys, library, "search", "--json", "parrot OR catt")
    assert code == 0
    (photo,) = [json.loads(line) for line in out.splitlines()]
    assert Path(photo["path"]).name == "parrot.jpg"
    assert photo["taken"] == "2009-02-20T10:53:42"
    assert [t["path"] for t in photo["tags"]] == ["animal|bird|parrot"]
    assert "no photo is tagged 'catt'" in err


@pytest.mark.parametrize(
    ("query", "column"),
    [("cat AND (beach OR", 17), ("cat AND AND dog", 8), ("(cat", 0), ('"hot dog', 0)],
)
def test_malformed_query_exits_2_with_a_caret(
    capsys: pytest.CaptureFixture[str], library: Library, query: str, column: int
) -> None:
    code, out, err = run(capsys, library, "search", query)
    assert code == 2
    assert out == ""
    first, shown, caret = err.splitlines()
    assert first.startswith("phototag: search: ") and first.endswith(
        f"at column {column + 1}"
    )  # from 1
    assert shown == f"  {query}"
    assert caret == " " * (2 + column) + "^"


def test_bad_filters_exit_2(capsys: pytest.CaptureFixture[str], library: Library) -> None:
    code, _, err = run(capsys, library, "search", "--from", "last week", "cat")
    assert code == 2 and "--from: bad date 'last week'" in err
    code, _, err = run(capsys, library, "search", "--min-score", "2", "cat")
    assert code == 2 and "--min-score" in err


def test_similar_finds_the_same_photo_for_an_unindexed_copy(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "new cat.jpg"
    Image.open(PHOTOS / "cat_720p.jpg").save(copy, quality=60)
    code, out, err = run(capsys, library, "similar", str(copy), "-k", "3")
    assert code == 0, err
    rows = [line.split("  ", 1) for line in out.splitlines()]
    assert sorted(Path(path).name for _, path in rows[:2]) == ["cat_1080p.jpg", "cat_720p.jpg"]
    scores = [float(score) for score, _ in rows]
    assert scores == sorted(scores, reverse=True)
    assert scores[1] > 0.95 > scores[2]


def test_similar_to_an_indexed_photo_leaves_it_out(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path
) -> None:
    code, out, err = run(capsys, library, "similar", str(library.folder / "pets.jpg"), "--json")
    assert code == 0, err
    found = [json.loads(line) for line in out.splitlines()]
    assert len(found) == 10
    assert [Path(f["path"]).name for f in found[:2]] == ["pets_q70.jpg", "pets_half.jpg"]
    assert "pets.jpg" not in [Path(f["path"]).name for f in found]


def test_similar_of_a_missing_photo_is_one_error(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, library, "similar", str(tmp_path / "gone.jpg"))
    assert code == 1 and out == ""
    assert (
        err.strip()
        == f"phototag: {tmp_path / 'gone.jpg'}: no such file (moved or deleted before it could be read)"
    )


def test_duplicates_groups_resaves_and_resizes_only(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path
) -> None:
    before = sorted(p.name for p in library.folder.rglob("*.*"))
    code, out, err = run(capsys, library, "duplicates", "--json")
    assert code == 0, err
    groups = [json.loads(line) for line in out.splitlines()]
    found = sorted([Path(p["path"]).name for p in g["photos"]] for g in groups)
    # pets.jpg first: the largest of its group; cat_720p and cat_1080p are one photo at two sizes
    assert found == [
        ["cat_1080p.jpg", "cat_720p.jpg"],
        ["pets.jpg", "pets_q70.jpg", "pets_half.jpg"],
    ]
    assert all(g["similarity"] >= 0.95 for g in groups)
    assert "2 groups of near-duplicates among 14 photos (nothing deleted)" in err
    assert sorted(p.name for p in library.folder.rglob("*.*")) == before

    code, out, _ = run(capsys, library, "duplicates")
    assert code == 0
    assert "3 photos, similarity 0.9" in out
    assert f"  {library.folder / 'pets.jpg'}  (512x430, 0.2 MB)" in out.splitlines()


def test_duplicates_threshold_and_paths(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path
) -> None:
    copies = str(library.folder / "copies")
    code, out, _ = run(capsys, library, "duplicates", "--json", copies)
    assert code == 0
    (group,) = [json.loads(line) for line in out.splitlines()]
    assert [Path(p["path"]).name for p in group["photos"]] == ["pets_q70.jpg", "pets_half.jpg"]
    code, out, _ = run(capsys, library, "duplicates", "--threshold", "0.999")
    assert (code, out) == (0, "")
    code, _, err = run(capsys, library, "duplicates", "--threshold", "1.5")
    assert code == 2 and "--threshold" in err


def test_cluster_names_groups_by_tags(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path
) -> None:
    code, out, err = run(capsys, library, "cluster", "-k", "3", "--json")
    assert code == 0, err
    clusters = [json.loads(line) for line in out.splitlines()]
    assert len(clusters) == 3
    members = [Path(p).name for c in clusters for p in c["photos"]]
    assert sorted(members) == sorted(NAMES + COPIES)
    assert all(c["tags"] for c in clusters)
    cats = next(c for c in clusters if any(p.endswith("cat_720p.jpg") for p in c["photos"]))
    assert any(p.endswith("cat_1080p.jpg") for p in cats["photos"])

    code, out, _ = run(capsys, library, "cluster", "-k", "3")
    headings = [line for line in out.splitlines() if line and not line.startswith("  ")]
    assert headings == [f"{c['name']} ({len(c['photos'])} photos)" for c in clusters]
    assert [c["name"] for c in clusters] == [", ".join(c["tags"]) for c in clusters]


def test_cluster_auto_and_bad_k(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path
) -> None:
    code, out, err = run(capsys, library, "cluster", "--auto", "--json")
    assert code == 0, err
    clusters = [json.loads(line) for line in out.splitlines()]
    assert 1 <= len(clusters) <= 13
    assert sum(len(c["photos"]) for c in clusters) == 14
    assert (
        err == f"{len(clusters)} groups (chosen by silhouette) among 14 photos (nothing changed)\n"
    )
    code, _, err = run(capsys, library, "cluster", "-k", "15")
    assert code == 2 and "between 1 and the number of photos (14)" in err


def test_embedding_commands_on_an_empty_index(
    capsys: pytest.CaptureFixture[str], installed_model: Path
) -> None:
    assert cli.main(["duplicates"]) == 2
    assert "no indexed photos to compare" in capsys.readouterr().err
    assert cli.main(["search", "cat"]) == 1  # no match
    out, err = capsys.readouterr()
    assert out == "" and "is empty" in err


def test_cluster_never_names_two_groups_the_same(
    capsys: pytest.CaptureFixture[str], library: Library, installed_model: Path
) -> None:
    """Issue 16 item 15: one group a photo, so the two cats and the three pets copies share
    their top tags: each group takes more of its tags, or a number, until the names differ."""
    code, out, err = run(capsys, library, "cluster", "-k", "14", "--json")
    assert code == 0, err
    clusters = [json.loads(line) for line in out.splitlines()]
    names = [c["name"] for c in clusters]
    assert len(clusters) == 14 and len(set(names)) == 14, names
    assert err == "14 groups (as asked) among 14 photos (nothing changed)\n"
    code, out, _ = run(capsys, library, "cluster", "-k", "14")
    headings = [line for line in out.splitlines() if line and not line.startswith("  ")]
    assert headings == [f"{name} (1 photo)" for name in names]
