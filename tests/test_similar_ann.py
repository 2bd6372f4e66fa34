"""`phototag similar` through the saved HNSW graph (library/ann.py), on a real scanned folder.

The shared photos are tagged once by `phototag scan` with the real model; each test works on
its own copy of that index with `ann.ANN_MIN_ROWS` lowered so the small library takes the
graph path, and compares it with the exact answer (ANN_MIN_ROWS back above the library).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag import catalogue, cli
from phototag.library import ann
from phototag.library.index import open_index
from phototag.records import PhotoFile
from tests.conftest import MODEL_V1, PHOTOS, need_shared

pytestmark = pytest.mark.skipif(not ann.available(), reason="usearch (phototag[ann]) not installed")

NAMES = ["bird.bmp", "cat_1080p.jpg", "cat_720p.jpg", "dragonfly.bmp", "hot_dog.jpg", "owl.jpg"]
NAMES += ["parrot.jpg", "pets.jpg", "sunflower.bmp", "kite_and_cold.jpg", "grace_hopper.bmp"]


@dataclass(frozen=True)
class Library:
    folder: Path  # the photos
    index: Path
    config: Path


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scanned copy of the shared photos: the photos and index folders, side by side."""
    need_shared(PHOTOS)
    need_shared(MODEL_V1)
    root = tmp_path_factory.mktemp("ann")
    (root / "photos").mkdir()
    for name in NAMES:
        shutil.copyfile(PHOTOS / name, root / "photos" / name)
    config = root / "config.yaml"
    config.write_text(f"index:\n  path: {root / 'index'}\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_DATA_HOME", str(root / "data"))
        catalogue.import_file(MODEL_V1, "mobilenet-v2")
        assert cli.main(["-q", "-c", str(config), "scan", str(root / "photos")]) == 0
    return root


