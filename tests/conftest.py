"""Shared fixtures: isolated XDG folders for every test, and the ../shared data."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
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


# --- exiftool, the independent reader (and the user's other program) --------------------

KEYWORD_TAGS = ("-XMP:Subject", "-XMP:HierarchicalSubject", "-XMP:TagsList", "-IPTC:Keywords")
KEYWORD_FIELDS = tuple(tag.split(":")[1] for tag in KEYWORD_TAGS)  # exiftool -j names


def _exiftool_needed() -> None:
    if shutil.which("exiftool") is None:
        pytest.fail(
            "exiftool is needed as an independent reader: apt-get install libimage-exiftool-perl"
        )


def exiftool(path: Path, *args: str) -> None:
    """Edit a photo as the user would, with another program."""
    _exiftool_needed()
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def exiftool_read(
    paths: Sequence[Path], *tags: str, numeric: bool = False, mwg: bool = False
) -> dict[Path, dict[str, list[object]]]:
    """`tags` of many files in one exiftool call (each call starts Perl: a sixth of a second),
    every value as a list; `numeric` is exiftool's -n, `mwg` reads by the MWG rules."""
    _exiftool_needed()
    options = [*(["-n"] if numeric else []), *(["-use", "MWG"] if mwg else [])]
    cmd = ["exiftool", "-j", *options, *tags, *map(str, paths)]
    # In the order given: exiftool's SourceFile is its own re-encoding of a non-UTF-8 name.
    found = json.loads(_run(cmd))
    assert len(found) == len(paths), found
    return {
        p: {k: v if isinstance(v, list) else [v] for k, v in d.items() if k != "SourceFile"}
        for p, d in zip(paths, found, strict=True)
    }


def keyword_sets(paths: Sequence[Path]) -> dict[Path, dict[str, list[str]]]:
    """The four keyword fields of many files, as strings; a missing field is an empty list."""
    found = exiftool_read(paths, *KEYWORD_TAGS)
    return {p: {f: [str(v) for v in found[p].get(f, [])] for f in KEYWORD_FIELDS} for p in paths}


def exiftool_keywords(path: Path) -> dict[str, list[str]]:
    """Keywords as exiftool, an independent reader, sees them."""
    return keyword_sets([path])[path]


def mwg_keywords(path: Path) -> list[str]:
    """`exiftool -use MWG -MWG:Keywords`: dc:subject reconciled with IPTC by the digest."""
    return [
        str(v) for v in exiftool_read([path], "-MWG:Keywords", mwg=True)[path].get("Keywords", [])
    ]


def exiftool_warnings(path: Path) -> set[str]:
    """exiftool's validation warnings (text output: JSON would keep only one of the repeats)."""
    _exiftool_needed()
    out = _run(["exiftool", "-validate", "-warning", "-a", "-s", str(path)], check=False)
    return {
        v.strip()
        for k, _, v in (x.partition(":") for x in out.splitlines())
        if k.strip() == "Warning"
    }


def _run(cmd: list[str], check: bool = True) -> str:
    return subprocess.run(cmd, capture_output=True, check=check, text=True).stdout


@pytest.fixture(params=["sqlite", "tinydb"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each index backend in turn, for the tests of the index contract."""
    return str(request.param)
