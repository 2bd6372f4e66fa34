"""The web app in process (Starlette's test client) over a real library of tagged photos.

Keyword changes are read back from the files with exiftool, an independent reader.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from phototag.config import WriteConfig
from phototag.files import metadata
from phototag.pipeline import tagger
from phototag.records import Tag
from phototag.web import auth, thumbs
from phototag.web.library import file_name, narrowed, unique_path
from tests.conftest import PHOTOS, exiftool_keywords, mwg_keywords, need_shared
from tests.web_library import PASSWORD, USER, WebLibrary, app_of, build


@pytest.fixture
def library(tmp_path: Path, installed_model: Path) -> Iterator[WebLibrary]:
    yield from build(tmp_path, need_shared(PHOTOS))


@pytest.fixture
def client(library: WebLibrary) -> TestClient:
    return TestClient(app_of(library), base_url="http://127.0.0.1")


def login(client: TestClient, password: str = PASSWORD) -> str:
    """Log in through the form; the session's CSRF token, read from a page."""
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    client.post("/login", data={"username": USER, "password": password, "csrf": token[1]})
    home = client.get("/")
    if home.url.path == "/login":
        return ""
    found = re.search(r'name="csrf" value="([^"]+)"', home.text)
    assert found
    return found[1]


def test_password_is_stored_as_a_salted_scrypt_hash(tmp_path: Path) -> None:
    path = auth.set_password("ada", "s3cret-enough", tmp_path / "pw")
    text = path.read_text()
    assert "s3cret" not in text and text.startswith("ada:scrypt$16384$8$1$")
    assert path.stat().st_mode & 0o777 == 0o600
    stored = auth.load_users(path)["ada"]
    assert auth.check_password("s3cret-enough", stored)
    assert not auth.check_password("s3cret-enougH", stored)
    assert auth.hash_password("x", b"1" * 16) != auth.hash_password("x", b"2" * 16)
    assert not auth.check_password("x", "scrypt$nonsense")
    with pytest.raises(auth.AuthError):
        auth.set_password("ada", "short", tmp_path / "pw")


def test_rate_limit_counts_failures_in_a_sliding_window() -> None:
    limit = auth.RateLimit(2, window_s=60)
    assert not limit.blocked("a", now=0)
    limit.failed("a", now=0)
    limit.failed("a", now=1)
    assert limit.blocked("a", now=2) and not limit.blocked("b", now=2)
    assert not limit.blocked("a", now=61)


def test_remove_makes_ours_a_negative_and_leaves_users_alone(tmp_path: Path) -> None:
    photo = tmp_path / "face.jpg"
    shutil.copyfile(need_shared(PHOTOS) / "face.jpg", photo)
    cfg = WriteConfig()
    metadata.accept(photo, Tag("Grandma", 1.0, "user"), cfg)
    metadata.write(photo, [Tag("animal|mammal|cat", 0.9), Tag("animal|bird", 0.4)], "v1", cfg)
    metadata.remove(photo, Tag("animal|mammal|cat"), cfg)
    metadata.remove(photo, Tag("animal|fish|shark"), cfg, negative=True)  # a rejected suggestion
    seen = exiftool_keywords(photo)
    assert "cat" not in seen["Subject"] + seen["Keywords"]
    assert "animal|mammal|cat" not in seen["HierarchicalSubject"]
    assert "Grandma" in seen["Subject"] and "bird" in seen["Subject"]
    got = metadata.read(photo, cfg)
    assert set(got.removed_by_user) >= {"cat", "shark"}
    metadata.write(photo, [Tag("animal|mammal|cat", 0.95)], "v2", cfg)  # a re-tag: not again
    assert "cat" not in exiftool_keywords(photo)["Subject"]
    metadata.remove(photo, Tag("Grandma"), cfg)  # the user's own: just gone, not a negative
    got = metadata.read(photo, cfg)
    assert "Grandma" not in got.keywords and "Grandma" not in got.removed_by_user


