import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phototag.library import ann
from phototag.library.similarity import nearest, normalise_rows

pytestmark = pytest.mark.skipif(not ann.available(), reason="usearch (phototag[ann]) not installed")


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 64))
    rows = centres[rng.integers(20, size=3000)] + 0.5 * rng.standard_normal((3000, 64))
    return normalise_rows(rows).astype(np.float16)


def test_search_agrees_with_exact_and_drops_excluded(matrix: np.ndarray) -> None:
    keys = np.arange(3000) + 1000  # photo ids, not row numbers
    index = ann.AnnIndex.build(keys, matrix, threads=1)
    assert len(index) == 3000
    hits = 0
    for row in range(0, 3000, 100):
        found = index.search(matrix[row], 10, exclude=[row + 1000])
        truth = nearest(matrix, matrix[row], 10, exclude=[row]).indices + 1000
        assert row + 1000 not in found.indices and len(found.indices) == 10
        assert np.all(np.diff(found.scores) <= 1e-6)
        hits += len(set(found.indices.tolist()) & set(truth.tolist()))
    assert hits / (30 * 10) > 0.9


def test_add_replaces_remove_forgets_and_save_load_round_trips(
    matrix: np.ndarray, tmp_path: Path
) -> None:
    index = ann.AnnIndex.build(np.arange(100), matrix[:100], threads=1)
    index.add(np.array([5]), matrix[[200]])  # photo 5 now looks like row 200
    assert index.search(matrix[200], 1).indices.tolist() == [5]
    index.remove([5])
    assert len(index) == 99 and 5 not in index.search(matrix[200], 10).indices
    path = tmp_path / "similar.usearch"
    index.save(path)
    loaded = ann.AnnIndex.load(path)
    assert len(loaded) == 99
    assert (
        loaded.search(matrix[7], 3).indices.tolist() == index.search(matrix[7], 3).indices.tolist()
    )
    assert not list(tmp_path.glob(".*.tmp"))


def test_use_ann_only_for_large_libraries() -> None:
    assert not ann.use_ann(ann.ANN_MIN_ROWS - 1)
    assert ann.use_ann(ann.ANN_MIN_ROWS)


def test_onnxruntime_still_imports_after_usearch() -> None:
    """With usearch 2.26.2+ (tried to 2.26.6) loaded first, `import onnxruntime` segfaults."""
    code = "import phototag.library.ann as a; a.AnnIndex(4); import onnxruntime; print('ok')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr[-500:]
