"""Issue 16: the command line as a newcomer meets it, each item through `cli.main`."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from phototag import cli
from phototag.cli import common
from tests.conftest import exiftool, exiftool_keywords


@pytest.fixture
def album(tmp_path: Path, photos: Path, installed_model: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("cat_720p.jpg", "parrot.jpg"):
        shutil.copyfile(photos / name, folder / name)  # copyfile: writable copies
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_undo_sticks_whatever_the_mtime(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 1: an undone photo stays undone after another program touches it, until --force."""
    cat = album / "cat_720p.jpg"
    assert run(capsys, "scan", str(album))[0] == 0
    rc, out, err = run(capsys, "undo", str(cat))
    assert rc == 0 and "removed cat" in out
    exiftool(cat, "-XMP-xmp:Rating=3")
    os.utime(cat)
    rc, out, err = run(capsys, "scan", str(album))
    assert rc == 0 and out == ""
    assert "1 undone photos left untagged (`scan --force` re-tags them)" in err
    assert "cat" not in exiftool_keywords(cat)["Subject"]
    rc, out, err = run(capsys, "scan", "--force", str(album))
    assert rc == 0 and "cat_720p.jpg: cat " in out
    assert "cat" in exiftool_keywords(cat)["Subject"]


def test_output_lists_what_the_file_holds(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 2: a tag the user deleted is neither printed nor reported; its parents go with it."""
    cat = album / "cat_720p.jpg"
    assert run(capsys, "tag", str(cat))[0] == 0
    assert {"cat", "mammal", "animal"} <= set(exiftool_keywords(cat)["Subject"])
    exiftool(cat, "-XMP:Subject-=cat", "-IPTC:Keywords-=cat")
    rc, out, _ = run(capsys, "scan", "--force", "--json", str(album))
    photo, _parrot, summary = (json.loads(line) for line in out.splitlines())
    assert rc == 0 and photo["path"] == str(cat)
    assert photo["tags"] == [] and photo["error"] is None
    assert summary["summary"]["tagged"] == 2
    rc, out, _ = run(capsys, "tag", str(cat))
    assert out == f"{cat}: (no confident tags)\n"
    seen = exiftool_keywords(cat)
    # Our parents were there for the leaf alone: deleting the leaf deletes them too.
    assert seen["Subject"] == [] and seen["HierarchicalSubject"] == [] and seen["Keywords"] == []
    rc, out, _ = run(capsys, "show", "--json", str(cat))
    assert json.loads(out)["deleted_by_you"] == ["cat"]


def test_show_one_photo(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 4: every keyword by whose it is, where it lives, the record; --json."""
    cat = album / "cat_720p.jpg"
    exiftool(cat, "-XMP:Subject=Grandma", "-IPTC:Keywords=Grandma")
    assert run(capsys, "tag", str(cat))[0] == 0
    rc, out, _ = run(capsys, "show", str(cat))
    lines = out.splitlines()
    assert rc == 0 and lines[0] == str(cat)
    assert lines[1] == f"  keywords in: {cat}"
    assert lines[2] == "  yours: Grandma"
    assert lines[3].startswith("  phototag's: animal|mammal|cat 0.")
    assert "(model mobilenet-v2@tf1-quant:" in lines[3]
    assert lines[4] == "  deleted by you: -"
    assert lines[5].startswith("  index: 1280x720, ") and "tagged 20" in lines[5]
    rc, out, _ = run(capsys, "show", "--json", str(cat), str(album / "gone.jpg"))
    doc, gone = (json.loads(line) for line in out.splitlines())
    assert rc == 1 and doc["yours"] == ["Grandma"] and not doc["sidecar"]
    assert [t["path"] for t in doc["phototag"]] == ["animal|mammal|cat"]
    assert doc["record"]["width"] == 1280 and doc["detections"] == []
    assert gone["path"] == str(album / "gone.jpg") and gone["error"]


def test_tags_lists_the_vocabulary(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 5: every tag with its photo count, as a tree; --source; --json."""
    exiftool(album / "cat_720p.jpg", "-XMP:Subject=Grandma")
    assert run(capsys, "scan", str(album))[0] == 0
    rc, out, _ = run(capsys, "tags")
    assert rc == 0
    assert out.splitlines() == [
        "     1  Grandma",
        "     2  animal",
        "     1    bird",
        "     1      parrot",
        "     1    mammal",
        "     1      cat",
    ]
    assert run(capsys, "tags", "--source", "user")[1] == "     1  Grandma\n"
    doc = json.loads(run(capsys, "tags", "--json", "--source", "auto")[1])
    assert {"tag": "animal", "photos": 2} in doc["tags"] and len(doc["tags"]) == 5


def test_options_after_the_command_and_bare_help(
    album: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 6: -c/-q/-v/--json after the command; `phototag` alone prints the help."""
    config = tmp_path / "config.yaml"
    config.write_text("write:\n  mode: sidecar\n")
    rc, out, _err = run(capsys, "scan", "-q", "--config", str(config), str(album))
    assert rc == 0 and (album / "cat_720p.jpg.xmp").exists()
    assert f"-> {album / 'cat_720p.jpg.xmp'}" in out
    rc, out, _ = run(capsys, "-q", "tags", "--json")  # before and after at once
    assert rc == 0 and json.loads(out)["tags"]
    rc, out, _ = run(capsys)
    assert rc == 0 and out.startswith("usage: phototag") and "first steps:" in out


def test_logs_get_no_bar_frames(
    album: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 7: stderr not a terminal: no frames, a plain progress line at most every 10 s."""
    rc, out, err = run(capsys, "scan", str(album))
    assert (
        rc == 0
        and len(out.splitlines()) == 2
        and "\r" not in err
        and "it/s" not in err
        and "%|" not in err
    )
    assert err.count("\n") == 1 and err.startswith("tagged 2 ")
    assert common.LOG_EVERY_S == 10
    monkeypatch.setattr(common, "LOG_EVERY_S", 0)
    rc, _out, err = run(capsys, "scan", "--force", str(album))
    assert err.splitlines()[:2] == ["phototag: photos 1/2", "phototag: photos 2/2"]


def test_tag_many_files_has_the_scan_summary(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items 8 and 10: tag ends as scan does; an empty folder and a missing one say so."""
    rc, out, err = run(capsys, "tag", *map(str, sorted(album.iterdir())))
    assert rc == 0 and len(out.splitlines()) == 2
    assert err.startswith(
        "tagged 2 (2 written into the photo, 0 into a sidecar, 0 already as they were), "
        "unchanged 0, moved 0, failed 0 in "
    )
    assert err.rstrip().endswith(" photos/s)")
    (album / "empty").mkdir()
    assert run(capsys, "scan", str(album / "empty")) == (
        0,
        "",
        f"phototag: no photos found under {album / 'empty'}\n",
    )
    assert run(capsys, "scan", "/nonexistent") == (
        2,
        "",
        "phototag: /nonexistent: no such file or folder\n",
    )


def test_json_reports_failures(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 9: a failure is in the JSON (an `error` field) as well as on stderr."""
    (album / "text.jpg").write_text("not a photo\n")
    rc, out, err = run(capsys, "scan", "--json", str(album))
    docs = [json.loads(line) for line in out.splitlines()]
    assert rc == 1
    bad = next(d for d in docs if d.get("path", "").endswith("text.jpg"))
    assert "not an image" in bad["error"] and "not an image" in err
    assert docs[-1]["summary"]["failed"] == 1 and docs[-1]["summary"]["tagged"] == 2


def test_arrow_only_for_sidecars_and_unchanged_retag_keeps_mtime(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 14: `-> PATH` only for a sidecar; an unchanged re-tag writes nothing."""
    cat = album / "cat_720p.jpg"
    rc, out, _ = run(capsys, "tag", str(cat))
    assert rc == 0 and "->" not in out and out.startswith(f"{cat}: cat 0.")
    mtime = cat.stat().st_mtime_ns
    rc, out, err = run(capsys, "tag", "--json", str(cat))
    assert json.loads(out)["written_to"] is None and err == ""  # one photo: no summary
    assert run(capsys, "scan", "--force", str(album))[2].startswith(
        "tagged 2 (1 written into the photo, 0 into a sidecar, 1 already as they were)"
    )
    assert cat.stat().st_mtime_ns == mtime
    fresh = album / "parrot2.jpg"  # not tagged yet (a tagged photo's keywords are already in it)
    shutil.copyfile(album / "parrot.jpg", fresh)
    exiftool(fresh, "-all=")
    rc, out, _ = run(capsys, "tag", "--sidecar", str(fresh))
    assert out.rstrip().endswith(f"  -> {album / 'parrot2.jpg.xmp'}")


def test_search_reads_words_plurals_and_exits_1_on_no_match(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 12: unquoted words are ANDed, `cats` finds `cat`, a split tag is named, grep's 1."""
    exiftool(album / "parrot.jpg", "-XMP:Subject=Brazil Trip")
    assert run(capsys, "scan", str(album))[0] == 0
    assert run(capsys, "search", "animal", "mammal") == (0, f"{album / 'cat_720p.jpg'}\n", "")
    rc, out, err = run(capsys, "search", "cats")
    assert (rc, out) == (0, f"{album / 'cat_720p.jpg'}\n")
    assert err == "phototag: no photo is tagged 'cats'; searching 'cat'\n"
    rc, out, err = run(capsys, "search", "Brazil Trip")
    assert (rc, out) == (1, "")
    assert err.splitlines()[-1] == (
        'phototag: a tag "brazil trip" exists: quote it, as in \'"brazil trip"\''
    )
    assert run(capsys, "search", '"Brazil Trip"') == (0, f"{album / 'parrot.jpg'}\n", "")
    assert run(capsys, "search", "cat", "parrot")[0] == 1
    rc, _, err = run(capsys, "search", "cat AND")
    assert rc == 2 and err.splitlines()[0].endswith("at column 8")  # after "cat AND", from 1


def test_accepted_keyword_is_the_users_never_ours(
    album: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items 3 and 14: after `suggest --accept`, refine adds nothing and undo leaves it."""
    cat = album / "cat_720p.jpg"
    assert run(capsys, "tag", str(cat))[0] == 0
    rc, out, _ = run(capsys, "suggest", "--accept", "animal|mammal|cat", str(cat))
    assert (rc, out) == (0, f"{cat}: cat is now your keyword\n")  # the path once
    config = tmp_path / "config.yaml"
    config.write_text("tagging:\n  threshold: 0.1\n")  # a new threshold: refine re-scores
    rc, out, err = run(capsys, "-c", str(config), "refine")
    assert rc == 0 and "+cat" not in out and "refined 1:" in err
    doc = json.loads(run(capsys, "show", "--json", str(cat))[1])
    assert "cat" in doc["yours"] and "cat" not in [t["tag"] for t in doc["phototag"]]
    rc, out, _ = run(capsys, "undo", "-n", str(cat))
    assert "cat" not in out.split(":", 1)[-1].replace(",", " ").split()
    assert run(capsys, "undo", str(cat))[0] == 0
    assert "cat" in exiftool_keywords(cat)["Subject"]


def test_models_pull_says_installed_or_unreachable(
    installed_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 11: an installed model is said to be; an unreachable URL names the ways out."""
    rc, out, _ = run(capsys, "models", "pull", "mobilenet-v2@tf1-quant")
    assert (rc, out) == (0, f"mobilenet-v2@tf1-quant is already installed -> {installed_model}\n")
    monkeypatch.setenv("PHOTOTAG_MODEL_MIRROR", "http://127.0.0.1:9")  # discard port: refused
    rc, out, err = run(capsys, "-q", "models", "pull", "mobilenet-v2@tf2-ptq")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("phototag: cannot download mobilenet-v2@tf2-ptq from http://127.0.0.1:9/")
    assert "`phototag models import FILE`" in err and "PHOTOTAG_MODEL_MIRROR" in err
    assert "again" not in err
    doc = json.loads(run(capsys, "models", "list", "--json")[1])
    (v1,) = [m for m in doc["models"] if m["model"] == "mobilenet-v2@tf1-quant"]
    assert v1["installed"] is True and v1["newest"] is False


def test_status_json_and_iso_dates(capsys: pytest.CaptureFixture[str]) -> None:
    """Items 9 and 13: `status --json` is one document; dates are ISO 8601, local time."""
    from phototag.records import local_time
    from phototag.service.daemon import JobError, ServiceStatus, describe

    rc, out, _ = run(capsys, "status", "--json")
    assert rc == 3 and json.loads(out) == {"service": None, "backfill": None}
    st = ServiceStatus(1, 1.7e9, 1.7e9 + 60, "idle", ["/p"], [], "m")
    st.errors = [JobError(1.7e9 + 30, Path("/p/x.jpg"), "not an image", True)]
    text = describe(st)
    assert f"(last seen {local_time(1.7e9 + 60)})" in text
    assert f"  {local_time(1.7e9 + 30)} /p/x.jpg: not an image" in text
    assert datetime.fromisoformat(local_time(1.7e9)).timestamp() == 1.7e9  # offset included


def test_service_status_counts_photos_and_gives_up_on_a_non_image_at_once(
    album: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 13, with the real service: a photo is one done (not its own write's event too), a
    text file named .jpg fails once and for good with its reason, `idle` means nothing waits,
    and every date (status, JSON, log) is ISO 8601 in local time."""
    watched = tmp_path / "watched"
    watched.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"watch:\n  folders: [{watched}]\n  settle_s: 0.5\nweb:\n  enabled: false\n")
    from tests.test_service_e2e import ServiceProcess

    service = ServiceProcess(config, tmp_path / "service.log")
    proc, log = service.proc, service.log

    def status() -> dict | None:
        rc, out, _ = run(capsys, "status", "--json")
        doc = json.loads(out)["service"]
        assert service.alive()
        return doc if rc == 0 and doc["pid"] == proc.pid else None

    def until(check: Callable[[dict], bool], what: str) -> dict:
        deadline = time.monotonic() + 90
        while (doc := status()) is None or not check(doc):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {doc}"
            time.sleep(0.1)
        return doc

    try:
        until(lambda d: d["state"] == "idle", "the service to start")
        shutil.copyfile(album / "cat_720p.jpg", watched / "cat.jpg")
        (watched / "notes.jpg").write_text("a shopping list, not a photo\n")
        doc = until(lambda d: d["done"] + d["failed"] == 2 and d["state"] == "idle", "both")
        time.sleep(1.5)  # longer than settle_s: our own write's event has come back
        doc = until(lambda d: d["state"] == "idle", "idle again")
        rc, text, _ = run(capsys, "status")
    finally:
        service.stop()
    assert (doc["done"], doc["failed"], doc["retried"], doc["queued"]) == (1, 1, 0, 0)
    assert doc["unchanged"] >= 1  # the event of our own keyword write, not counted as done
    (error,) = doc["errors"]
    assert error["path"] == str(watched / "notes.jpg") and error["final"] is True
    assert error["message"] == "not an image Pillow can read (unknown or fake format)"
    for when in (doc["started"], doc["updated"], error["at"]):
        assert datetime.fromisoformat(when).utcoffset() is not None, when
    assert rc == 0
    assert text.splitlines()[0] == (
        f"phototag service: running (pid {proc.pid}, since {doc['started']}), idle"
    )
    assert "1 photos done, 1 failed, 0 retries" in text
    assert f"  {error['at']} {watched / 'notes.jpg'}: not an image" in text
    lines = log.read_text().splitlines()
    assert [line for line in lines if "notes.jpg" in line] == [
        next(line for line in lines if "notes.jpg: not an image" in line)
    ]
    assert "(giving up)" in next(line for line in lines if "notes.jpg" in line)
    for line in lines:  # each log line starts with its ISO 8601 local time
        assert datetime.fromisoformat(line.split(" ", 1)[0]).utcoffset() is not None, line


def test_refine_and_undo_speak_json(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 9: `refine --json` and `undo --json` are JSON lines (a photo each, failures with
    their `error`), then one summary line; the exit status is what it is without --json."""
    from phototag import catalogue
    from tests.conftest import MODEL_V2, need_shared

    cat, parrot = album / "cat_720p.jpg", album / "parrot.jpg"
    assert run(capsys, "-q", "scan", str(album))[0] == 0
    catalogue.import_file(need_shared(MODEL_V2))  # a newer version: both need re-analysis
    rc, out, _ = run(capsys, "refine", "-n", "--json")
    assert rc == 0 and [json.loads(line) for line in out.splitlines()] == [
        {"summary": {"reanalyse": 2, "rescore": 0, "current": 0}
         | {"changed": 0, "failed": 0, "dry_run": True}}
    ]  # fmt: skip
    rc, out, _ = run(capsys, "-q", "refine", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and lines[-1]["summary"]["reanalyse"] == 2
    changed = lines[:-1]
    assert lines[-1]["summary"]["changed"] == len(changed) and lines[-1]["summary"]["failed"] == 0
    for doc in changed:
        assert set(doc) == {"path", "added", "removed", "written_to", "error"}
        assert doc["added"] or doc["removed"]
        assert doc["error"] is None and doc["written_to"] == doc["path"]

    ours = {p: exiftool_keywords(p)["Subject"] for p in (cat, parrot)}
    rc, out, err = run(capsys, "undo", "--json", str(cat), str(album / "gone.jpg"))
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and "gone.jpg: no such file" in err
    gone, undone, summary = lines
    assert gone["path"] == str(album / "gone.jpg") and gone["error"].startswith("no such file")
    assert undone["path"] == str(cat) and undone["error"] is None
    assert undone["written_to"] == str(cat) and undone["dry_run"] is False
    assert set(undone["removed"]) >= set(ours[cat])  # every keyword it had was ours
    assert exiftool_keywords(cat)["Subject"] == []
    assert summary == {"summary": {"undone": 1, "failed": 1, "dry_run": False}}
    rc, out, _ = run(capsys, "undo", "-n", "--json", str(parrot))
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and lines[0]["dry_run"] is True and set(lines[0]["removed"]) >= set(ours[parrot])
    assert lines[-1] == {"summary": {"undone": 1, "failed": 0, "dry_run": True}}
    assert exiftool_keywords(parrot)["Subject"] == ours[parrot]  # a dry run changes nothing