@pytest.fixture
def library(
    scanned: Path, tmp_path: Path, installed_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Library:
    """This test's own copy of the index, answered through the graph."""
    shutil.copytree(scanned / "index", tmp_path / "index")
    config = tmp_path / "config.yaml"
    config.write_text(f"index:\n  path: {tmp_path / 'index'}\n", encoding="utf-8")
    monkeypatch.setattr(ann, "ANN_MIN_ROWS", 1)
    return Library(scanned / "photos", tmp_path / "index", config)


def similar(
    capsys: pytest.CaptureFixture[str], library: Library, photo: Path, k: int = 5
) -> list[tuple[str, float]]:
    capsys.readouterr()
    code = cli.main(["-q", "-c", str(library.config), "similar", str(photo), "-k", str(k)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [line.split("  ", 1) for line in out.splitlines()]
    return [(Path(path).name, float(score)) for score, path in rows]


def exact(
    capsys: pytest.CaptureFixture[str],
    library: Library,
    photo: Path,
    monkeypatch: pytest.MonkeyPatch,
    k: int = 5,
) -> list[tuple[str, float]]:
    with monkeypatch.context() as m:
        m.setattr(ann, "ANN_MIN_ROWS", 10**9)
        return similar(capsys, library, photo, k)


def graphs(library: Library) -> list[Path]:
    return sorted(library.index.glob(f"*{ann.SUFFIX}"))


def agree(found: list[tuple[str, float]], truth: list[tuple[str, float]]) -> None:
    """Same photos in the same order, cosines to the printed 3 decimals (float16 either way)."""
    assert [n for n, _ in found] == [n for n, _ in truth]
    assert np.allclose([s for _, s in found], [s for _, s in truth], atol=0.0015)


def test_graph_answers_as_exact_and_is_saved_then_reused(
    capsys: pytest.CaptureFixture[str], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert graphs(library) == []
    for name in ("cat_720p.jpg", "parrot.jpg", "hot_dog.jpg"):
        photo = library.folder / name
        found = similar(capsys, library, photo, k=8)
        assert len(found) == 8 and name not in [n for n, _ in found]
        agree(found, exact(capsys, library, photo, monkeypatch, k=8))
    (graph,) = graphs(library)
    assert graph.name.endswith(f".f16{ann.SUFFIX}")
    saved = graph.stat()
    added: list[int] = []
    monkeypatch.setattr(ann.AnnIndex, "add", lambda self, keys, *a: added.append(len(keys)))
    similar(capsys, library, library.folder / "owl.jpg")
    assert added == [] and graph.stat().st_mtime_ns == saved.st_mtime_ns  # not rebuilt
    assert not list(library.index.glob(".*"))  # no temp file left


def test_photos_scanned_after_the_graph_are_found(
    capsys: pytest.CaptureFixture[str],
    library: Library,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = library.folder / "sunflower.bmp"
    similar(capsys, library, probe)  # the graph of the scanned photos
    (graph,) = graphs(library)
    rows = len(ann.AnnIndex.load(graph))
    assert rows == len(NAMES)  # one row a photo
    new = tmp_path / "new"
    new.mkdir()
    Image.open(PHOTOS / "sunflower.bmp").resize((300, 300)).save(new / "small sunflower.jpg")
    assert cli.main(["-q", "-c", str(library.config), "scan", str(new)]) == 0
    found = similar(capsys, library, probe)  # the new row, past the graph: searched exactly
    assert found[0][0] == "small sunflower.jpg"
    assert len(ann.AnnIndex.load(graph)) == rows  # a short tail does not rewrite the graph
    agree(found, exact(capsys, library, probe, monkeypatch))
    monkeypatch.setattr(ann, "TAIL_ROWS", 0)  # any tail: added to the graph and saved
    assert similar(capsys, library, probe) == found
    assert len(ann.AnnIndex.load(graph)) == rows + 1


def test_removed_photo_never_appears_and_moved_one_under_its_new_path(
    capsys: pytest.CaptureFixture[str], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = library.folder / "cat_720p.jpg"
    first = similar(capsys, library, probe)
    assert first[0][0] == "cat_1080p.jpg"
    with open_index(library.index) as index:
        assert index.remove(library.folder / "cat_1080p.jpg") is not None
        parrot = index.get(library.folder / "parrot.jpg")
        assert parrot is not None
        moved = library.folder / "birds" / "parrot.jpg"
        index.move(parrot.path, PhotoFile(moved, parrot.size, parrot.mtime_ns))
    found = similar(capsys, library, probe, k=10)
    names = [n for n, _ in found]
    assert "cat_1080p.jpg" not in names and len(found) == 9  # every other photo
    assert names.count("parrot.jpg") == 1
    agree(found, exact(capsys, library, probe, monkeypatch, k=10))


def test_compaction_renumbers_rows_and_the_graph_is_built_anew(
    capsys: pytest.CaptureFixture[str], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = library.folder / "pets.jpg"
    similar(capsys, library, probe)
    (old,) = graphs(library)
    gone = ["bird.bmp", "owl.jpg", "dragonfly.bmp", "kite_and_cold.jpg"]
    with open_index(library.index) as index:
        for name in gone:
            index.remove(library.folder / name)
    with open_index(library.index) as index:  # alone and writable: compacts the store
        (store,) = [f.name for f in library.index.glob("embedding-*.f16")]
    assert not old.exists() and store.endswith(".1.f16")  # compacted: a new generation
    found = similar(capsys, library, probe, k=10)
    (new,) = graphs(library)
    assert new.name == f"{store}{ann.SUFFIX}" and len(ann.AnnIndex.load(new)) == len(NAMES) - 4
    assert not {n for n, _ in found} & set(gone) and len(found) == len(NAMES) - 5
    agree(found, exact(capsys, library, probe, monkeypatch, k=10))


@pytest.mark.parametrize("backend", ["sqlite", "tinydb"])
def test_paths_of_rows_names_the_photos_holding_them_now(tmp_path: Path, backend: str) -> None:
    from phototag.library.index import PhotoRecord

    rows = np.eye(4, 8, dtype=np.float16)
    with open_index(tmp_path, backend) as index:  # type: ignore[arg-type]
        records = [PhotoRecord(f"/p/{i}.jpg", 1, 1, "0") for i in range(3)]
        index.put_many(records, [{"e": v} for v in rows[:3]])
        index.put(PhotoRecord("/p/1.jpg", 1, 1, "0"), {"e": rows[3]})  # re-analysed: row 3
        index.remove("/p/2.jpg")
        assert index.paths_of_rows("e", [0, 1, 2, 3, 9]) == {0: ["/p/0.jpg"], 3: ["/p/1.jpg"]}
        assert index.paths_of_rows("other", [0]) == {} and index.paths_of_rows("e", []) == {}
        index.put(PhotoRecord("/p/7.jpg", 1, 1, "0"))  # no vector
        assert index.vector_count("e") == 2 and index.vector_count("other") == 0


def test_photos_without_an_embedding_are_counted_as_on_the_exact_path(
    capsys: pytest.CaptureFixture[str], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phototag.library.index import PhotoRecord

    with open_index(library.index) as index:
        index.put(PhotoRecord(str(library.folder / "new.jpg"), 1, 1, "0"))  # not analysed yet
    warnings = []
    for min_rows in (1, 10**9):  # the graph, then exact search
        monkeypatch.setattr(ann, "ANN_MIN_ROWS", min_rows)
        capsys.readouterr()
        assert (
            cli.main(["-q", "-c", str(library.config), "similar", str(library.folder / "owl.jpg")])
            == 0
        )
        warnings.append(capsys.readouterr().err)
    assert warnings[0] == warnings[1]
    assert "1 photos have no embedding from mobilenet-v2" in warnings[0]


def test_a_damaged_graph_is_one_line_and_built_again(
    capsys: pytest.CaptureFixture[str], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = library.folder / "owl.jpg"
    truth = exact(capsys, library, probe, monkeypatch)
    similar(capsys, library, probe)
    (graph,) = graphs(library)
    graph.write_bytes(graph.read_bytes()[:1000])  # cut short
    capsys.readouterr()
    assert cli.main(["-q", "-c", str(library.config), "similar", str(probe), "-k", "5"]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "unreadable" in err and "building it again" in err
    agree(
        [(Path(p).name, float(s)) for s, p in (line.split("  ", 1) for line in out.splitlines())],
        truth,
    )
    assert len(ann.AnnIndex.load(graph)) == len(NAMES)


def test_a_long_first_build_says_so_and_prints_its_progress(
    capsys: pytest.CaptureFixture[str], library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ann, "BUILD_CHUNK", 4)  # 11 rows: three chunks, as 1 000 000 in 20
    capsys.readouterr()
    photo = library.folder / "bird.bmp"
    assert cli.main(["-q", "-c", str(library.config), "similar", str(photo)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"phototag: indexing {len(NAMES)} embeddings for `similar`")
    assert [line.split(" embeddings")[0] for line in lines[1:]] == [
        f"phototag: {n} of {len(NAMES)}" for n in (4, 8, 11)
    ]
    assert "min left" in lines[-1] and len(graphs(library)) == 1
