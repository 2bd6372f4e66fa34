"""The command line end to end: real model, real photos, real metadata read back by exiftool."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from phototag import cli
from phototag.pipeline import infer
from tests.conftest import exiftool_keywords, mwg_keywords

# Root reads and writes whatever a file's mode says; without these two capabilities
# it meets the same refusals as any user, so the unreadable and read-only cases are real.
AS_USER = (
    [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
    ]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)


def phototag(*args: str, user: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [*(AS_USER if user else []), sys.executable, "-m", "phototag", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture
def album(tmp_path: Path, photos: Path, installed_model: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("cat_720p.jpg", "parrot.jpg", "hot_dog.jpg", "kite_and_cold.jpg"):
        shutil.copyfile(photos / name, folder / name)
    return folder


def test_tag_writes_what_other_programs_read(album: Path) -> None:
    cat = album / "cat_720p.jpg"
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP:Subject=Grandma",
            "-IPTC:Keywords=Grandma",
            str(cat),
        ],
        check=True,
    )
    before = pixels(cat)
    result = phototag("tag", *map(str, sorted(album.iterdir())))
    assert result.returncode == 0, result.stderr
    lines = {Path(line.split(":")[0]).name: line for line in result.stdout.splitlines()}
    assert " cat " in lines["cat_720p.jpg"] + " "
    assert any(t in lines["parrot.jpg"] for t in ("parrot", "bird"))
    assert "hot dog" in lines["hot_dog.jpg"]
    # The photo came with the user's "beach": theirs, so not listed among ours.
    assert "beach" not in lines["kite_and_cold.jpg"]
    assert "beach" in exiftool_keywords(album / "kite_and_cold.jpg")["Subject"]

    seen = exiftool_keywords(cat)
    assert {"cat", "animal", "Grandma"} <= set(seen["Subject"])
    # IPTC: what stands alone; the levels of animal|mammal|cat are not (darktable shows each
    # IPTC keyword as a flat tag), and MWG readers take dc:subject, the digest being current.
    assert seen["Keywords"] == ["Grandma"]
    assert {"cat", "animal", "Grandma"} <= set(mwg_keywords(cat))
    assert "animal|mammal|cat" in seen["HierarchicalSubject"]
    assert "animal/mammal/cat" in seen["TagsList"]
    exiv2 = subprocess.run(["exiv2", "-pa", str(cat)], capture_output=True, text=True).stdout
    assert "Xmp.dc.subject" in exiv2 and "cat" in exiv2 and "Grandma" in exiv2
    np.testing.assert_array_equal(pixels(cat), before)  # image data untouched


def test_dry_run_writes_nothing(album: Path) -> None:
    before = {p: digest(p) for p in album.iterdir()}
    result = phototag("tag", "--dry-run", "--json", str(album / "hot_dog.jpg"))
    assert result.returncode == 0, result.stderr
    assert '"hot dog"' in result.stdout
    assert {p: digest(p) for p in album.iterdir()} == before


def test_scan_shows_progress_and_rescan_infers_nothing(
    tmp_path: Path,
    photos: Path,
    installed_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "many"
    sources = sorted(p for p in photos.iterdir() if p.suffix in (".jpg", ".bmp"))
    for i in range(200):
        sub = folder / f"roll{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        src = sources[i % len(sources)]
        shutil.copyfile(src, sub / f"img_{i:03d}{src.suffix}")
    runs: list[int] = []
    original = infer.Model.run
    monkeypatch.setattr(
        infer.Model, "run", lambda self, px: runs.append(len(px)) or original(self, px)
    )

    assert cli.main(["scan", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # stderr is no terminal here: no bar frames
    assert err.splitlines()[-1].startswith("tagged 200 (") and "unchanged 0," in err
    assert sum(runs) == 200

    runs.clear()
    assert cli.main(["scan", str(folder)]) == 0
    assert "tagged 0 (" in (err := capsys.readouterr().err) and "unchanged 200," in err
    assert runs == []  # nothing was inferred the second time


def test_scan_prints_each_photos_tags_and_a_dry_run_writes_nothing(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in album.iterdir()}
    assert cli.main(["scan", "--dry-run", str(album)]) == 0
    out, err = capsys.readouterr()
    lines = {Path(line.split(":")[0]).name: line for line in out.splitlines()}
    assert set(lines) == set(before)  # one line per photo
    assert "cat" in lines["cat_720p.jpg"] and "->" not in lines["cat_720p.jpg"]
    assert "would tag 4" in err
    assert {p.name: p.read_bytes() for p in album.iterdir()} == before

    assert cli.main(["scan", str(album)]) == 0
    out = capsys.readouterr().out
    cat = next(line for line in out.splitlines() if "cat_720p.jpg:" in line)
    assert "cat" in cat.split(":", 1)[1] and "->" not in cat  # written into the photo itself


def test_moved_photo_keeps_its_record_without_inference(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["scan", str(album)]) == 0
    (album / "sub").mkdir()
    os.rename(album / "parrot.jpg", album / "sub" / "renamed.jpg")
    assert cli.main(["scan", "--json", str(album)]) == 0
    assert "moved 1" in capsys.readouterr().err


def make_bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    good = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(good, "JPEG")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (folder / "text.jpg").write_text("not a photo\n")
    (folder / "dir.jpg").mkdir()
    (folder / "locked.jpg").write_bytes(good.getvalue())
    (folder / "locked.jpg").chmod(0)
    Image.new("1", (30000, 30000)).save(folder / "bomb.png")
    return {
        "empty.jpg": (folder / "empty.jpg", "empty file"),
        "truncated.jpg": (folder / "truncated.jpg", "corrupt image"),
        "text.jpg": (folder / "text.jpg", "not an image"),
        "dir.jpg": (folder / "dir.jpg", "is a directory"),
        "locked.jpg": (folder / "locked.jpg", "permission denied"),
        "bomb.png": (folder / "bomb.png", "decompression bomb"),
        "gone.jpg": (folder / "gone.jpg", "no such file"),
    }


def snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p)] = (
                digest(p) if os.access(p, os.R_OK) and p.stat().st_mode & 0o444 else "unreadable"
            )
    return out


def test_bad_inputs_each_get_one_line_and_others_go_on(tmp_path: Path, album: Path) -> None:
    if not AS_USER and os.geteuid() == 0:
        pytest.skip("needs setpriv to drop root's file-permission override")
    bad = make_bad_inputs(album)
    good = album / "cat_720p.jpg"
    for name, (path, message) in bad.items():
        before = snapshot(album)
        result = phototag("tag", str(path), user=True)
        assert result.returncode != 0, name
        assert result.stderr.count("\n") == 1 and message in result.stderr, (name, result.stderr)
        assert snapshot(album) == before, name
    # All at once with a good photo among them: the good one is tagged, the rest reported.
    result = phototag("tag", *(str(p) for p, _ in bad.values()), str(good), user=True)
    assert result.returncode == 1
    *failures, summary = result.stderr.strip().splitlines()
    assert len(failures) == len(bad) and summary.startswith("tagged 1 (")
    assert f"failed {len(bad)} in " in summary
    assert "cat" in exiftool_keywords(good)["Subject"]


def test_read_only_photo_is_tagged_in_a_sidecar(album: Path) -> None:
    if not AS_USER and os.geteuid() == 0:
        pytest.skip("needs setpriv to drop root's file-permission override")
    photo = album / "hot_dog.jpg"
    photo.chmod(0o444)
    before = digest(photo)
    result = phototag("tag", str(photo), user=True)
    assert result.returncode == 0, result.stderr
    assert digest(photo) == before
    sidecar = album / "hot_dog.jpg.xmp"
    assert "hot dog" in exiftool_keywords(sidecar)["Subject"]


def test_odd_names_and_symlink_loops(album: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = os.fsencode(album) + b"/caf\xe9 " + b"x" * 200 + b".jpg"  # Latin-1, not UTF-8, and long
    shutil.copyfile(album / "cat_720p.jpg", odd)
    (album / "loop").mkdir()
    os.symlink("..", album / "loop" / "up")
    assert (
        cli.main(
            [
                "--config",
                str(write_config(album, "scan:\n  follow_symlinks: true\n")),
                "scan",
                str(album),
            ]
        )
        == 0
    )
    assert "tagged 5" in capsys.readouterr().err
    assert "cat" in exiftool_keywords(Path(os.fsdecode(odd)))["Subject"]


def write_config(folder: Path, text: str) -> Path:
    path = folder.parent / "config.yaml"
    path.write_text(text)
    return path


def test_missing_model_says_how_to_get_it(tmp_path: Path) -> None:
    result = phototag("tag", str(tmp_path / "x.jpg"))
    assert result.returncode == 2
    assert "phototag models pull mobilenet-v2" in result.stderr
    assert "phototag models import" in result.stderr


def test_help_teaches(tmp_path: Path) -> None:
    result = phototag("--help")
    assert "phototag models pull mobilenet-v2" in result.stdout and "scan" in result.stdout


def test_models_pull_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`models pull` end to end against a local mirror of the shared models (never the internet)."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    from tests.conftest import MODELS, need_shared
    from tests.localserver import serve

    handler = partial(SimpleHTTPRequestHandler, directory=str(need_shared(MODELS)))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    with serve(handler) as url:  # type: ignore[arg-type]
        monkeypatch.setenv("PHOTOTAG_MODEL_MIRROR", url)
        assert cli.main(["models", "pull", "mobilenet-v2@tf1-quant"]) == 0
        assert "installed mobilenet-v2@tf1-quant" in capsys.readouterr().out
        # several at once; an unknown one gets its line and the others are still pulled
        assert (
            cli.main(["models", "pull", "no-such-model", "inat-bird", "mobilenet-v2@tf1-quant"])
            == 2
        )
    out, err = capsys.readouterr()
    assert err.startswith("phototag: unknown model 'no-such-model'")
    assert [line for line in err.splitlines() if line.startswith("phototag")] == [
        err.splitlines()[0]
    ]
    assert out.splitlines()[0].startswith("installed inat-bird@")
    assert out.splitlines()[1].startswith("mobilenet-v2@tf1-quant is already installed")
    assert cli.main(["models", "list"]) == 0
    assert "mobilenet-v2@tf1-quant       installed" in capsys.readouterr().out


def test_tag_url_prints_tags_and_writes_nothing(
    tmp_path: Path, photos: Path, installed_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tag URL --dry-run` against a local server; private addresses need the config's consent."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    from tests.localserver import serve

    handler = partial(SimpleHTTPRequestHandler, directory=str(photos))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    with serve(handler) as url:  # type: ignore[arg-type]
        assert cli.main(["tag", "--dry-run", f"{url}/parrot.jpg"]) == 1
        refused = capsys.readouterr().err
        assert refused.startswith(f"phototag: {url}/parrot.jpg: refused, 127.0.0.1 is a private")
        assert "fetch.allow_private" in refused and refused.count("\n") == 1
        allow = write_config(tmp_path / "x", "fetch:\n  allow_private: true\n")
        assert cli.main(["--config", str(allow), "tag", "--dry-run", f"{url}/parrot.jpg"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{url}/parrot.jpg: ") and ("parrot" in out or "bird" in out)
    assert not list(tmp_path.rglob("*.xmp"))
