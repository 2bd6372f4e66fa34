"""`phototag backfill` on a local Ray (num_cpus=2, no dashboard) against `phototag scan`.

One Ray instance serves the whole module: starting one costs seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import MODELS, SHARED, exiftool_keywords, keyword_sets, need_shared

from phototag import catalogue, config
from phototag.cli import main
from phototag.library.index import open_index

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'phototag[cluster]')")
from phototag.pipeline import backfill  # noqa: E402

PHOTO_NAMES = ["cat_720p.jpg", "parrot.jpg", "hot_dog.jpg", "pets.jpg", "owl.jpg", "face.jpg"]


@pytest.fixture
def default_models(installed_model: Path) -> None:
    """The README's default install: the classifier, the NanoDet detector, the bird specialist."""
    catalogue.import_file(need_shared(MODELS / "coco_nanodet.onnx"), "coco-nanodet")
    catalogue.import_file(need_shared(MODELS / "inat_bird.onnx"), "inat-bird")


@pytest.fixture(scope="module")
def local_ray() -> object:
    yield backfill.connect("auto", num_cpus=2)
    ray.shutdown()


def copy_photos(src: Path, dest: Path, rounds: int = 1) -> Path:
    """The shared photos, `rounds` copies each (distinct files: one byte appended)."""
    dest.mkdir()
    for r in range(rounds):
        for name in PHOTO_NAMES:
            data = (src / name).read_bytes()
            (dest / f"{r:02d}_{name}").write_bytes(data + bytes([r]) if r else data)
    return dest


def add_raw_jpeg_pair(photos: Path, folder: Path) -> Path:
    """A camera's RAW+JPEG pair (a real NEF beside a JPEG of the same name); the RAW."""
    nef = folder / "DSC_0001.NEF"
    shutil.copyfile(need_shared(SHARED / "raw" / "nikon_d70s_child.nef"), nef)
    shutil.copyfile(photos / "cat_720p.jpg", folder / "DSC_0001.JPG")
    return nef


def config_with_index(tmp: Path, extra: str = "") -> Path:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"index:\n  path: {tmp / 'index'}\n{extra}")
    return cfg


def comparable(record: object) -> tuple:
    """What must be equal between a scanned and a backfilled photo (not times or paths)."""
    return (
        Path(record.path).name,
        record.width,
        record.height,
        record.taken,
        record.model_version,
        [(t.path, round(t.score, 3)) for t in record.auto],
        [
            (d.path, round(d.score, 3), tuple(round(x, 3) for x in d.box), d.model)
            for d in record.detections
        ],
        record.user,
        sorted(record.vectors),
    )


def index_of(cfg_file: Path) -> dict[str, object]:
    cfg = config.load(cfg_file)
    with open_index(cfg.index_dir, readonly=True) as index:
        return {Path(r.path).name: r for r in index.records()}


