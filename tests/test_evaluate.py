"""Annotation metrics on a hand-computed case, the ARFF reader, and a tiny end-to-end run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phototag.learn import evaluate
from phototag.learn.arff import ArffError, load_dataset, parse_arff

SHARED = Path(__file__).parents[1].parent / "shared"


def test_metrics_by_hand() -> None:
    truth = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0]], bool)
    scores = np.array(
        [[0.9, 0.8, 0.1, 0.2], [0.1, 0.7, 0.6, 0.0], [0.3, 0.2, 0.1, 0.4]]
    )  # fmt: skip
    # Top 2 per image: {0, 1}, {1, 2}, {3, 0}.
    # Tag 0: predicted for images 0, 2, both right: P 1, R 2/2.
    # Tag 1: predicted for 0, 1; right for 1: P 1/2, R 1/2 (image 2 missed).
    # Tag 2: no image has it, so it is left out of the means.
    # Tag 3: predicted for 2 (wrong); image 0 has it: P 0, R 0.
    m = evaluate.annotation_metrics(scores, truth, n_labels=2)
    assert m.precision == pytest.approx((1 + 0.5 + 0) / 3)
    assert m.recall == pytest.approx((1 + 0.5 + 0) / 3)
    assert m.f1 == pytest.approx(0.5)
    assert m.n_plus == 2
    # AP: tag 0 ranks images 0, 2, 1 -> hits at 1, 2: AP 1.
    # Tag 1 ranks 0, 1, 2 -> hits at 2, 3: (1/2 + 2/3)/2. Tag 3 ranks 2, 0, 1 -> 1/2.
    assert m.mean_ap == pytest.approx((1 + (0.5 + 2 / 3) / 2 + 0.5) / 3)


def test_top_n_breaks_ties_by_tag_order() -> None:
    chosen = evaluate.top_n(np.array([[0.5, 0.5, 0.5, 0.1]]), 2)
    np.testing.assert_array_equal(chosen, [[True, True, False, False]])


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ"):
        evaluate.annotation_metrics(np.zeros((2, 3)), np.zeros((2, 4), bool))


DENSE = """% a comment
@relation toy
@attribute f1 numeric
@attribute 'f 2' real
@attribute sky {0,1}
@attribute sea {0,1}
@data
0.5,1.5,1,0
-2,0,0,1
"""

SPARSE = """@RELATION toy
@ATTRIBUTE f1 NUMERIC
@ATTRIBUTE f2 NUMERIC
@ATTRIBUTE sky {0,1}
@ATTRIBUTE sea {0,1}
@DATA
{0 0.5,1 1.5,2 1}
{}
{3 1, 0 -2}
"""


def test_parse_dense_and_sparse() -> None:
    names, data = parse_arff(DENSE)
    assert names == ["f1", "f 2", "sky", "sea"]
    np.testing.assert_array_equal(data, [[0.5, 1.5, 1, 0], [-2, 0, 0, 1]])
    names, data = parse_arff(SPARSE)
    assert names == ["f1", "f2", "sky", "sea"]
    np.testing.assert_array_equal(data, [[0.5, 1.5, 1, 0], [0, 0, 0, 0], [-2, 0, 0, 1]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@attribute a numeric\n@data\n1,2\n", "2 values, expected 1"),
        ("@attribute a numeric\n@data\n{5 1}\n", "sparse index 5"),
        ("@attribute a string\n@data\n", "unsupported attribute type"),
        ("@attribute a numeric\n", "no @data"),
        ("@attribute a numeric\n@data\nx\n", "non-numeric value 'x'"),
    ],
)
def test_bad_arff_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ArffError, match=message):
        parse_arff(text)


LABEL_XML = """<?xml version="1.0" encoding="utf-8"?>
<labels xmlns="http://mulan.sourceforge.net/labels">
<label name="sky"></label><label name="sea"></label>
</labels>
"""


def _toy_benchmark(folder: Path, n_train: int = 80, n_test: int = 30) -> Path:
    """Two clusters of 6-dim points; tag sky for cluster 0, sea for cluster 1."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    (folder / "toy.xml").write_text(LABEL_XML)
    header = "@relation toy\n" + "".join(f"@attribute f{i} numeric\n" for i in range(6))
    header += "@attribute sky {0,1}\n@attribute sea {0,1}\n@data\n"
    for name, n in (("toy-train.arff", n_train), ("toy-test.arff", n_test)):
        cluster = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 6)) + 3 * cluster[:, None]
        rows = [
            ",".join(f"{v:.5f}" for v in xi) + f",{1 - c},{c}"
            for xi, c in zip(x, cluster, strict=True)
        ]
        (folder / name).write_text(header + "\n".join(rows) + "\n")
    return folder


def test_load_dataset_splits_features_and_labels(tmp_path: Path) -> None:
    data = load_dataset(_toy_benchmark(tmp_path / "toy"))
    assert data.tags == ("sky", "sea")
    assert data.train.features.shape == (80, 6)
    assert data.test.labels.shape == (30, 2)
    assert (data.train.labels.sum(1) == 1).all()


