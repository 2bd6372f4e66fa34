"""The web app end to end in a real headless Chromium (Debian's, driven by Playwright).

The server is the real one (uvicorn on a free loopback port) over a library the real model
tagged (classifier and detector); what the browser changes is read back from the files with
exiftool. The screenshots in docs/ are taken here, with PHOTOTAG_SCREENSHOTS=1 (otherwise they
go to a temp folder, so a test run leaves the working tree as it was).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from PIL import Image

from phototag import catalogue
from phototag.pipeline import tagger
from phototag.pipeline.runner import Pipeline
from tests.conftest import PHOTOS, ROOT, exiftool_keywords, mwg_keywords, need_shared
from tests.web_library import PASSWORD, USER, WebLibrary, app_of, build

CHROMIUM = "/usr/bin/chromium"
DOCS = ROOT / "docs"
DETECTOR = ROOT.parent / "shared" / "models" / "coco_nanodet.onnx"
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def library(tmp_path: Path, installed_model: Path) -> Iterator[WebLibrary]:
    catalogue.import_file(need_shared(DETECTOR), "coco-nanodet")  # boxes to draw
    yield from build(tmp_path, need_shared(PHOTOS))


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ when PHOTOTAG_SCREENSHOTS=1 asks to refresh them."""
    if os.environ.get("PHOTOTAG_SCREENSHOTS") == "1":
        return DOCS
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@pytest.fixture
def server(library: WebLibrary) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app_of(library), port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server: str) -> Iterator[playwright.Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(base_url=server, viewport={"width": 960, "height": 640})
        yield context.new_page()
        browser.close()


def log_in(page: playwright.Page, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", password)
    page.click("text=Log in")


def shot(page: playwright.Page, folder: Path, name: str) -> None:
    """A screenshot for the README, cut to 64 colours so the repository stays small."""
    path = folder / f"web-{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(64)
    small.save(path, optimize=True)


def test_log_in_search_review_and_upload(
    page: playwright.Page, library: WebLibrary, shots: Path
) -> None:
    log_in(page, "not the password")
    assert page.url.endswith("/login?error=wrong+user+or+password")
    assert "wrong user or password" in page.inner_text("#error")
    shot(page, shots, "login")

    log_in(page)
    assert page.inner_text("#count").startswith(f"{len(library.photos)} photos")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, shots, "library")

    page.fill("input[name=q]", "cat OR dog")
    page.click("text=Search")
    titles = page.eval_on_selector_all(".grid a", "links => links.map(a => a.title)")
    assert sorted(titles) == sorted(str(library.photos[n]) for n in ["cat_720p.jpg", "pets.jpg"])

    # Open the parrot (its tags were undone): the model's missing tag is suggested; accept it.
    parrot = library.photos["parrot.jpg"]
    page.fill("input[name=q]", "")
    page.click("text=Search")
    page.click(f'.grid a[title="{parrot}"]')
    assert "animal|bird|parrot" in page.inner_text("#suggested")
    page.wait_for_function("document.images[0].complete && document.images[0].naturalWidth > 0")
    shot(page, shots, "photo")
    page.click('#suggested button[data-action=accept][data-tag="animal|bird|parrot"]')
    assert "parrot" in page.inner_text("#yours")
    seen = exiftool_keywords(parrot)
    assert "parrot" in seen["Subject"] and "parrot" in mwg_keywords(parrot)
    assert "animal|bird|parrot" in seen["HierarchicalSubject"]

    # The owl's suggestion, rejected, never returns: not on the page, not after a re-tag.
    owl = library.photos["owl.jpg"]
    page.goto(f"/photo?path={owl}")
    rejected = page.get_attribute("#suggested button[data-action=reject]", "data-tag")
    assert rejected
    page.click(f'#suggested button[data-action=reject][data-tag="{rejected}"]')
    leaf = rejected.rsplit("|", 1)[-1]
    assert leaf in page.inner_text("#deleted") and rejected not in page.inner_text("#suggested")
    Pipeline(library.cfg, tagger.load(library.cfg), library.index, force=True).run([owl])
    page.reload()
    assert rejected not in page.inner_text("#suggested")
    assert leaf not in page.inner_text("#ours") and leaf not in exiftool_keywords(owl)["Subject"]

    # Upload a photo from outside the library and see its tags.
    page.click("text=Tag a photo")
    page.set_input_files("input[type=file]", str(need_shared(PHOTOS) / "hot_dog.jpg"))
    page.click("text=Tag it")
    assert "hotdog" in page.inner_text("#result").replace(" ", "").lower()
    shot(page, shots, "upload")
    page.click("text=Status")
    assert page.inner_text("#photos") == str(len(library.photos))


def test_refused_without_session_csrf_or_inside_path(
    page: playwright.Page, server: str, library: WebLibrary
) -> None:
    cat = str(library.photos["cat_720p.jpg"])
    api = page.request
    assert api.get("/api/photos").status == 401
    page.goto("/")
    assert page.url.endswith("/login")
    log_in(page)
    assert api.get("/api/photos").status == 200  # the browser's session cookie
    change = {"path": cat, "action": "add", "tag": "forged"}
    assert api.post("/api/keywords", data=change).status == 403  # no CSRF token
    assert "forged" not in exiftool_keywords(Path(cat))["Subject"]
    assert api.get("/api/photo?path=../../etc/passwd").status == 404
    assert api.get(f"/api/thumbnail?path={library.folder}/../../../../etc/passwd").status == 404


def test_facets_dates_review_queue_detections_and_saving(
    page: playwright.Page, library: WebLibrary, shots: Path, tmp_path: Path
) -> None:
    log_in(page)
    # Facets: click one, the search narrows to it and the count matches the facet's.
    dog = page.locator('#facets a[data-tag="animal|mammal|dog"]')
    count = int(dog.locator("xpath=following-sibling::span").inner_text())
    dog.click()
    assert page.input_value("input[name=q]") == '"animal|mammal|dog"'
    assert page.inner_text("#count").startswith(f"{count} photos")
    titles = page.eval_on_selector_all(".grid a", "links => links.map(a => a.title)")
    assert titles == [str(library.photos["pets.jpg"])]
    page.fill("input[name=q]", "")
    page.fill("input[name=from]", "2009-01-01")
    page.fill("input[name=to]", "2010-12-31")
    page.click("text=Search")
    dated = [r.path for r in library.index.records() if r.taken and "2009" <= r.taken[:4] <= "2010"]
    assert page.inner_text("#count").startswith(f"{len(dated)} photos") and dated
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")

    # Detections: the two dogs the detector found, drawn inside the preview.
    pets = library.photos["pets.jpg"]
    page.goto(f"/photo?path={pets}")
    page.wait_for_function("document.images[0].complete && document.images[0].naturalWidth > 0")
    boxes = page.locator('.box[data-tag="animal|mammal|dog"]')
    assert boxes.count() == 2
    img = page.locator("#preview img").bounding_box()
    assert img and img["width"] > 100
    for i in range(2):
        box = boxes.nth(i).bounding_box()
        assert box and box["width"] > 20 and box["height"] > 20
        assert img["x"] - 1 <= box["x"] and box["x"] + box["width"] <= img["x"] + img["width"] + 1
        assert img["y"] - 1 <= box["y"] and box["y"] + box["height"] <= img["y"] + img["height"] + 1
    assert "phototag train" in page.inner_text("#learned")  # none learned yet, and why
    shot(page, shots, "detections")

    # Review queue: one click accepts the parrot's tag, one rejects the owl's.
    page.click("text=Review")
    parrot, owl = library.photos["parrot.jpg"], library.photos["owl.jpg"]
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, shots, "review")
    with page.expect_navigation():
        page.click(
            f'#queue button[data-path="{parrot}"][data-action=accept][data-tag="animal|bird|parrot"]'
        )
    assert page.url.endswith("/review")
    assert "animal|bird|parrot" in exiftool_keywords(parrot)["HierarchicalSubject"]
    rejected = page.get_attribute(
        f'#queue button[data-path="{owl}"][data-action=reject]', "data-tag"
    )
    assert rejected
    with page.expect_navigation():
        page.click(f'#queue button[data-path="{owl}"][data-action=reject][data-tag="{rejected}"]')
    left = page.eval_on_selector_all(  # the missing tags still proposed
        "#queue button[data-action=reject]",
        "bs => bs.map(b => b.dataset.path + ' ' + b.dataset.tag)",
    )
    assert f"{parrot} animal|bird|parrot" not in left and f"{owl} {rejected}" not in left

    # Upload into a watched folder: saved under its own name, tagged there.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    library.cfg.watch.folders = [str(inbox)]
    page.click("text=Tag a photo")
    page.set_input_files("input[type=file]", str(need_shared(PHOTOS) / "hot_dog.jpg"))
    page.select_option("select[name=save]", str(inbox))
    page.click("text=Tag it")
    assert page.inner_text("#saved").startswith(f"saved as {inbox / 'hot_dog.jpg'}")
    assert "hotdog" in "".join(exiftool_keywords(inbox / "hot_dog.jpg")["Subject"]).replace(" ", "")
    page.click("#saved a")
    assert "hot" in page.inner_text("#ours")