def test_backfill_equals_scan_and_resumes(
    local_ray: object,
    photos: Path,
    default_models: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backfill, "CHUNK", 4)  # two Ray datasets: the driver's chunking too
    scanned = copy_photos(photos, tmp_path / "scanned")
    filled = copy_photos(photos, tmp_path / "filled")
    raws = {add_raw_jpeg_pair(photos, folder) for folder in (scanned, filled)}
    raw_sha = {hashlib.sha256(nef.read_bytes()).hexdigest() for nef in raws}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    scan_cfg = config_with_index(tmp_path / "a")
    fill_cfg = config_with_index(tmp_path / "b")

    assert main(["-q", "-c", str(scan_cfg), "scan", str(scanned)]) == 0
    assert main(["-q", "-c", str(fill_cfg), "backfill", str(filled), "--ray", "auto"]) == 0
    out = capsys.readouterr()
    assert "backfilled 7 photos" in out.err

    a, b = index_of(scan_cfg), index_of(fill_cfg)
    assert sorted(a) == sorted(b) == sorted([*(f"00_{n}" for n in PHOTO_NAMES), "DSC_0001.JPG"])
    seen_scanned, seen_filled = (keyword_sets([d / n for n in a]) for d in (scanned, filled))
    for name in a:
        assert comparable(a[name]) == comparable(b[name])
        assert seen_scanned[scanned / name] == seen_filled[filled / name]
    # Every model of the default install ran: the version names them, and their findings are in.
    assert "/det:coco-nanodet@" in b["00_pets.jpg"].model_version
    assert "/spc:inat-bird@" in b["00_owl.jpg"].model_version
    assert [d.path for d in b["00_pets.jpg"].detections].count("animal|mammal|dog") == 2
    assert any(d.model.startswith("inat-bird@") for d in b["00_owl.jpg"].detections)
    # The RAW of the pair gets the JPEG's keywords in its sidecar, its own bytes untouched.
    jpeg = exiftool_keywords(filled / "DSC_0001.JPG")
    assert jpeg["Subject"] and exiftool_keywords(filled / "DSC_0001.NEF.xmp") == jpeg
    assert exiftool_keywords(scanned / "DSC_0001.NEF.xmp") == jpeg
    assert {hashlib.sha256(nef.read_bytes()).hexdigest() for nef in raws} == raw_sha

    # A second run finds everything committed: nothing is decoded or written again.
    before = {p: p.stat().st_mtime_ns for p in filled.iterdir()}
    assert main(["-q", "-c", str(fill_cfg), "backfill", str(filled)]) == 0
    assert "backfilled 0 photos, 7 unchanged, 0 failed" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in filled.iterdir()} == before

    # As scan: an edited photo is tagged again with its index record (its user keyword kept),
    # an undone one stays undone though the user edited it since.
    cat, pets = "00_cat_720p.jpg", "00_pets.jpg"
    assert main(["-q", "-c", str(fill_cfg), "undo", str(filled / pets)]) == 0
    for folder in (scanned, filled):
        for name in (cat, pets):
            add_keyword(folder / name, "Holiday")
    assert main(["-q", "-c", str(scan_cfg), "scan", str(scanned)]) == 0
    capsys.readouterr()
    assert main(["-q", "-c", str(fill_cfg), "backfill", str(filled)]) == 0
    assert "backfilled 1 photos, 5 unchanged, 1 left undone, 0 failed" in capsys.readouterr().err
    a, b = index_of(scan_cfg), index_of(fill_cfg)
    assert b[cat].user == ["Holiday"] and comparable(a[cat]) == comparable(b[cat])
    assert exiftool_keywords(filled / cat) == exiftool_keywords(scanned / cat)
    assert exiftool_keywords(filled / pets)["Subject"] == ["Holiday"]
    assert not b[pets].model_version and not b[pets].auto


def add_keyword(photo: Path, keyword: str) -> None:
    """The user tags a photo in another program (exiftool), changing the file."""
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", f"-XMP-dc:Subject+={keyword}", str(photo)],
        check=True,
    )


