"""People in the web app's review queue: groups of unnamed faces shown, named in one form,
and the name written into the photos where other programs read it (exiftool)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from phototag import catalogue, cli, config
from phototag.library.index import Index, open_index
from phototag.pipeline import tagger
from phototag.web import auth
from phototag.web.app import create_app
from tests.conftest import MODEL_V1, MODELS, SHARED, need_shared
from tests.test_faces_cli import faces_on_file
from tests.test_web import login
from tests.web_library import PASSWORD, USER

TRAIN = SHARED / "faces" / "train"


@pytest.fixture
def people(tmp_path: Path) -> Iterator[tuple[TestClient, Index, str]]:
    """The train photos of faces/ scanned with faces on; a logged-in client and its token."""
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is needed as an independent reader")
    for model in (MODEL_V1, MODELS / "face_blazeface.onnx", MODELS / "face_faceres.onnx"):
        catalogue.import_file(need_shared(model))
    album = tmp_path / "album"
    shutil.copytree(need_shared(TRAIN), album)
    for path in album.iterdir():
        path.chmod(0o644)
    settings = tmp_path / "config.yaml"
    settings.write_text(f"faces:\n  enabled: true\nwatch:\n  folders: [{album}]\n")
    assert cli.main(["-q", "-c", str(settings), "scan", str(album)]) == 0
    assert cli.main(["-q", "-c", str(settings), "faces"]) == 0  # groups the new faces
    auth.set_password(USER, PASSWORD)
    cfg = config.load(settings)
    with open_index(cfg.index_dir, cfg.index.backend) as index:
        client = TestClient(create_app(cfg, index, lambda: tagger.load(cfg)))
        yield client, index, login(client)


def test_a_face_group_named_in_the_review_queue_is_written_into_its_photos(
    people: tuple[TestClient, Index, str],
) -> None:
    client, index, csrf = people
    page = client.get("/review")
    assert page.status_code == 200 and "People to name" in page.text
    groups = [int(g) for g in re.findall(r'data-group="(\d+)"', page.text)]
    assert groups, page.text[:2000]
    group = groups[0]
    members = [f for f in index.faces() if f.group == group and not f.name]
    assert members

    named = client.post(
        "/review/people", data={"csrf": csrf, "group": str(group), "name": "Someone Dear"}
    )
    assert named.status_code == 200 and named.url.path == "/review"  # followed the 303
    assert "error" not in str(named.url)
    for face in members:
        now = next(f for f in index.faces(face.photo) if f.number == face.number)
        assert (now.name, now.source) == ("Someone Dear", "user")
        found = faces_on_file(Path(face.photo))
        assert "Someone Dear" in found["RegionName"] and "Someone Dear" in found["PersonInImage"]
        assert "People|Someone Dear" in found["HierarchicalSubject"]
    assert f'data-group="{group}"' not in client.get("/review").text  # named: off the queue
    face = members[0]  # drawn on the photo page, and in the API, with its name
    page = client.get("/photo", params={"path": face.photo})
    assert f'data-face="{face.number}" data-name="Someone Dear"' in page.text
    shown = client.get("/api/photo", params={"path": face.photo}).json()["faces"]
    mine = next(f for f in shown if f["number"] == face.number)
    assert (mine["name"], mine["source"]) == ("Someone Dear", "user")
    x1, y1, x2, y2 = mine["box"]
    assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_naming_a_group_is_refused_with_one_line_without_token_or_name(
    people: tuple[TestClient, Index, str],
) -> None:
    client, index, csrf = people
    group = next(f.group for f in index.faces() if f.group and not f.name)
    no_token = client.post("/review/people", data={"group": str(group), "name": "X"})
    assert no_token.status_code == 403
    blank = client.post("/review/people", data={"csrf": csrf, "group": str(group), "name": " "})
    assert blank.url.path == "/review" and "error=" in str(blank.url)
    missing = client.post("/review/people", data={"csrf": csrf, "group": "99999", "name": "X"})
    assert "no group 99999" in unquote(str(missing.url))
    assert not [f for f in index.faces() if f.name in ("X", " ")]
