"""Refine end to end: a new model re-analyses, a new threshold only re-scores, user edits hold."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from bench.refine_benchmark import synthesise, tag_sources
from phototag import catalogue, config
from phototag.config import Config, WriteConfig
from phototag.files import metadata
from phototag.library.index import PhotoRecord, open_index, under
from phototag.pipeline import decode, infer, labels, tagger, vocabulary
from phototag.records import ModelVersion
from tests.albums import copy_photos, records, run
from tests.conftest import MODEL_V2, exiftool, keyword_sets, need_shared

PHOTOS = ["cat_720p.jpg", "parrot.jpg", "hot_dog.jpg", "kite_and_cold.jpg", "owl.jpg", "bird.bmp"]
V2 = "mobilenet-v2@tf2-ptq"


def leaf(path: str) -> str:
    return path.rsplit("|", 1)[-1]


def test_model_version_round_trip_and_what_a_change_costs() -> None:
    v1 = ModelVersion("mobilenet-v2@tf1-quant", "e3685a114d7f0f6ed2b7", "1", "", "1234abcd")
    parsed = ModelVersion.parse(str(v1))
    assert parsed is not None and str(parsed) == str(v1)
    assert v1.refresh(parsed) == "current"
    assert ModelVersion(v1.backbone, "f6d887524c45", "1").refresh(v1) == "reanalyse"
    assert ModelVersion("mobilenet-v2@tf2-ptq", v1.backbone_sha256, "1").refresh(v1) == "reanalyse"
    for changed in (
        ModelVersion(v1.backbone, v1.backbone_sha256, "2", "", "1234abcd"),
        ModelVersion(v1.backbone, v1.backbone_sha256, "1", "tp01", "1234abcd"),
        ModelVersion(v1.backbone, v1.backbone_sha256, "1", "", "99999999"),
    ):
        assert changed.refresh(ModelVersion.parse(str(v1))) == "rescore"
    assert v1.refresh(None) == "reanalyse"
    for bad in ("", "m@1", "m@1:abc/thr:1", "m@1:abc/labels:1/what:2"):
        assert ModelVersion.parse(bad) is None


def test_under_selects_photos_below_folders_and_files(tmp_path: Path) -> None:
    recs = [PhotoRecord(str(tmp_path / p), 1, 1, "a") for p in ("a/x.jpg", "a/b/y.jpg", "c.jpg")]
    assert under(recs, []) == recs
    assert [r.path for r in under(recs, [tmp_path / "a"])] == [recs[0].path, recs[1].path]
    assert [r.path for r in under(recs, [tmp_path / "c.jpg"])] == [recs[2].path]
    assert under(recs, [tmp_path / "a" / "x"]) == []  # a prefix of a name is not a folder


def test_new_model_updates_auto_tags_and_respects_user_edits(
    tmp_path: Path, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = copy_photos(tmp_path / "album", PHOTOS)
    cat = photos[0]
    exiftool(
        cat,
        "-XMP:Subject=Grandma",
        "-IPTC:Keywords=Grandma",
        "-XMP:HierarchicalSubject=people|Grandma",
    )
    assert run(capsys, "scan", str(tmp_path / "album"))[0] == 0
    v1 = records(photos)
    users = {p: metadata.read(p, WriteConfig()).user_keywords for p in photos}
    # "people", the level above the user's people|Grandma, joins dc:subject (Lightroom style).
    assert users[cat] == ["Grandma", "people"] and users[photos[4]]  # the owl photo has keywords
    assert "cat" in keyword_sets([cat])[cat]["Subject"]
    # The user deletes our "cat" by hand, in every field, with another program.
    exiftool(
        cat,
        "-XMP:Subject-=cat",
        "-IPTC:Keywords-=cat",
        "-XMP:HierarchicalSubject-=animal|mammal|cat",
        "-XMP:TagsList-=animal/mammal/cat",
    )
    catalogue.import_file(need_shared(MODEL_V2))  # the newer version: resolve picks it
    status, out, _ = run(capsys, "tag", "--dry-run", "--json", *map(str, photos))
    assert status == 0
    fresh = {
        Path(d["path"]): [t["path"] for t in d["tags"]]
        for d in map(json.loads, out.split("\n")[:-1])
        if "summary" not in d  # the last line: the run's summary
    }

    status, out, err = run(capsys, "refine")
    assert status == 0, err
    assert f"{len(photos)} photos need re-analysis with {V2} (decode + infer), 0 need only" in err

    v2 = records(photos)
    version = str(tagger.load(Config()).version)
    assert version.startswith(V2)
    for photo in photos:
        record = v2[photo]
        assert record.model_version == version
        # Exactly what the new model says, less what the user deleted or has as their own.
        assert [t.path for t in record.auto] == [
            p for p in fresh[photo] if leaf(p) not in record.negatives + record.user
        ]
        on_file = metadata.read(photo, WriteConfig())
        assert [t.path for t in on_file.ours] == [t.path for t in record.auto]
        assert on_file.model_version == version
        assert on_file.user_keywords == users[photo] == record.user  # same keywords, same order
    assert any([t.path for t in v1[p].auto] != [t.path for t in v2[p].auto] for p in photos)

    sets = keyword_sets([cat, photos[4]])
    seen = sets[cat]
    assert "cat" not in seen["Subject"] + seen["Keywords"]
    assert "animal|mammal|cat" not in seen["HierarchicalSubject"]
    assert seen["Subject"][0] == seen["Keywords"][0] == "Grandma"
    assert seen["HierarchicalSubject"][0] == "people|Grandma"
    assert "cat" in v2[cat].negatives  # kept as a negative label for training
    owl = sets[photos[4]]
    assert owl["Subject"][: len(users[photos[4]])] == users[photos[4]]

    assert "0 photos need re-analysis" in run(capsys, "refine")[2]  # nothing left to do


def test_interrupted_refine_continues_where_it_stopped(
    tmp_path: Path,
    installed_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photos = copy_photos(tmp_path / "album", PHOTOS[:5])
    assert run(capsys, "scan", str(tmp_path / "album"))[0] == 0
    catalogue.import_file(need_shared(MODEL_V2))
    write = metadata.write
    calls: list[Path] = []

    def interrupted(path: Path, *args: object, **kwargs: object) -> Path:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third photo is being written
        return write(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(metadata, "write", interrupted)
    assert run(capsys, "refine")[0] == 130
    monkeypatch.setattr(metadata, "write", write)
    done = [p for p, r in records(photos).items() if r.model_version.startswith(V2)]
    assert sorted(done) == sorted(calls[:2])  # the two photos written before the interruption

    status, _, err = run(capsys, "refine")
    assert status == 0
    assert "3 photos need re-analysis" in err and f"{len(photos) - 3} are up to date" in err
    assert all(r.model_version.startswith(V2) for r in records(photos).values())


def test_threshold_change_rescores_1000_photos_without_decoding(
    tmp_path: Path,
    installed_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sources_cfg = Config()
    sources_cfg.index.path = str(tmp_path / "source-index")
    photos = copy_photos(tmp_path / "real", [*PHOTOS[:5], "pets.jpg", "face.jpg"])
    sources = tag_sources(photos, tmp_path / "sources", sources_cfg)
    synthesise(sources, tmp_path / "many", 1000, Config())
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "many").iterdir()}
    new_cfg = tmp_path / "config.yaml"
    new_cfg.write_text("tagging:\n  threshold: 0.1\n")

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a threshold-only refine decoded an image")

    runs: list[int] = []
    original = infer.Model.run
    monkeypatch.setattr(decode, "load", no_decoding)
    monkeypatch.setattr(decode, "decode", no_decoding)
    monkeypatch.setattr(infer.Model, "run", lambda m, px: runs.append(len(px)) or original(m, px))
    start = time.perf_counter()
    status, _out, err = run(capsys, "--config", str(new_cfg), "refine")
    seconds = time.perf_counter() - start
    assert status == 0, err
    assert "0 photos need re-analysis" in err and "1000 need only re-scoring" in err
    assert runs == []

    cfg = config.load(new_cfg)
    version = str(tagger.load(cfg).version)
    labelmap = labels.load()
    expected = [
        [
            t.path
            for t in vocabulary.apply(
                tagger.cnn_tags(s.probabilities, labelmap, cfg.tagging)[0],
                vocabulary.Vocabulary(cfg.tags),
            )
        ]
        for s in sources
    ]
    changed = 0
    with open_index(cfg.index_dir, readonly=True) as index:
        recs = list(index.records())
    assert len(recs) == 1000
    for record in recs:
        assert record.model_version == version
        path = Path(record.path)
        i = int(path.stem.split("-")[1]) % len(sources)  # synthesised from source i
        source, want = sources[i], expected[i]
        assert [t.path for t in record.auto] == want
        if want == [t.path for t in source.record.auto]:
            assert path.stat().st_mtime_ns == before[path]  # unchanged keywords: file untouched
        else:
            changed += 1
            assert [t.path for t in metadata.read(path, cfg.write).ours] == want
    assert 0 < changed < 1000
    assert f"{changed} changed" in err
    print(f"threshold-only refine of 1000 photos ({changed} rewritten): {seconds:.2f} s")


def test_put_many_replaces_records_last_wins_with_vectors(tmp_path: Path) -> None:
    rows = np.eye(3, dtype=np.float32)
    with open_index(tmp_path) as index:
        index.put(PhotoRecord("/p/a.jpg", 1, 1, "1" * 64))
        index.put_many(
            [
                PhotoRecord("/p/a.jpg", 2, 2, "2" * 64),
                PhotoRecord("/p/b.jpg", 1, 1, "3" * 64),
                PhotoRecord("/p/a.jpg", 3, 3, "4" * 64),
            ],
            [{"v": rows[0]}, {"v": rows[1]}, {"v": rows[2]}],
        )
        assert len(index) == 2 and index.with_sha("1" * 64) == index.with_sha("2" * 64) == []
        a = index.get("/p/a.jpg")
        assert a is not None and a.size == 3
        np.testing.assert_array_equal(index.vectors("v", [a], 3)[0], rows[2])
    with open_index(tmp_path) as index:
        assert sorted(r.path for r in index.records()) == ["/p/a.jpg", "/p/b.jpg"]