def test_no_session_no_csrf_no_traversal(client: TestClient, library: WebLibrary) -> None:
    cat = str(library.photos["cat_720p.jpg"])
    assert client.get("/api/photos").status_code == 401
    assert client.get(f"/api/photo?path={cat}").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/openapi.json").status_code == 401
    csrf = login(client)
    assert csrf
    change = {"path": cat, "action": "add", "tag": "mine"}
    assert client.post("/api/keywords", json=change).status_code == 403
    assert (
        client.post("/api/keywords", json=change, headers={"X-CSRF-Token": "x"}).status_code == 403
    )
    assert "mine" not in exiftool_keywords(Path(cat))["Subject"]
    for bad in ["../../etc/passwd", "/etc/passwd", f"{library.folder}/../../../etc/passwd"]:
        assert client.get("/api/photo", params={"path": bad}).status_code == 404
        assert client.get("/api/thumbnail", params={"path": bad}).status_code == 404
    # A symlink in the album to a file outside it is not served, even once indexed.
    outside = library.folder.parent / "secret.jpg"
    shutil.copyfile(cat, outside)
    link = library.folder / "link.jpg"
    link.symlink_to(outside)
    record = library.index.get(cat)
    assert record is not None
    record.path = str(link)
    library.index.put(record)
    assert client.get("/api/thumbnail", params={"path": str(link)}).status_code == 404


def test_wrong_password_refused_and_rate_limited(client: TestClient) -> None:
    assert login(client, "wrong") == ""
    for _ in range(4):
        login(client, "wrong")
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    answer = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf": token[1]})
    assert answer.status_code == 429  # even the right password, until the minute is over


def test_login_needs_the_forms_token(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"username": USER, "password": PASSWORD, "csrf": "forged"})
    assert answer.status_code == 403


