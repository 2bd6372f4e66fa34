from collections import deque

import numpy as np
import pytest

from phototag.library.similarity import (
    DuplicateGroup,
    characteristic_tags,
    choose_k,
    cluster,
    connected_components,
    duplicate_pairs,
    duplicates,
    labels_for,
    nearest,
    normalise_rows,
    silhouette,
    spherical_kmeans,
)


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return normalise_rows(rng.standard_normal((n, dim)))


def planted(
    rng: np.random.Generator, per: int, k: int, dim: int = 64, spread: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated directions with `per` noisy rows around each."""
    truth = np.repeat(np.arange(k), per)
    rows = unit(rng, k, dim)[truth] + spread * rng.standard_normal((k * per, dim)) / np.sqrt(dim)
    return normalise_rows(rows), truth


def test_normalise_rows_keeps_zero_rows_zero() -> None:
    out = normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_nearest_matches_a_full_sort_across_chunks() -> None:
    rng = np.random.default_rng(0)
    matrix = unit(rng, 9000, 16).astype(np.float16)  # more rows than one chunk
    query = matrix[123].astype(np.float32)
    found = nearest(matrix, query, 5, exclude=[123])
    scores = matrix.astype(np.float32) @ query
    scores[123] = -np.inf
    expected = np.lexsort((np.arange(len(scores)), -scores))[:5]
    assert found.indices.tolist() == expected.tolist()
    np.testing.assert_allclose(found.scores, scores[expected], rtol=1e-6)
    assert np.all(np.diff(found.scores) <= 0)


def test_nearest_with_k_beyond_the_library() -> None:
    matrix = normalise_rows(np.eye(3))
    found = nearest(matrix, matrix[0], 10, exclude=[0])
    assert found.indices.tolist() == [1, 2]  # ties broken by row index
    same = np.ones((50, 4), np.float32) / 2
    assert nearest(same, same[0], 3, exclude=[1]).indices.tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="k must be at least 1"):
        nearest(matrix, matrix[0], 0)


def test_duplicate_pairs_equal_brute_force_with_tiling() -> None:
    rng = np.random.default_rng(1)
    base = unit(rng, 1500, 32)
    copies = normalise_rows(base[:300] + 0.02 * rng.standard_normal((300, 32)))
    matrix = np.concatenate([base, copies]).astype(np.float16)
    i, j, sims = duplicate_pairs(matrix, threshold=0.9, block=256)
    dense = matrix.astype(np.float32) @ matrix.astype(np.float32).T
    ei, ej = np.nonzero(np.triu(dense >= 0.9, k=1))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(
        zip(ei.tolist(), ej.tolist(), strict=True)
    )
    assert np.all(i < j) and len(i) >= 300
    np.testing.assert_allclose(sims, dense[i, j], rtol=1e-5)


def _bfs_components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        neighbours[a].append(b)
        neighbours[b].append(a)
    labels = np.full(n, -1)
    for start in range(n):
        if labels[start] >= 0:
            continue
        labels[start] = start
        queue = deque([start])
        while queue:
            for nxt in neighbours[queue.popleft()]:
                if labels[nxt] < 0:
                    labels[nxt] = start
                    queue.append(nxt)
    return labels


@pytest.mark.parametrize("seed", range(5))
def test_connected_components_match_breadth_first_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    i, j = rng.integers(n, size=(2, 300))
    assert connected_components(n, i, j).tolist() == _bfs_components(n, i, j).tolist()


def test_connected_components_of_a_long_reversed_path() -> None:
    n = 2000
    i = np.arange(n - 1)[::-1]
    labels = connected_components(n, i + 1, i)
    assert np.all(labels == 0)
    assert connected_components(3, np.empty(0, int), np.empty(0, int)).tolist() == [0, 1, 2]


def test_duplicates_finds_the_planted_groups_only() -> None:
    rng = np.random.default_rng(2)
    originals = unit(rng, 200, 64)
    pair = normalise_rows(originals[10] + 0.01 * rng.standard_normal(64))
    triple = normalise_rows(originals[[20, 20]] + 0.01 * rng.standard_normal((2, 64)))
    matrix = np.concatenate([originals, pair[None], triple]).astype(np.float16)
    groups = duplicates(matrix, threshold=0.95)
    assert [g.members for g in groups] == [(20, 201, 202), (10, 200)]
    assert all(0.95 <= g.weakest <= 1.0 for g in groups)
    assert duplicates(matrix[:200], threshold=0.95) == []


def test_duplicate_chains_join_one_group_with_its_weakest_link() -> None:
    angles = np.array([0.0, 0.25, 0.5, 2.0])  # radians; neighbours 0.25 apart chain up
    matrix = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    groups = duplicates(matrix, threshold=0.95)
    assert groups == [DuplicateGroup((0, 1, 2), pytest.approx(float(np.cos(0.25)), abs=1e-6))]


def test_spherical_kmeans_recovers_planted_clusters_deterministically() -> None:
    rng = np.random.default_rng(3)
    matrix, truth = planted(rng, per=80, k=6)
    result = spherical_kmeans(matrix.astype(np.float16), 6, seed=7)
    # each found cluster is exactly one planted cluster
    pairs = {(a, b) for a, b in zip(result.labels.tolist(), truth.tolist(), strict=True)}
    assert len(pairs) == 6 and len({a for a, _ in pairs}) == 6
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1, rtol=1e-5)
    assert result.cohesion > 0.9
    again = spherical_kmeans(matrix.astype(np.float16), 6, seed=7)
    assert np.array_equal(again.labels, result.labels)


def test_kmeans_refills_empty_clusters() -> None:
    matrix = normalise_rows(np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0], [0.7, 0.7]]))
    result = spherical_kmeans(matrix, 3, seed=0)
    assert len(set(result.labels.tolist())) == 3
    with pytest.raises(ValueError, match="k must be between 1 and the number of photos"):
        spherical_kmeans(matrix, 6)


def test_silhouette_on_a_hand_computed_example() -> None:
    points = np.array([0.0, 1.0, 10.0, 12.0])
    distances = np.abs(points[:, None] - points[None])
    labels = np.array([0, 0, 1, 1])
    # a = 1, 1, 2, 2; b = 11, 10, 9.5, 11.5
    expected = np.mean([1 - 1 / 11, 1 - 1 / 10, 1 - 2 / 9.5, 1 - 2 / 11.5])
    assert silhouette(distances, labels) == pytest.approx(expected)
    assert silhouette(distances, np.array([0, 1, 1, 1])) < silhouette(distances, labels)


def test_choose_k_finds_the_planted_number() -> None:
    rng = np.random.default_rng(4)
    matrix, _ = planted(rng, per=60, k=7, spread=0.3)
    assert choose_k(matrix, k_max=15, sample=400) == 7


def test_characteristic_tags_prefer_what_sets_a_cluster_apart() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    tags = [
        {"animal", "cat"},
        {"animal", "cat", "sofa"},
        {"animal", "cat"},
        {"animal", "dog"},
        {"animal", "dog", "beach"},
        {"animal"},
    ]
    names = characteristic_tags(labels, tags, top=2)
    assert names == [("cat", "sofa"), ("dog", "beach"), ()]  # `animal` is everywhere


def test_clusters_with_the_same_top_tags_take_more_until_they_differ() -> None:
    labels = np.array([0, 0, 1, 1, *[2] * 4, *[3] * 4])
    tags = [{"cat", "sofa"}] * 2 + [{"cat", "rug"}] * 2 + [{"sofa", "rug", "tree"}] * 8
    names = characteristic_tags(labels, tags, top=1)
    assert names == [
        ("cat", "sofa"),
        ("cat", "rug"),
        ("tree", "rug", "sofa"),
        ("tree", "rug", "sofa"),
    ]
    assert labels_for([*names, ()]) == [
        "cat, sofa",
        "cat, rug",
        "tree, rug, sofa #1",
        "tree, rug, sofa #2",
        "(no characteristic tags)",
    ]


def test_cluster_names_planted_groups() -> None:
    rng = np.random.default_rng(5)
    matrix, truth = planted(rng, per=40, k=3)
    names = ["beach", "cat", "mountain"]
    tags = [{names[t], "photo"} for t in truth]
    clusters = cluster(matrix, tags, k=None, seed=1)
    assert sorted(c.tags[0] for c in clusters) == names
    for c in clusters:
        assert len(set(truth[c.members].tolist())) == 1 and len(c.members) == 40
    with pytest.raises(ValueError, match="3 embeddings but tags for 2 photos"):
        cluster(matrix[:3], tags[:2])
    assert cluster(matrix[:0], []) == []
