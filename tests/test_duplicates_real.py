"""Duplicates on real photos with real MobileNetV2 embeddings (ONNX Runtime, shared model).

Justifies DUPLICATE_THRESHOLD: a re-save at JPEG quality 70 and a 50 % resize must join
their original; different photos, even two of cats, must not.
"""

import numpy as np
import pytest
from PIL import Image
from reference_embeddings import MODEL, PHOTOS, available, embed

from phototag.library.similarity import DUPLICATE_THRESHOLD, duplicates

pytestmark = pytest.mark.skipif(
    not available(), reason=f"shared model/photos not found in {MODEL.parents[1]}"
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    tmp = tmp_path_factory.mktemp("dupes")
    pets = Image.open(PHOTOS / "pets.jpg").convert("RGB")
    pets.save(tmp / "pets_q70.jpg", quality=70)
    pets.resize((pets.width // 2, pets.height // 2), Image.LANCZOS).save(
        tmp / "pets_half.jpg", quality=90
    )
    names = ["cat_720p.jpg", "cat_1080p.jpg", "pets.jpg", "parrot.jpg", "owl.jpg", "hot_dog.jpg"]
    paths = [PHOTOS / n for n in names] + [tmp / "pets_q70.jpg", tmp / "pets_half.jpg"]
    return dict(zip([p.name for p in paths], embed(paths), strict=True))


def test_duplicates_groups_resaves_and_resizes_but_not_different_cats(
    library: dict[str, np.ndarray],
) -> None:
    names = list(library)
    groups = duplicates(np.stack(list(library.values())).astype(np.float16))
    found = sorted(sorted(names[m] for m in g.members) for g in groups)
    assert found == [
        ["cat_1080p.jpg", "cat_720p.jpg"],  # one photo at two sizes (see next test)
        ["pets.jpg", "pets_half.jpg", "pets_q70.jpg"],
    ]
    assert float(library["pets.jpg"] @ library["cat_720p.jpg"]) < 0.6


def test_cat_720p_and_cat_1080p_are_the_same_photo(library: dict[str, np.ndarray]) -> None:
    small = np.asarray(Image.open(PHOTOS / "cat_720p.jpg").convert("RGB"), np.float32)
    large = Image.open(PHOTOS / "cat_1080p.jpg").convert("RGB").resize((1280, 720), Image.BILINEAR)
    assert np.abs(np.asarray(large, np.float32) - small).mean() < 5  # of 255: the same pixels
    assert float(library["cat_720p.jpg"] @ library["cat_1080p.jpg"]) > DUPLICATE_THRESHOLD
