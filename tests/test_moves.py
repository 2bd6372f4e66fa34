from pathlib import Path

import numpy as np
import pytest

from phototag.library.index import Index, PhotoRecord, open_index
from phototag.records import PhotoFile, Tag
from phototag.service import moves


@pytest.fixture
def index(tmp_path: Path) -> Index:
    with open_index(tmp_path / "index") as idx:
        yield idx


def tagged(index: Index, photo: Path, sidecar: Path | None = None) -> PhotoRecord:
    """A photo as the pipeline leaves it: on disk, indexed, keywords in it or in a sidecar."""
    photo.write_bytes(b"jpeg bytes")
    if sidecar is not None:
        sidecar.write_text("<x:xmpmeta/>")
    file = PhotoFile.stat(photo)
    record = PhotoRecord(
        str(photo),
        file.size,
        file.mtime_ns,
        "a" * 64,
        auto=[Tag("animal|cat", 0.9)],
        written_to=str(sidecar or photo),
    )
    index.put(record, {"embedding": np.ones(4, np.float32)})
    return record


def test_a_move_keeps_tags_and_vectors_and_needs_no_tagging(index: Index, tmp_path: Path) -> None:
    old, new = tmp_path / "a.jpg", tmp_path / "b.jpg"
    tagged(index, old)
    old.rename(new)
    assert moves.move(index, old, new) is False
    assert index.get(old) is None
    record = index.get(new)
    assert record is not None
    assert record.auto == [Tag("animal|cat", 0.9)] and record.written_to == str(new)
    assert np.allclose(index.vectors("embedding", [record], 4), 1.0)


@pytest.mark.parametrize(
    ("side_old", "side_new"),
    [("a.jpg.xmp", "b.jpg.xmp"), ("a.xmp", "b.xmp")],
    ids=["append", "replace"],
)
def test_the_sidecar_goes_with_its_photo(
    index: Index, tmp_path: Path, side_old: str, side_new: str
) -> None:
    old, new = tmp_path / "a.jpg", tmp_path / "sub" / "b.jpg"
    new.parent.mkdir()
    tagged(index, old, tmp_path / side_old)
    old.rename(new)
    moves.move(index, old, new)
    assert not (tmp_path / side_old).exists()
    assert (new.parent / side_new).read_text() == "<x:xmpmeta/>"
    assert index.get(new).written_to == str(new.parent / side_new)


def test_a_sidecar_shared_with_a_raw_file_is_copied_not_moved(index: Index, tmp_path: Path) -> None:
    old, new, shared = tmp_path / "IMG_1.jpg", tmp_path / "best.jpg", tmp_path / "IMG_1.xmp"
    (tmp_path / "IMG_1.cr2").write_bytes(b"raw")
    tagged(index, old, shared)
    old.rename(new)
    moves.move(index, old, new)
    assert shared.exists() and (tmp_path / "best.xmp").exists()
    new.unlink()
    assert moves.delete(index, new) == 1
    assert shared.exists()  # IMG_1.cr2 still reads it


def test_a_photo_changed_on_the_way_needs_tagging(index: Index, tmp_path: Path) -> None:
    old, new = tmp_path / "a.jpg", tmp_path / "b.jpg"
    tagged(index, old)
    old.rename(new)
    new.write_bytes(b"other pixels")
    assert moves.move(index, old, new) is True
    assert index.get(new) is not None


def test_a_move_of_an_unindexed_photo_needs_tagging(index: Index, tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(b"x")
    assert moves.move(index, tmp_path / "a.jpg", tmp_path / "b.jpg") is True


def test_delete_forgets_the_photo_and_removes_its_sidecar(index: Index, tmp_path: Path) -> None:
    photo, sidecar = tmp_path / "a.png", tmp_path / "a.png.xmp"
    tagged(index, photo, sidecar)
    assert moves.delete(index, photo) == 0  # still there: kept
    photo.unlink()
    assert moves.delete(index, photo) == 1
    assert index.get(photo) is None and not sidecar.exists()


def test_a_folder_moved_away_forgets_what_was_below_it(index: Index, tmp_path: Path) -> None:
    trip = tmp_path / "trip"
    trip.mkdir()
    tagged(index, trip / "1.jpg")
    tagged(index, trip / "2.jpg")
    tagged(index, tmp_path / "tripod.jpg")  # same prefix, not below
    trip.rename(tmp_path / "trash")
    assert moves.delete_folder(index, trip) == 2
    assert [r.path for r in index.records()] == [str(tmp_path / "tripod.jpg")]


def test_renamed_sidecar_names() -> None:
    old, new = Path("/p/IMG.JPG"), Path("/q/x.jpeg")
    assert moves.renamed_sidecar(Path("/p/IMG.JPG.xmp"), old, new) == Path("/q/x.jpeg.xmp")
    assert moves.renamed_sidecar(Path("/p/IMG.xmp"), old, new) == Path("/q/x.xmp")
    assert moves.renamed_sidecar(Path("/p/other.xmp"), old, new) == Path("/p/other.xmp")


def test_a_photo_moved_on_before_its_move_job_keeps_its_record(
    index: Index, tmp_path: Path
) -> None:
    """a -> b, then b -> c (its folder renamed) before the job for a -> b runs."""
    a, b, c = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    tagged(index, a, tmp_path / "a.jpg.xmp")
    a.rename(c)
    assert moves.move(index, a, b) is False
    assert index.get(b) is not None and (tmp_path / "b.jpg.xmp").exists()
    assert moves.move(index, b, c) is False  # no tagging: the record came along
    record = index.get(c)
    assert record is not None and record.auto == [Tag("animal|cat", 0.9)]
    assert record.written_to == str(tmp_path / "c.jpg.xmp")
    assert [p.name for p in tmp_path.glob("*.xmp")] == ["c.jpg.xmp"]


def test_a_photo_moved_and_deleted_is_forgotten_with_its_sidecar(
    index: Index, tmp_path: Path
) -> None:
    old, new = tmp_path / "a.jpg", tmp_path / "b.jpg"
    tagged(index, old, tmp_path / "a.jpg.xmp")
    old.unlink()
    assert moves.move(index, old, new) is False
    assert moves.delete(index, new) == 1
    assert len(index) == 0 and not list(tmp_path.glob("*.xmp"))
