"""Issue 17: bad input, bad settings, full disks: one clear line each, and nothing damaged."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from phototag import cli
from phototag.files import fileio, safeopen
from phototag.library.sqlindex import SqliteIndex
from tests.conftest import exiftool_keywords


def digest(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture
def album(tmp_path: Path, photos: Path, installed_model: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("cat_720p.jpg", "parrot.jpg"):
        shutil.copyfile(photos / name, folder / name)
    return folder


def config_file(folder: Path, text: str) -> str:
    path = folder.parent / "config.yaml"
    path.write_text(text)
    return str(path)


def one_line_errors(err: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.startswith("phototag: ")]
    assert "Traceback" not in err
    return lines


# ---- 1, 2: only regular files, bounded reads -------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with pytest.raises(safeopen.UnsafeFile, match="not a regular file"):
        safeopen.read_regular(fifo, 1000)


def test_web_thumbnail_of_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    from phototag.web import thumbs

    os.mkfifo(tmp_path / "x.jpg")
    with pytest.raises(safeopen.UnsafeFile, match="not a regular file"):
        thumbs.thumbnail(tmp_path / "x.jpg", 64, 1000)


def test_character_device_and_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(safeopen.UnsafeFile, match="not a regular file"):
        safeopen.read_regular(Path("/dev/zero"), 1000)
    big = tmp_path / "big.jpg"
    with big.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GB that take no room
    with pytest.raises(safeopen.UnsafeFile, match="file too large"):
        safeopen.read_regular(big, safeopen.DEFAULT_MAX_BYTES)
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 10)
    assert safeopen.read_regular(small, 10)[0] == b"x" * 10
    with pytest.raises(safeopen.UnsafeFile, match="too large"):
        safeopen.read_regular(small, 9)


def test_fifo_in_tag_and_dry_run_is_one_line_and_the_photo_beside_it_is_tagged(
    album: Path,
) -> None:
    os.mkfifo(album / "x.jpg")
    for extra in ([], ["--dry-run"]):
        run = subprocess.run(
            [sys.executable, "-m", "phototag", "tag", *extra, str(album / "x.jpg"),
             str(album / "cat_720p.jpg")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        errors = one_line_errors(run.stderr)
        assert len(errors) == 1 and "x.jpg: not a regular file" in errors[0]
        assert "cat" in run.stdout
    assert "cat" in exiftool_keywords(album / "cat_720p.jpg")["Subject"]
    for command in (["similar"], ["suggest", "--accept", "animal|mammal|cat"]):
        run = subprocess.run(
            [sys.executable, "-m", "phototag", *command, str(album / "x.jpg")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode != 0 and "not a regular file" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr


def test_file_over_max_file_bytes_is_refused_and_the_others_are_tagged(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (album / "huge.jpg").open("wb") as f:
        f.truncate(8 << 30)  # 8 GB, sparse
    assert cli.main(["scan", str(album)]) == 1
    err = capsys.readouterr().err
    errors = one_line_errors(err)
    assert any("huge.jpg: file too large" in e and "scan.max_file_bytes" in e for e in errors)
    assert "tagged 2" in err
    size = (album / "parrot.jpg").stat().st_size
    cfg = config_file(album, f"scan:\n  max_file_bytes: {size - 1}\n")
    assert cli.main(["-c", cfg, "tag", str(album / "parrot.jpg")]) == 1
    assert "parrot.jpg: file too large" in capsys.readouterr().err


# ---- 3 (our part): stale temp files ---------------------------------------------------------


def test_the_file_tag_layer_keeps_to_the_configured_max_file_bytes(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2: `show`, `undo` and `suggest --accept` read keywords under scan.max_file_bytes too."""
    cat = album / "cat_720p.jpg"
    assert cli.main(["-q", "scan", str(album)]) == 0
    size = cat.stat().st_size
    small = config_file(album, f"scan:\n  max_file_bytes: {size - 1}\n")
    tagged = digest(cat)
    reason = f"file too large ({size:,} bytes, limit scan.max_file_bytes {size - 1:,}); not read"
    for command in (["show"], ["undo"], ["suggest", "--accept", "Grandma"]):
        capsys.readouterr()
        assert cli.main(["-c", small, *command, str(cat)]) != 0, command
        errors = one_line_errors(capsys.readouterr().err)
        assert len(errors) == 1 and errors[0].endswith(reason), (command, errors)
        assert digest(cat) == tagged  # refused unread, nothing written
    assert cli.main(["-c", config_file(album, ""), "show", str(cat)]) == 0  # the default reads it


