"""Shared fixtures: isolated XDG folders for every test, and the ../shared data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
PHOTOS = SHARED / "photos"
MODEL_V1 = MODELS / "mobilenet_v2_1.0_224_quant.onnx"
MODEL_V2 = MODELS / "mobilenet_v2_1.0_224_tf2_ptq.onnx"


def need_shared(path: Path) -> Path:
    """Skip, saying why, when the shared data beside the project is absent."""
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (tests use ../shared beside the project)")
    return path


@pytest.fixture(autouse=True)
def xdg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config, data and state folders, never the user's."""
    home = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.delenv("PHOTOTAG_CONFIG", raising=False)
    monkeypatch.delenv("PHOTOTAG_MODEL_MIRROR", raising=False)
    return home


@pytest.fixture
def photos() -> Path:
    return need_shared(PHOTOS)


@pytest.fixture
def installed_model() -> Path:
    """The shared v1 model imported through the product's own catalogue."""
    from phototag import catalogue

    return catalogue.import_file(need_shared(MODEL_V1), "mobilenet-v2").path


def exiftool_keywords(path: Path) -> dict[str, list[str]]:
    """Keywords as exiftool, an independent reader, sees them."""
    import json

    if shutil.which("exiftool") is None:
        pytest.fail(
            "exiftool is needed as an independent reader: apt-get install libimage-exiftool-perl"
        )
    out = subprocess.run(
        [
            "exiftool",
            "-j",
            "-XMP:Subject",
            "-XMP:HierarchicalSubject",
            "-XMP:TagsList",
            "-IPTC:Keywords",
            str(path),
        ],
        capture_output=True,
        check=True,
    ).stdout
    data = json.loads(out)[0]

    def as_list(key: str) -> list[str]:
        value = data.get(key, [])
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    return {k: as_list(k) for k in ("Subject", "HierarchicalSubject", "TagsList", "Keywords")}


def mwg_keywords(path: Path) -> list[str]:
    """`exiftool -use MWG -MWG:Keywords`: dc:subject reconciled with IPTC by the digest."""
    import json

    cmd = ["exiftool", "-j", "-use", "MWG", "-MWG:Keywords", str(path)]
    found = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)[0]
    value = found.get("Keywords", [])
    return [str(v) for v in (value if isinstance(value, list) else [value])]


@pytest.fixture(params=["sqlite", "tinydb"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each index backend in turn, for the tests of the index contract."""
    return str(request.param)
