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
    pytest.mark.slow,
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


@pytest.mark.parametrize("mode", ["auto", "sidecar"])
def test_darktable_shows_users_and_our_keywords(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    photo = folder / "owl.jpg"  # the photographer's keywords: Brasil, Brazil Trip, beach, praia
    shutil.copyfile(PHOTOS / "owl.jpg", photo)
    photo.chmod(0o644)
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP:Rating=5", "-XMP:Label=Red",
         "-XMP:Subject+=Grandma", "-XMP:HierarchicalSubject+=family|Ann", str(photo)],
        check=True,
    )  # fmt: skip
    cfg = WriteConfig(mode=mode)  # type: ignore[arg-type]
    metadata.write(photo, [Tag("animal|bird|owl", 0.9), Tag("place|beach", 0.5)], "m@1", cfg)

    rating, red, shown = darktable_view(tmp_path, [photo])[str(photo)]
    assert (rating, red) == (5, True)
    user = {"Brasil", "Brazil Trip", "beach", "praia", "Grandma", "family|Ann"}
    assert user | {"animal|bird|owl", "place|beach"} <= shown
    if mode == "sidecar":
        # No ancestor or leaf of a hierarchy shown again as a flat tag beside it (finding 6).
        # In the photo itself darktable also lists each IPTC keyword as a flat tag, and IPTC
        # holds what dc:subject holds (MWG), so there the flat copies are expected.
        assert not {"animal", "bird", "owl", "family", "Ann", "place"} & shown