def test_scan_and_undo_remove_our_stale_temp_files_only(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = time.time() - fileio.STALE_TEMP_S - 1
    for command in (["scan"], ["undo"]):
        stale = album / ".cat_720p.jpg.1a2b3c4d.phototag-tmp"
        live = album / ".parrot.jpg.5e6f7a8b.phototag-tmp"  # maybe another phototag's write
        stale.write_bytes(b"half")
        live.write_bytes(b"half")
        os.utime(stale, (old, old))
        assert cli.main([*command, str(album)]) == 0, capsys.readouterr().err
        assert not stale.exists() and live.exists()
        live.unlink()


def vector_stores(index: SqliteIndex) -> dict[str, tuple[int, int]]:
    """Each vector store the records use: its row width and the rows its file holds."""
    dims = {n: int(index.meta(f"dim:{n}") or 0) for r in index.records() for n in r.vectors}
    return {n: (d, index._store_path(n).stat().st_size // (2 * d)) for n, d in dims.items()}


def test_orphaned_vector_rows_are_compacted_after_kills(
    tmp_path: Path,
    photos: Path,
    installed_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3: rows of killed scans (and of re-tags) pile up; the next writer alone drops them."""
    from phototag.config import Config
    from phototag.library import compact

    album = tmp_path / "album"
    album.mkdir()
    for i in range(16):
        shutil.copyfile(photos / ("cat_720p.jpg", "parrot.jpg")[i % 2], album / f"p{i:02d}.jpg")
    cfg = config_file(album, "model:\n  batch_size: 2\n")
    kills = 0
    for _ in range(3):  # kill -9 once photos come out: their batch's rows are not committed
        proc = subprocess.Popen(
            [sys.executable, "-m", "phototag", "-q", "-c", cfg, "scan", str(album)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.kill()
        kills += proc.wait() == -9
    assert kills >= 1
    # A forced re-tag leaves every photo's old rows behind too; no compaction while another
    # has the index open (here a reader, as a running service would).
    index_dir = Config().index_dir
    with SqliteIndex(index_dir, readonly=True):
        assert cli.main(["-q", "-c", cfg, "scan", "--force", str(album)]) == 0
    with SqliteIndex(index_dir, readonly=True) as index:
        stores = vector_stores(index)
        records = {r.path: r for r in index.records()}
        vectors = {
            (r.path, n): index.store(n, stores[n][0]).get([row])
            for r in records.values()
            for n, row in r.vectors.items()
        }
    assert len(records) == 16 and all(rows > 16 for _, rows in stores.values()), stores

    monkeypatch.setattr(compact, "ORPHAN_SHARE", 0.0)  # any orphan (the share: a unit test)
    capsys.readouterr()
    assert cli.main(["-q", "-v", "-c", cfg, "scan", str(album)]) == 0  # alone: compacts at open
    err = capsys.readouterr().err
    for name, (_, rows) in stores.items():  # said with -v (and in the service's log)
        assert f"phototag: index: dropped {rows - 16} of {rows} {name} rows no photo uses" in err
    with SqliteIndex(index_dir, readonly=True) as index:
        assert vector_stores(index) == {
            n: (d, 16) for n, (d, _) in stores.items()
        }  # rows == records
        after = {r.path: r for r in index.records()}
        assert after.keys() == records.keys()
        for (path, name), vector in vectors.items():  # every photo keeps its own vectors
            got = index.store(name, stores[name][0]).get([after[path].vectors[name]])
            np.testing.assert_array_equal(got, vector)
    assert sorted(p.name for p in index_dir.glob("*.f16")) == sorted(
        f"{n}.1.f16" for n in stores
    )  # the old files are gone, no temp file is left


def test_a_store_is_rewritten_from_a_quarter_of_orphans() -> None:
    from phototag.library.compact import worth_it

    assert not worth_it(100, 100) and not worth_it(76, 100) and worth_it(75, 100)
    assert worth_it(0, 3)


# ---- 4: index write errors ------------------------------------------------------------------


def test_full_disk_at_the_index_is_one_line_and_the_rerun_is_consistent(
    album: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(SqliteIndex, "put_many", full)
        assert cli.main(["scan", str(album)]) == 2
    errors = one_line_errors(capsys.readouterr().err)
    assert errors[-1] == "phototag: No space left on device; stopped here"
    assert cli.main(["scan", str(album)]) == 0
    assert "tagged 2" in capsys.readouterr().err
    subject = exiftool_keywords(album / "cat_720p.jpg")["Subject"]
    assert "cat" in subject and len(subject) == len(set(subject))


# ---- 5: settings checked before any command runs --------------------------------------------


@pytest.mark.parametrize("command", [["scan", "."], ["watch"], ["search", "cat"]])
def test_bad_setting_stops_every_command_with_one_line(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scan:\n  workers: -3\n")
    assert cli.main(["-c", str(cfg), *command]) == 2
    errors = one_line_errors(capsys.readouterr().err)
    assert errors == [f"phototag: {cfg}: scan.workers must be between 0 and 256, not -3"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model:\n  name: ' '", "model.name: ' ' must not be empty"),
        ("detector:\n  threshold: 1.5", "detector.threshold must be between 0 and 1, not 1.5"),
        ("detector:\n  iou: -0.1", "detector.iou must be between 0 and 1, not -0.1"),
        ("specialists:\n  gate: 2", "specialists.gate must be between 0 and 1, not 2.0"),
        ("specialists:\n  names: ['']", "specialists.names: '' must not be empty"),
        ("tags:\n  thresholds: {kite: 5}", "tags.thresholds.kite must be between 0 and 1, not 5.0"),
        (
            "tags:\n  rename: {'a||b': c}",
            "tags.rename: 'a||b' must be a tag or a path such as animal|bird, without an empty level",
        ),
        ("tags:\n  thresholds: {kite: .nan}", "tags.thresholds.kite must be a number, not nan"),
        ("index:\n  path: ''", "index.path: '' must not be empty"),
        ("watch:\n  include: ['']", "watch.include: '' must not be empty"),
        (
            "web:\n  listen: localhost",
            "web.listen: 'localhost' must be host:port with a port from 1 to 65535, e.g. "
            "127.0.0.1:8765",
        ),
        (
            "web:\n  listen: '127.0.0.1:70000'",
            "web.listen: '127.0.0.1:70000' must be host:port with a port from 1 to 65535, e.g. "
            "127.0.0.1:8765",
        ),
        ("web:\n  login_attempts: 0", "web.login_attempts must be between 1 and 10000, not 0"),
        ("web:\n  max_upload_bytes: -1", "web.max_upload_bytes must be at least 1, not -1"),
        ("web:\n  session_hours: 0", "web.session_hours must be between 0.01 and 8784, not 0.0"),
        (
            "places:\n  root: 'a|b'",
            "places.root: 'a|b' must be one tag level, not empty and without |",
        ),
        ("places:\n  max_km: -1", "places.max_km must be between 0.01 and 20000, not -1.0"),
        ("places:\n  city_population: -5", "places.city_population must be at least 0, not -5"),
    ],
)
def test_each_section_checks_its_values_with_one_line_naming_the_key(
    tmp_path: Path, setting: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(setting + "\n")
    assert cli.main(["--config", str(bad), "status"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and one_line_errors(err) == [f"phototag: {bad}: {message}"]
    assert err.count("\n") == 1


# ---- 6: 255-byte names ----------------------------------------------------------------------


def test_255_byte_name_is_tagged_in_place_or_refused_with_the_reason(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = album / ("c" * 251 + ".jpg")
    assert len(os.fsencode(long.name)) == 255
    shutil.copyfile(album / "cat_720p.jpg", long)
    assert cli.main(["tag", str(long)]) == 0, capsys.readouterr().err
    assert "cat" in exiftool_keywords(long)["Subject"]
    assert not [p for p in album.iterdir() if fileio.is_temp(p.name)]
    before = digest(long)
    assert cli.main(["tag", "--sidecar", str(long)]) == 1
    errors = one_line_errors(capsys.readouterr().err)
    assert "file name too long for a sidecar" in errors[0]
    assert digest(long) == before


# ---- 7: the smaller ones --------------------------------------------------------------------


def test_newline_in_a_name_is_escaped_in_output(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.move(album / "parrot.jpg", album / "par\nrot.jpg")
    assert cli.main(["scan", str(album)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert any("par\\nrot.jpg: " in line for line in out)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/a.jpg", "gopher://x/1", "data:image/png;base64,AA"],
)
def test_other_url_schemes_are_refused_as_urls(
    url: str, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tag", url]) == 1
    errors = one_line_errors(capsys.readouterr().err)
    assert errors == [
        f"phototag: {url}: unsupported URL: only http:// and https:// URLs are fetched (give a file as a path)"
    ]


def test_undo_dir_ignores_non_images_it_never_touched(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["scan", str(album)]) == 0
    (album / "notes.jpg").write_text("not a photo\n")
    assert cli.main(["undo", str(album)]) == 0, capsys.readouterr().err
    assert "cat" not in exiftool_keywords(album / "cat_720p.jpg").get("Subject", [])
    assert (album / "notes.jpg").read_text() == "not a photo\n"


def test_file_symlink_below_a_root_is_not_followed_by_default(
    album: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(album / "parrot.jpg", outside / "parrot.jpg")
    os.symlink(outside / "parrot.jpg", album / "link.jpg")
    before = digest(outside / "parrot.jpg")
    assert cli.main(["scan", str(album)]) == 0
    assert "tagged 1" in capsys.readouterr().err
    assert digest(outside / "parrot.jpg") == before
    cfg = config_file(album, "scan:\n  follow_symlinks: true\n")
    assert cli.main(["-c", cfg, "scan", str(album)]) == 0
    assert "tagged 1" in capsys.readouterr().err
    assert digest(outside / "parrot.jpg") != before


def test_the_watcher_follows_symlinks_as_scan_does(
    tmp_path: Path, photos: Path, installed_model: Path
) -> None:
    """7: `phototag watch` walks with scan's symlink rule: by default a file or folder link
    below a watched folder is left alone (nothing outside is written); followed when asked,
    each real folder once (a link loop ends)."""
    from phototag.config import Config
    from phototag.library.index import open_index
    from tests.test_service_e2e import ServiceProcess

    watched, outside = tmp_path / "watched", tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    watched.mkdir()
    shutil.copyfile(photos / "cat_720p.jpg", watched / "real.jpg")
    shutil.copyfile(photos / "owl.jpg", outside / "owl.jpg")
    shutil.copyfile(photos / "parrot.jpg", outside / "folder" / "parrot.jpg")
    (watched / "link.jpg").symlink_to(outside / "owl.jpg")
    (watched / "linked").symlink_to(outside / "folder")
    (watched / "loop").symlink_to(watched)
    before = {p: digest(p) for p in (outside / "owl.jpg", outside / "folder" / "parrot.jpg")}

    def serve(follow: bool, photos: int) -> set[str]:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"watch:\n  folders: [{watched}]\n  settle_s: 0.5\nweb:\n  enabled: false\n"
            f"scan:\n  follow_symlinks: {str(follow).lower()}\n"
        )
        service = ServiceProcess(cfg, tmp_path / "service.log")
        try:
            service.wait_started()
            deadline = time.monotonic() + 90
            while not (service.idle() and service.status().done >= photos):  # type: ignore[union-attr]
                assert service.alive() and time.monotonic() < deadline, service.text()
                time.sleep(0.1)
        finally:
            service.stop()
        with open_index(Config().index_dir, readonly=True) as index:
            return {os.path.relpath(p, watched) for p in index.paths()}

    assert serve(False, 1) == {"real.jpg"}
    assert {p: digest(p) for p in before} == before  # nothing outside was written
    assert serve(True, 3) == {"real.jpg", "link.jpg", "linked/parrot.jpg"}


def _xmp_segment(keyword: str) -> bytes:
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
        f"<rdf:li>{keyword}</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF>"
        '</x:xmpmeta><?xpacket end="w"?>'
    ).encode()
    body = b"http://ns.adobe.com/xap/1.0/\0" + packet
    return b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body


def test_two_xmp_packets_are_left_alone_with_the_reason(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """exiv2 sees only the first packet: a rewrite would hide or drop the second's keyword."""
    photo = album / "cat_720p.jpg"
    data = photo.read_bytes()
    photo.write_bytes(data[:2] + _xmp_segment("first") + _xmp_segment("mine") + data[2:])
    before = digest(photo)
    assert cli.main(["tag", str(photo)]) == 1
    errors = one_line_errors(capsys.readouterr().err)
    assert len(errors) == 1 and "holds 2 XMP packets" in errors[0]
    assert digest(photo) == before
