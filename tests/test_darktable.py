"""Photos phototag tagged, imported into a fresh darktable library through its Lua API.

darktable 4.2 (Debian 12) runs headless under xvfb-run; a Lua script imports each photo, writes
what darktable shows (rating, red label, tags from `darktable.tags.get_tags`) to a file, and
quits through `darktable.gui.action("global/quit")`. A hard timeout keeps a stuck GUI from
hanging the suite.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from phototag.config import WriteConfig
from phototag.files import metadata
from phototag.records import Tag

PHOTOS = Path(__file__).parents[1].parent / "shared" / "photos"
pytestmark = [
    pytest.mark.skipif(
        not (shutil.which("darktable") and shutil.which("xvfb-run")),
        reason="darktable or xvfb-run not installed (.ci/run installs both)",
    ),
    pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"{PHOTOS} not found"),
]

LUA = """
local dt = require "darktable"
local out = io.open(%(out)r, "w")
for _, path in ipairs({%(paths)s}) do
  local image = dt.database.import(path)
  local names = {}
  for _, tag in ipairs(dt.tags.get_tags(image)) do table.insert(names, tag.name) end
  out:write(path, "\\t", image.rating, "\\t", tostring(image.red), "\\t",
            table.concat(names, "\\t"), "\\n")
end
out:close()
dt.gui.action("global/quit", 0, "", "", 0)
"""


def darktable_view(tmp_path: Path, photos: list[Path]) -> dict[str, tuple[int, bool, set[str]]]:
    """photo path -> (rating, red label, tags) as a fresh darktable library shows them."""
    out, script = tmp_path / "darktable.tsv", tmp_path / "read.lua"
    paths = ", ".join(f'"{p}"' for p in photos)
    script.write_text(LUA % {"out": str(out), "paths": paths})
    (tmp_path / "dtconf").mkdir()
    cmd = ["xvfb-run", "-a", "darktable", "--library", str(tmp_path / "library.db")]
    cmd += ["--configdir", str(tmp_path / "dtconf"), "--luacmd", f'dofile("{script}")']
    subprocess.run(cmd, capture_output=True, timeout=180, check=True)
    view = {}
    for line in out.read_text().splitlines():
        path, rating, red, *tags = line.split("\t")
        shown = {t for t in tags if t and not t.startswith("darktable|")}
        view[path] = (int(rating), red == "true", shown)
    return view


USER = {"Brasil", "Brazil Trip", "beach", "praia", "Grandma", "family|Ann"}
OURS = {"animal|bird|owl", "place|beach"}
LEVELS = {"animal", "bird", "owl", "family", "Ann", "place"}  # of the hierarchy entries above
CASES = [(mode, flat) for mode in ("auto", "sidecar") for flat in (True, False)]


def tagged_owl(folder: Path, cfg: WriteConfig) -> Path:
    """owl.jpg (the photographer's keywords: Brasil, Brazil Trip, beach, praia) with a rating,
    a red label and more user keywords, then tagged by us."""
    folder.mkdir()
    photo = folder / "owl.jpg"
    shutil.copyfile(PHOTOS / "owl.jpg", photo)
    photo.chmod(0o644)
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP:Rating=5", "-XMP:Label=Red",
         "-XMP:Subject+=Grandma", "-XMP:HierarchicalSubject+=family|Ann", str(photo)],
        check=True,
    )  # fmt: skip
    metadata.write(photo, [Tag("animal|bird|owl", 0.9), Tag("place|beach", 0.5)], "m@1", cfg)
    return photo


@pytest.fixture(scope="module")
def darktable_views(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, bool], tuple[int, bool, set[str]]]:
    """What one fresh darktable library shows for owl.jpg tagged in each case."""
    tmp = tmp_path_factory.mktemp("darktable")
    photos = {
        (mode, flat): tagged_owl(
            tmp / f"{mode}-{flat}", WriteConfig(mode=mode, flat_ancestors=flat)
        )  # type: ignore[arg-type]
        for mode, flat in CASES
    }
    view = darktable_view(tmp, list(photos.values()))
    return {case: view[str(photo)] for case, photo in photos.items()}


@pytest.mark.parametrize("case", CASES, ids=[f"{m}-flat_ancestors={f}" for m, f in CASES])
def test_darktable_shows_users_and_our_keywords_once(
    darktable_views: dict[tuple[str, bool], tuple[int, bool, set[str]]], case: tuple[str, bool]
) -> None:
    """Every user keyword and ours, hierarchy intact, rating and label kept, and no level of a
    hierarchy entry shown again as a flat tag beside it (finding 6: darktable imports each IPTC
    keyword as a flat tag), in the photo and in a sidecar, with either `write.flat_ancestors`."""
    rating, red, shown = darktable_views[case]
    assert (rating, red) == (5, True)
    assert shown >= USER | OURS
    assert not LEVELS & shown, sorted(LEVELS & shown)