def test_cookies_are_httponly_and_samesite_strict(client: TestClient) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    answer = client.post(
        "/login",
        data={"username": USER, "password": PASSWORD, "csrf": token[1]},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"]
    assert "phototag_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP on loopback; web.tls adds it


def test_search_review_and_upload_through_the_api(client: TestClient, library: WebLibrary) -> None:
    csrf = login(client)
    headers = {"X-CSRF-Token": csrf}
    everything = client.get("/api/photos").json()
    assert everything["total"] == len(library.photos)
    found = client.get("/api/photos", params={"q": "cat"}).json()
    assert str(library.photos["cat_720p.jpg"]) in found["photos"]
    assert str(library.photos["parrot.jpg"]) not in found["photos"]
    assert client.get("/api/photos", params={"q": "cat AND ("}).status_code == 400

    parrot = str(library.photos["parrot.jpg"])
    photo = client.get("/api/photo", params={"path": parrot}).json()
    missing = [s["tag"] for s in photo["suggested"] if s["kind"] == "missing"]
    assert "animal|bird|parrot" in missing
    answer = client.post(
        "/api/keywords",
        json={"path": parrot, "action": "accept", "tag": "animal|bird|parrot"},
        headers=headers,
    )
    assert answer.status_code == 200 and "parrot" in answer.json()["yours"]
    seen = exiftool_keywords(Path(parrot))
    assert "parrot" in seen["Subject"] and "parrot" in mwg_keywords(Path(parrot))
    assert "animal|bird|parrot" in seen["HierarchicalSubject"]
    assert "parrot" in (library.index.get(parrot) or pytest.fail()).user

    thumb = client.get("/api/thumbnail", params={"path": parrot})
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    cached = list(thumbs.cache_dir().rglob("*.jpg"))
    assert len(cached) == 1 and library.folder not in cached[0].parents
    assert not list(library.folder.glob("*thumb*"))
    again = client.get("/api/thumbnail", params={"path": parrot})
    assert again.content == thumb.content and list(thumbs.cache_dir().rglob("*.jpg")) == cached

    with (library.photos["pets.jpg"]).open("rb") as f:
        tagged = client.post("/api/tag", files={"file": ("pets.jpg", f)}, headers=headers)
    assert tagged.status_code == 200 and tagged.json()["tags"]
    junk = client.post("/api/tag", files={"file": ("x.jpg", b"not an image")}, headers=headers)
    assert junk.status_code == 422
    private = client.post("/api/tag-url", json={"url": "http://127.0.0.1/x.jpg"}, headers=headers)
    assert private.status_code == 422 and "127.0.0.1" in private.json()["detail"]
    status = client.get("/api/status").json()
    assert status["photos"] == len(library.photos) and status["models"]


def test_the_service_serves_the_app_once_a_password_is_set(
    library: WebLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    import httpx

    from phototag import web

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    library.cfg.web.listen = f"127.0.0.1:{port}"
    auth.password_file().unlink()
    web.beside_service(library.cfg, library.index)()  # nothing served, nothing to stop
    assert "no password set" in caplog.text
    auth.set_password(USER, PASSWORD)
    stop = web.beside_service(library.cfg, library.index)
    try:
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert answer.status_code == 200 and 'name="password"' in answer.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/photos").status_code == 401
    finally:
        stop()


def test_web_passwd_and_listen_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from phototag import cli
    from phototag.web import server

    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    assert cli.main(["web", "passwd", "--user", "bob"]) == 0
    assert auth.check_password("a long enough secret", auth.load_users()["bob"])
    assert "a long enough secret" not in auth.password_file().read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["web", "passwd", "--user", "bob"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert cli.main(["web", "--listen", "nonsense"]) == 2
    assert "host:port" in capsys.readouterr().err
    assert server.listen_address("[::1]:8765") == ("::1", 8765)
    assert server.is_loopback("127.0.0.1") and not server.is_loopback("0.0.0.0")


def test_warns_when_listening_beyond_loopback_without_tls(
    library: WebLibrary, caplog: pytest.LogCaptureFixture
) -> None:
    from phototag.web import server

    library.cfg.web.listen = "0.0.0.0:8765"
    server.server(library.cfg, library.index)  # made, not started
    assert "without TLS" in caplog.text
    caplog.clear()
    library.cfg.web.tls = True
    server.server(library.cfg, library.index)
    assert "without TLS" not in caplog.text


def test_uploads_are_size_limited(client: TestClient, library: WebLibrary) -> None:
    library.cfg.web.max_upload_bytes = 1000
    csrf = login(client)
    data = library.photos["pets.jpg"].read_bytes()
    answer = client.post(
        "/api/tag", files={"file": ("pets.jpg", data)}, headers={"X-CSRF-Token": csrf}
    )
    assert answer.status_code == 422 and "more than 1000 bytes" in answer.json()["detail"]


def test_facets_count_the_result_set_and_narrow_it(client: TestClient, library: WebLibrary) -> None:
    login(client)
    everything = client.get("/api/photos").json()
    facets = {f["tag"]: f["photos"] for f in everything["facets"]}
    assert facets["animal"] == 2  # the cat and the dogs; the parrot's and owl's were undone
    counts = list(facets.values())
    assert counts == sorted(counts, reverse=True)
    for name, n in list(facets.items())[:8]:  # a facet's count is what clicking it finds
        clicked = narrowed("", name)
        assert clicked and client.get("/api/photos", params={"q": clicked}).json()["total"] == n
    cats = client.get("/api/photos", params={"q": "cat"}).json()
    in_cats = {f["tag"]: f["photos"] for f in cats["facets"]}
    assert in_cats["animal|mammal|cat"] == in_cats["animal"] == cats["total"] == 1
    assert "animal|mammal|dog" not in in_cats
    page = client.get("/", params={"q": "cat"})
    assert 'data-tag="animal|mammal|cat"' in page.text
    assert "/?q=%28cat%29%20AND%20%22animal%7Cmammal%22" in page.text.replace("&amp;", "&")


def test_date_taken_filter_means_what_search_from_to_means(
    client: TestClient, library: WebLibrary
) -> None:
    login(client)
    taken = {r.path: r.taken for r in library.index.records()}
    assert sum(bool(t) for t in taken.values()) >= 3
    expected = sorted(p for p, t in taken.items() if t and "2009" <= t[:4] <= "2010")
    assert 0 < len(expected) < len(taken)
    found = client.get("/api/photos", params={"from": "2009", "to": "2010"}).json()
    assert found["photos"] == expected
    day = min(t for t in taken.values() if t)[:10]
    assert client.get("/api/photos", params={"from": day, "to": day}).json()["total"] >= 1
    bad = client.get("/api/photos", params={"from": "last tuesday"})
    assert bad.status_code == 400 and "bad date" in bad.json()["detail"]
    assert "bad date" in client.get("/", params={"to": "13/13"}).text


def test_review_queue_spans_the_library_and_accepts_like_the_photo_page(
    client: TestClient, library: WebLibrary
) -> None:
    csrf = login(client)
    queue = client.get("/api/review").json()
    paths = {s["path"] for s in queue["suggestions"]}
    parrot, owl = str(library.photos["parrot.jpg"]), str(library.photos["owl.jpg"])
    assert {parrot, owl} <= paths  # both were undone: their model tags are suggested back
    page = client.get("/review")
    assert f'data-path="{parrot}" data-action="accept" data-tag="animal|bird|parrot"' in page.text
    answer = client.post(
        "/photo",
        data={
            "csrf": csrf,
            "path": parrot,
            "action": "accept",
            "tag": "animal|bird|parrot",
            "back": "/review",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/review"
    assert "animal|bird|parrot" in exiftool_keywords(Path(parrot))["HierarchicalSubject"]
    owl_tag = next(s["tag"] for s in queue["suggestions"] if s["path"] == owl)
    client.post(
        "/photo",
        data={"csrf": csrf, "path": owl, "action": "reject", "tag": owl_tag, "back": "/review"},
    )
    after = {(s["path"], s["tag"]) for s in client.get("/api/review").json()["suggestions"]}
    assert (parrot, "animal|bird|parrot") not in after and (owl, owl_tag) not in after
    assert owl_tag.rsplit("|", 1)[-1] in (library.index.get(owl) or pytest.fail()).negatives
    elsewhere = client.post(
        "/photo",
        data={"csrf": csrf, "path": owl, "action": "add", "tag": "x", "back": "https://evil/"},
        follow_redirects=False,
    )
    assert elsewhere.headers["location"].startswith("/photo?path=")
    assert client.get("/api/review", params={"after": max(paths)}).json()["after"] is None


def test_review_queue_pages_keep_a_photos_suggestions_together(library: WebLibrary) -> None:
    from phototag.web.library import WebLibrary as Library

    lib = Library(library.cfg, library.index, lambda: tagger.load(library.cfg))
    whole = lib.review(limit=1000)
    assert whole.after is None and len({s.path for s in whole.suggestions}) >= 2
    paged, after = [], ""
    while True:
        page = lib.review(after, limit=1)
        paged += page.suggestions
        assert len({s.path for s in page.suggestions}) <= 1
        if page.after is None:
            break
        after = page.after
    assert paged == whole.suggestions


def test_upload_saved_into_a_watched_folder_is_tagged_there(
    client: TestClient, library: WebLibrary, tmp_path: Path
) -> None:
    watched = tmp_path / "inbox"
    watched.mkdir()
    library.cfg.watch.folders = [str(watched)]
    csrf = login(client)
    headers = {"X-CSRF-Token": csrf}
    data = (need_shared(PHOTOS) / "pets.jpg").read_bytes()  # untagged, from outside
    saved = []
    for _ in range(2):
        answer = client.post(
            "/api/tag",
            files={"file": ("../pets.jpg", data)},
            data={"save": str(watched)},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        saved.append(answer.json()["saved"])
    assert saved == [str(watched / "pets.jpg"), str(watched / "pets-1.jpg")]
    for path in saved:  # tagged where it was saved: keywords in the file, a record in the index
        assert "dog" in exiftool_keywords(Path(path))["Subject"]
        assert "animal|mammal|dog" in [
            t.path for t in (library.index.get(path) or pytest.fail()).auto
        ]
    assert not [p for p in watched.iterdir() if p.name.startswith(".")]  # no temp file left
    refused = client.post(
        "/api/tag",
        files={"file": ("pets.jpg", data)},
        data={"save": str(tmp_path)},
        headers=headers,
    )
    assert refused.status_code == 422 and "not a watched folder" in refused.json()["detail"]
    nul = client.post(  # a NUL byte once reached realpath and came back as a server error
        "/api/tag", files={"file": ("pets.jpg", data)}, data={"save": "\x00"}, headers=headers
    )
    assert nul.status_code == 422 and "not a watched folder" in nul.json()["detail"]
    junk = client.post(
        "/api/tag",
        files={"file": ("x.jpg", b"not an image")},
        data={"save": str(watched)},
        headers=headers,
    )
    assert junk.status_code == 422 and sorted(watched.iterdir()) == sorted(map(Path, saved))
    page = client.get("/upload")
    assert f'<option value="{watched}">' in page.text


def test_saved_names_are_plain_and_never_overwrite(tmp_path: Path) -> None:
    png = (need_shared(PHOTOS) / "bird.bmp").read_bytes()
    assert file_name("https://example.org/a/b/photo%201%3C.jpg?x=1", b"") == "photo 1_.jpg"
    assert file_name("../../.bashrc", b"") == "bashrc"
    assert file_name("https://example.org/", png) == "photo.bmp"
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a-1.jpg").symlink_to(tmp_path / "nowhere")
    assert unique_path(tmp_path, "a.jpg") == tmp_path / "a-2.jpg"