def test_load_dataset_checks_the_label_list(tmp_path: Path) -> None:
    folder = _toy_benchmark(tmp_path / "toy")
    (folder / "toy.xml").write_text(LABEL_XML.replace("sea", "ocean"))
    with pytest.raises(ArffError, match="not the labels of the XML file"):
        load_dataset(folder)
    with pytest.raises(ArffError, match="no such benchmark folder"):
        load_dataset(tmp_path / "absent")


def test_evaluate_dataset_runs_every_method(tmp_path: Path) -> None:
    folder = _toy_benchmark(tmp_path / "toy")
    methods = [
        evaluate.TagPropMethod("rank", sigma=False, ks=(10,)),
        evaluate.TagPropMethod("dist", sigma=True, ks=(10, 20)),
        evaluate.TwoPKnnMethod(k1s=(1, 3), ws=(0.0, 8.0)),
        evaluate.KnnVoteMethod(ks=(5,)),
    ]
    results = evaluate.evaluate_dataset(folder, methods, n_labels=1)
    assert [r.method for r in results] == [
        "TagProp rank", "TagProp distance σML", "2PKNN", "k-NN vote"  # noqa: RUF001
    ]  # fmt: skip
    for r in results:  # two well-separated clusters: every method gets them right
        assert r.metrics.f1 > 0.9, r
        assert r.metrics.n_plus == 2
    table = evaluate.format_table(results)
    assert table.count("\n") == len(results) + 1
    assert "K=10" in table


@pytest.mark.skipif(not (SHARED / "benchmarks").is_dir(), reason="../shared/benchmarks absent")
def test_reads_the_shared_corel5k_split() -> None:
    data = load_dataset(SHARED / "benchmarks" / "corel5k")
    assert data.train.features.shape == (4500, 499)
    assert data.test.features.shape == (500, 499)
    assert len(data.tags) == 374
    assert set(np.unique(data.train.features)) == {0.0, 1.0}


def test_tag_regression_is_cross_fitted_and_recovers_a_linear_tag() -> None:
    rng = np.random.default_rng(1)
    train, query = rng.normal(size=(200, 6)), rng.normal(size=(20, 6))
    labels = np.c_[train[:, 0] > 0, rng.random(200) < 0.3]  # tag 0 follows feature 0
    fitted, predicted = evaluate.tag_regression(train, labels, query)
    assert fitted.shape == labels.shape and predicted.shape == (20, 2)
    # Tag 0's predictions rank new images by feature 0.
    assert np.corrcoef(predicted[:, 0], query[:, 0])[0, 1] > 0.9
    # A training image's own tags never shape its own vector.
    flipped = labels.copy()
    flipped[7] = ~flipped[7]
    assert np.array_equal(evaluate.tag_regression(train, flipped, query)[0][7], fitted[7])


def test_channels_add_the_tag_regression_from_training_labels_only() -> None:
    rng = np.random.default_rng(2)
    train = (rng.random((60, 30)) < 0.2).astype(float)
    query = (rng.random((5, 30)) < 0.2).astype(float)
    labels = rng.random((60, 4)) < 0.3
    base, queries = evaluate.make_channels(train, labels, query)
    assert base.names == ("jaccard", "tfidf-cosine", "tag-regression-cosine")
    assert [a.shape for a in base.arrays][2] == (60, 4)
    assert queries.arrays[2].shape == (5, 4)
    # The query side depends on the training labels, never on anything of the queries'.
    again = evaluate.make_channels(train, labels, query[::-1])[1]
    assert np.allclose(again.arrays[2], queries.arrays[2][::-1])


def test_eval_shows_a_line_per_stage_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16 item 15: `phototag eval` is not silent for minutes; -q keeps it quiet."""
    from phototag import cli

    folder = _toy_benchmark(tmp_path / "toy")
    assert cli.main(["eval", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 4 + 2  # the table: a header, a rule and a row per method
    stages = [line.split(" s  ", 1)[1] for line in err.splitlines()]
    assert stages[0] == f"loaded {folder}: 80 training and 30 test images, 2 tags"
    assert stages[1] == "method 1/4: TagProp rank"
    assert stages[2].startswith("TagProp rank: validating 1/")
    assert [s for s in stages if s.startswith("method ")] == [
        "method 1/4: TagProp rank",
        "method 2/4: TagProp distance σML",  # noqa: RUF001
        "method 3/4: 2PKNN",
        "method 4/4: k-NN vote",
    ]
    assert stages[-1].startswith("k-NN vote: scoring the test set with K=")
    times = [float(line.split(" s  ", 1)[0]) for line in err.splitlines()]
    assert times == sorted(times)  # seconds since the start, so a slow stage shows
    assert cli.main(["eval", "-q", str(folder)]) == 0
    assert capsys.readouterr().err == ""
