"""EfficientNet-Lite0 as the classifier backbone: installed from the catalogue, it tags real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from phototag import catalogue
from tests.conftest import MODELS, need_shared


def test_efficientnet_lite0_tags_real_photos_with_its_1000_class_map(
    tmp_path: Path, photos: Path
) -> None:
    lite0 = catalogue.import_file(need_shared(MODELS / "efficientnet_lite0.onnx"))
    assert lite0.spec.ref == "efficientnet-lite0@torch-1"
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  name: efficientnet-lite0\n")
    names = ("cat_720p.jpg", "hot_dog.jpg", "parrot.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "phototag", "-c", str(config), "tag", "--json", "-n"]
        + [str(photos / n) for n in names],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    found = {
        Path(d["path"]).name: [t["tag"] for t in d["tags"]]
        for d in map(json.loads, result.stdout.splitlines())
        if "summary" not in d
    }
    # Lite0's outputs start at tench (no background): an off-by-one map would miss all three
    assert "cat" in found["cat_720p.jpg"], found
    assert "hot dog" in found["hot_dog.jpg"], found
    assert "parrot" in found["parrot.jpg"], found