def test_bad_photos_are_reported_once_at_the_end(
    local_ray: object, photos: Path, installed_model: Path, tmp_path: Path, capsys
) -> None:
    folder = copy_photos(photos, tmp_path / "p")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (tmp_path / "c").mkdir()
    cfg = config_with_index(tmp_path / "c")
    assert main(["-q", "-c", str(cfg), "backfill", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("broken.jpg") == 1
    assert "backfilled 6 photos, 0 unchanged, 1 failed" in err
    report = backfill.last_report()
    assert report is not None and [Path(p).name for p, _ in report.failures] == ["broken.jpg"]
    main(["-c", str(cfg), "status"])  # the service is not running: exit 3, still shows the run
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("last backfill: 6 tagged, 0 unchanged, 1 failed")
    assert lines[-1].startswith(f"  failed: {folder / 'broken.jpg'}: ")


def test_faces_are_left_to_scan_force_which_finds_them_and_changes_no_keyword(
    local_ray: object, photos: Path, installed_model: Path, tmp_path: Path, capsys
) -> None:
    for name, model in (("face_blazeface", "blazeface"), ("face_faceres", "faceres")):
        catalogue.import_file(need_shared(MODELS / f"{name}.onnx"), model)
    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copyfile(photos / "face.jpg", folder / "face.jpg")
    cfg = config_with_index(tmp_path, "faces:\n  enabled: true\n")
    assert main(["-q", "-c", str(cfg), "backfill", str(folder)]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "face" in line] == [  # one line says why not
        "phototag: backfill does not find faces (faces.enabled): "
        "`phototag scan --force` on the same folders will, on this machine"
    ]
    filled = exiftool_keywords(folder / "face.jpg")
    with open_index(config.load(cfg).index_dir, readonly=True) as index:
        assert index.faces(str(folder / "face.jpg")) == []

    assert main(["-q", "-c", str(cfg), "scan", "--force", str(folder)]) == 0
    with open_index(config.load(cfg).index_dir, readonly=True) as index:
        assert len(index.faces(str(folder / "face.jpg"))) == 4  # the four people in it
    assert exiftool_keywords(folder / "face.jpg") == filled  # no name yet: no keyword


def ray_workers() -> list[int]:
    """PIDs of Ray's worker processes running our stages."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        int(line.split()[0])
        for line in out.splitlines()[1:]
        if "ray::" in line and ("Map" in line or "Infer" in line)
    ]


def test_a_worker_killed_mid_run_and_every_photo_is_tagged_once(
    local_ray: object, photos: Path, installed_model: Path, tmp_path: Path
) -> None:
    folder = copy_photos(photos, tmp_path / "p", rounds=16)  # 96 photos: 3 commits of 32
    cfg = config.load(config_with_index(tmp_path))
    killed: list[int] = []

    def kill_one(done: int) -> None:
        """At the first commit that finds a stage's worker running (the model actor lives
        until the dataset ends), kill it; photos of later commits are still to come."""
        if not killed and done < 96:
            for pid in ray_workers()[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with open_index(cfg.index_dir) as index:
        report = backfill.backfill([folder], cfg, index, on_commit=kill_one)
    assert killed, "no Ray worker was found to kill"
    assert report.failures == []
    records = index_of(config_with_index(tmp_path))
    assert len(records) == 96
    on_file = keyword_sets([Path(r.path) for r in records.values()])
    for record in records.values():
        keywords = on_file[Path(record.path)]
        ours = [t.path for t in record.auto]
        assert ours, record.path
        assert sorted(set(keywords["HierarchicalSubject"])) == sorted(
            keywords["HierarchicalSubject"]
        )  # no keyword written twice
        assert set(ours) <= set(keywords["HierarchicalSubject"])


def test_without_ray_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys):
    def missing() -> None:
        raise backfill.BackfillError("backfill needs Ray Data: pip install 'phototag[cluster]'")

    monkeypatch.setattr(backfill, "ray_module", missing)
    assert main(["-q", "-c", str(config_with_index(tmp_path)), "backfill", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == "phototag: backfill needs Ray Data: pip install 'phototag[cluster]'\n"
    )


def test_a_stopped_run_resumes_where_it_was(
    local_ray: object, photos: Path, installed_model: Path, tmp_path: Path
) -> None:
    folder = copy_photos(photos, tmp_path / "p", rounds=8)  # 48 photos, commits of 32
    cfg = config.load(config_with_index(tmp_path))

    def stop(done: int) -> None:
        raise KeyboardInterrupt  # the user's Ctrl-C after the first commit

    with open_index(cfg.index_dir) as index, pytest.raises(KeyboardInterrupt):
        backfill.backfill([folder], cfg, index, on_commit=stop)
    first = index_of(config_with_index(tmp_path))
    assert 0 < len(first) < 48
    committed = {name: Path(r.path).stat().st_mtime_ns for name, r in first.items()}
    with open_index(cfg.index_dir) as index:
        report = backfill.backfill([folder], cfg, index)
    assert (report.unchanged, report.tagged, report.failures) == (len(first), 48 - len(first), [])
    after = index_of(config_with_index(tmp_path))
    assert len(after) == 48
    assert {n: Path(after[n].path).stat().st_mtime_ns for n in committed} == committed
