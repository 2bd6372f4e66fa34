"""Learning the user's own keywords: training set, storage, retraining, and end to end."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from phototag.config import Config, TagPropConfig
from phototag.learn import tagprop, train
from phototag.library.index import Index, PhotoRecord, open_index
from phototag.pipeline import decode, tagger
from phototag.pipeline.runner import Pipeline
from phototag.records import Tag
from phototag.service import daemon as service
from tests.albums import run
from tests.conftest import PHOTOS, keyword_sets, need_shared

STORES = train.Stores("0123456789ab", 32, 10)


# --- near-duplicates, as cameras and editors make them ---------------------------------


def _variants(img: Image.Image) -> list[Image.Image]:
    w, h = img.size
    return [
        img,
        ImageOps.mirror(img),
        img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        img.crop((0, 0, w * 17 // 20, h * 17 // 20)),
        img.resize((w * 3 // 5, h * 3 // 5)),
        ImageEnhance.Brightness(img.crop((w // 8, h // 8, w, h))).enhance(1.15),
        ImageOps.mirror(img.crop((w // 20, 0, w, h - h // 12))),
    ]


def near_duplicates(source: Path, folder: Path, stem: str, picks: list[int]) -> list[Path]:
    """JPEG copies of `source`: the original re-saved, a mirror, crops, a smaller and a brighter one."""
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as opened:
        img = opened.convert("RGB")
    img.thumbnail((640, 640))
    variants = _variants(img)
    out = []
    for i in picks:
        out.append(folder / f"{stem}-{i}.jpg")
        variants[i].save(out[-1], quality=85 - 5 * i)
    return out


# --- synthetic indexes -------------------------------------------------------------------


def synthetic_index(
    folder: Path, stores: train.Stores, n: int, keywords: int, keyworded: float, seed: int = 0
) -> tuple[Index, np.ndarray]:
    """An index of n photos in `keywords` clusters, as `scan` leaves it: records and vectors.

    The first `keyworded` share of each cluster carries its keyword "place<c>" as the user's;
    the rest have none. Returns the index and each photo's cluster.
    """
    rng = np.random.default_rng(seed)
    cluster = np.arange(n) % keywords
    centres = rng.normal(size=(keywords, stores.embedding_dim))
    emb = np.abs(centres[cluster] + 0.6 * rng.normal(size=(n, stores.embedding_dim)))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    colours = rng.dirichlet(np.ones(train.COLOUR_DIM), n)
    logits = rng.normal(size=(keywords, stores.n_outputs))[cluster] * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    rank_in_cluster = np.arange(n) // keywords
    records, vectors = [], []
    for i in range(n):
        mine = rank_in_cluster[i] < keyworded * (n // keywords)
        records.append(
            PhotoRecord(
                f"/photos/{i:05d}.jpg",
                1,
                1,
                f"{i:064x}",
                user=[f"place{cluster[i]}"] if mine else [],
                model_version="m",
            )
        )
        vectors.append(
            {stores.embedding: emb[i], train.COLOUR_STORE: colours[i], stores.probability: probs[i]}
        )
    index = open_index(folder)
    index.put_many(records, vectors)
    return index, cluster


def test_training_set_learns_only_the_users_keywords_never_deleted_ones(tmp_path: Path) -> None:
    def rec(name: str, user: list[str], negatives: list[str] = (), vectors: bool = True):
        stores = dict.fromkeys(STORES.names, 0) if vectors else {}
        return PhotoRecord(
            name, 1, 1, "0" * 64, user=user, negatives=list(negatives), vectors=stores,
            auto=[Tag("animal|mammal|cat", 0.9)],  # ours: never a training label
        )  # fmt: skip

    records = [
        rec("a", ["Grandma", "garden"]),
        rec("b", ["Grandma"]),
        rec("c", ["Grandma", "garden"], negatives=["garden"]),  # deleted: never positive
        rec("d", ["Paris"]),
        rec("e", []),
        rec("f", []),
        rec("g", []),
        rec("h", ["Grandma"], vectors=False),  # not analysed by this backbone
    ]
    data = train.training_set(records, STORES, min_examples=2, background=2)
    assert data.tags == ("Grandma",)  # garden is on one photo only once deletions count
    assert data.too_rare == {"garden": 1, "Paris": 1}
    assert [r.path for r in data.records[: data.keyworded]] == ["a", "b", "c", "d"]
    assert len(data.records) == 6 and {r.path for r in data.records[4:]} <= {"e", "f", "g"}
    np.testing.assert_array_equal(data.labels[:, 0], [1, 1, 1, 0, 0, 0])
    assert data.counts == train.Counts(photos=5, keywords=6, negatives=1)
    again = train.training_set(records, STORES, min_examples=2, background=2)
    assert [r.path for r in again.records] == [r.path for r in data.records]  # fixed seed


def test_calibration_undoes_the_label_weighting() -> None:
    labels = np.zeros((10, 2), bool)
    labels[:2, 0] = labels[:3, 1] = True
    model = tagprop.TagPropModel(
        "dist", np.ones(1), 3, ("a", "b"), ("d",), np.array([2.0, 3.0]), np.array([0.5, -1.0])
    )
    fixed = train.calibrated(model, labels)
    np.testing.assert_allclose(fixed.beta, model.beta + math.log(5 / 15))
    np.testing.assert_array_equal(fixed.alpha, model.alpha)


def test_learned_keywords_pass_the_threshold_best_first_less_excluded() -> None:
    scores = np.array([[0.9, 0.6, 0.7, 0.2], [0.95, 0.1, 0.1, 0.1], [0.8, 0.7, 0.6, 0.55]])
    words = ["Grandma", "ourcat", "garden", "Paris"]
    got = tagger.learned_tags(scores, words, 0.5, 2, [[], [], ["Grandma"]])
    assert [[t.path for t in row] for row in got] == [
        ["Grandma", "garden"],
        ["Grandma"],
        ["ourcat", "garden"],  # Grandma was deleted there
    ]
    assert all(t.source == "auto" for row in got for t in row)
    cnn = [Tag("animal|mammal|cat", 0.93), Tag("object", 0.4)]
    merged = tagger.merge(cnn, [Tag("ourcat", 0.83), Tag("Cat", 0.7)])
    assert [t.path for t in merged] == ["animal|mammal|cat", "ourcat", "object"]


def test_a_training_photo_is_not_its_own_neighbour() -> None:
    # Photo 0 is a background photo (no keyword) whose near-duplicate 1 carries "a".
    emb = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.1, 0.99]])
    features = train.Features(emb, np.full((4, 4), 0.25))
    labels = np.array([[0], [1], [0], [0]], bool)
    model = tagprop.TagPropModel("dist", np.array([500.0, 0.0]), 2, ("a",), ("embedding", "colour"))
    as_new = train.predict(model, features, labels, features.take(np.arange(4)))
    as_itself = train.predict(model, features, labels, features, np.arange(4))
    assert as_new[0, 0] < 0.1  # itself, at distance 0, says "no"
    assert as_itself[0, 0] > 0.9  # its near-duplicate says "a"
    assert as_itself[1, 0] < 0.1  # photo 1 without itself: nobody else has "a"


def test_stale_after_enough_new_keywords(tmp_path: Path) -> None:
    index, _ = synthetic_index(tmp_path / "index", STORES, 60, 3, 0.5)
    cfg = TagPropConfig(min_examples=5, retrain_after=20)
    assert train.stale(index, None, cfg)
    trained = train.train(index, STORES, cfg)
    assert not train.stale(index, trained.learned, cfg)
    assert train.retrain_if_stale(index, STORES, trained.learned, cfg) is None
    # 30 photos with one keyword each: 10 % is 3 more.
    records = [r for r in index.records() if not r.user]
    for i, record in enumerate(records[:3]):
        record.user = ["place0"]
        index.put(record)
        assert train.stale(index, trained.learned, cfg) == (i == 2)
    assert not train.stale(index, None, TagPropConfig(min_examples=50))
    again = train.retrain_if_stale(index, STORES, trained.learned, cfg)
    assert again is not None and again.data.keyworded == 33
    assert train.active(STORES.backbone)[0] == again.digest != trained.digest
    index.close()


def test_the_service_retrains_when_quiet_after_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import FakeProcessor
    from tests.test_service import settings, wait_until

    monkeypatch.setattr(service, "HEARTBEAT_S", 0.3)
    idle: list[int] = []

    class Learning(FakeProcessor):
        def idle(self, cfg: Config) -> None:
            idle.append(len(self.calls))
            raise RuntimeError("no keywords yet")  # logged; the service goes on

    album = tmp_path / "album"
    album.mkdir()
    svc = service.Service(settings(album), lambda cfg, index: Learning(index))
    thread = threading.Thread(target=svc.run)
    thread.start()
    try:
        time.sleep(1.0)
        assert idle == []  # nothing was done: nothing to learn from
        (album / "a.jpg").write_bytes(b"pixels")
        wait_until(lambda: idle == [1], what="idle time after tagging")
        time.sleep(1.0)
        assert idle == [1]  # once per stretch of work
        (album / "b.jpg").write_bytes(b"pixels")
        wait_until(lambda: idle == [1, 2], what="idle time after more tagging")
    finally:
        svc.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_model_round_trips_and_a_damaged_file_is_one_clear_error(tmp_path: Path) -> None:
    index, _ = synthetic_index(tmp_path / "index", STORES, 40, 2, 0.5)
    trained = train.train(index, STORES, TagPropConfig(min_examples=5))
    index.close()
    digest, loaded = train.active(STORES.backbone)
    assert digest == trained.digest == loaded.digest
    assert loaded.paths == trained.learned.paths and loaded.counts == trained.learned.counts
    query = train.Features(
        loaded.features.embeddings[:5],
        loaded.features.colours[:5],
        loaded.features.probabilities[:5],
    )
    np.testing.assert_allclose(loaded.scores(query), trained.learned.scores(query), atol=1e-6)
    assert train.active("another00000") is None  # trained on another backbone's embeddings
    path = train.model_dir() / f"{digest}.npz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(
        train.TrainError, match=f"{digest}.npz: not a phototag TagProp model"
    ) as exc:
        train.active(STORES.backbone)
    assert "\n" not in str(exc.value)


def test_trains_on_a_1000_photo_index_in_seconds(tmp_path: Path) -> None:
    stores = train.Stores("synthetic000", 1280, 1001)  # MobileNetV2's widths
    index, cluster = synthetic_index(tmp_path / "index", stores, 1000, 20, 0.6)
    start = time.perf_counter()
    trained = train.train(index, stores, TagPropConfig())
    seconds = time.perf_counter() - start
    index.close()
    assert seconds < 10, f"training took {seconds:.1f} s"
    data = trained.data
    assert data.keyworded == 600 and len(data.records) == 1000 and len(data.tags) == 20
    assert trained.report.mean_ap > 0.95 and trained.report.recall > 0.6
    # The untagged photos of each cluster get its keyword (leave-one-out, they are training rows).
    background = [r.path for r in data.records[data.keyworded :]]
    query = trained.learned.features.take(np.arange(600, 1000))
    scores = trained.learned.scores(query, background)
    truth = cluster[[int(Path(p).stem) for p in background]]
    cluster_of_tag = np.array([int(t.removeprefix("place")) for t in data.tags])
    assert (cluster_of_tag[scores.argmax(1)] == truth).mean() > 0.9
    print(f"trained on 1000 photos, 20 keywords, in {seconds:.2f} s")


# --- end to end, real photos --------------------------------------------------------------

BACKGROUND = [
    "hot_dog.jpg",
    "kite_and_cold.jpg",
    "sunflower.bmp",
    "owl.jpg",
    "bird.bmp",
    "dragonfly.bmp",
    "pets.jpg",
    "grace_hopper.bmp",
]


def _add_keyword(keyword: str, photos: list[Path]) -> None:
    """The user keywords photos in another program (one exiftool run for all of them)."""
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", f"-XMP:Subject+={keyword}",
         f"-IPTC:Keywords+={keyword}", *map(str, photos)],
        check=True,
    )  # fmt: skip


def _tagged(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, list[str]]:
    status, out, err = run(capsys, *args, "--json")
    assert status == 0, err
    return {
        Path(d["path"]).name: [t["path"] for t in d["tags"]]
        for d in map(json.loads, out.split("\n")[:-1])
        if "summary" not in d  # the run's summary line
    }


def test_learns_the_users_keywords_and_proposes_them_for_near_duplicates_only(
    tmp_path: Path,
    installed_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need_shared(PHOTOS)
    album, new = tmp_path / "album", tmp_path / "new"
    faces = near_duplicates(PHOTOS / "face.jpg", album, "face", [0, 1, 2, 3, 4, 5])
    cats = near_duplicates(PHOTOS / "cat_720p.jpg", album, "cat", [0, 1, 2, 3, 4, 5])
    for name in BACKGROUND:
        near_duplicates(PHOTOS / name, album, Path(name).stem, [0, 2])
    _add_keyword("Grandma", faces[:5])
    _add_keyword("ourcat", cats[:5])
    near_duplicates(PHOTOS / "face.jpg", new, "face", [6])
    for name in ("cat_1080p.jpg", "parrot.jpg", "pets.jpg"):
        (new / name).write_bytes((PHOTOS / name).read_bytes())
    cfg = tmp_path / "config.yaml"
    cfg.write_text("tagprop:\n  min_examples: 3\n")
    assert run(capsys, "-c", str(cfg), "scan", str(album))[0] == 0

    # The service's idle time trains once a keyword is on min_examples (default 5) photos.
    defaults = Config()
    with open_index(defaults.index_dir) as index:
        processor = service.PipelineProcessor(Pipeline(defaults, tagger.load(defaults), index))
        assert processor.pipeline.tagger.version.tagprop == ""
        processor.idle(defaults)
    digest, _ = train.active(processor.pipeline.tagger.stores.backbone)
    assert processor.pipeline.tagger.version.tagprop == digest
    assert processor.version.endswith(
        f"/tagprop:{digest}/thr:{processor.pipeline.tagger.version.thresholds}"
    )
    (tmp_path / "strict.yaml").write_text("tagprop:\n  min_examples: 6\n")
    status, _, err = run(capsys, "-c", str(tmp_path / "strict.yaml"), "train")
    assert status == 2
    assert (
        "\nphototag: too few photos with your keywords: a keyword is learned once 6 photos carry "
        "it (tagprop.min_examples), and the most used, 'Grandma', is on 5\n"
    ) in f"\n{err}"

    status, out, err = run(capsys, "-c", str(cfg), "train")
    assert status == 0, err
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert table["Grandma"][0] == table["ourcat"][0] == "5"  # photos
    assert float(table["Grandma"][2]) == float(table["ourcat"][2]) == 1.0  # leave-one-out recall
    assert "learned 2 keywords from 10 photos" in err
    status, out, _ = run(capsys, "-c", str(cfg), "train", "--json")  # one document, same table
    doc = json.loads(out)
    assert status == 0 and (doc["learned"], doc["photos"]) == (2, 10)
    assert {k["keyword"]: (k["photos"], k["recall"]) for k in doc["keywords"]} == {
        "Grandma": (5, 1.0),
        "ourcat": (5, 1.0),
    }
    assert doc["model"] == train.active(tagger.load(Config()).stores.backbone)[0]

    status, out, _ = run(capsys, "suggest", str(album / "face-5.jpg"), str(album / "owl-0.jpg"))
    assert status == 0
    assert f"{album / 'face-5.jpg'}: likely missing: Grandma (0." in out  # the untagged variant
    assert "owl-0.jpg: likely missing: Grandma" not in out

    tags = _tagged(capsys, "-c", str(cfg), "tag", *map(str, sorted(new.iterdir())))
    assert "Grandma" in tags["face-6.jpg"] and "ourcat" not in tags["face-6.jpg"]
    assert "ourcat" in tags["cat_1080p.jpg"] and "Grandma" not in tags["cat_1080p.jpg"]
    for unrelated in ("parrot.jpg", "pets.jpg"):  # a macaw; a different cat with a dog
        assert not {"Grandma", "ourcat"} & set(tags[unrelated]), tags[unrelated]
    sets = keyword_sets([new / "face-6.jpg"])[new / "face-6.jpg"]
    assert "Grandma" in sets["Subject"] and "Grandma" in sets["Keywords"]

    # Photos tagged before the model are re-scored from stored vectors, without decoding.
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-scoring for a new TagProp model decoded an image")

    with monkeypatch.context() as patch:
        patch.setattr(decode, "load", no_decoding)
        status, _, err = run(capsys, "-c", str(cfg), "refine")
    assert status == 0, err
    assert "0 photos need re-analysis" in err and "28 need only re-scoring" in err
    sets = keyword_sets([album / "face-5.jpg", album / "cat-5.jpg", album / "owl-0.jpg"])
    assert "Grandma" in sets[album / "face-5.jpg"]["Subject"]  # the untagged variant
    assert "ourcat" in sets[album / "cat-5.jpg"]["Subject"]
    assert not {"Grandma", "ourcat"} & set(sets[album / "owl-0.jpg"]["Subject"])

    # The user deletes the proposal: it is never proposed there again.
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP:Subject-=Grandma",
         "-IPTC:Keywords-=Grandma", str(album / "face-5.jpg")],
        check=True,
    )  # fmt: skip
    assert run(capsys, "-c", str(cfg), "scan", str(album))[0] == 0
    again = _tagged(capsys, "-c", str(cfg), "tag", str(album / "face-5.jpg"))
    assert "Grandma" not in again["face-5.jpg"]
    assert "Grandma" not in keyword_sets([album / "face-5.jpg"])[album / "face-5.jpg"]["Subject"]


def test_eval_prints_the_table_or_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_evaluate import _toy_benchmark

    status, out, _ = run(capsys, "eval", str(_toy_benchmark(tmp_path / "toy")))
    assert status == 0
    assert out.startswith("| method |") and "TagProp distance σML" in out  # noqa: RUF001
    status, out, err = run(capsys, "eval", str(tmp_path / "absent"))
    assert status == 2 and out == ""
    assert err == f"phototag: {tmp_path / 'absent'}: no such benchmark folder\n"
