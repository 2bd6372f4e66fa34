"""Every `phototag` command in the README, run in order on a real library: exit status and
first line of output, so the README cannot drift from what the program does."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from phototag import cli
from tests.conftest import MODELS, ROOT, need_shared
from tests.localserver import serve

# Commands the test cannot run, each with the reason; everything else in the README runs.
NOT_RUN = {
    "phototag backfill /archive/scans --ray auto": "needs the optional Ray extra (test_backfill)",
    "phototag backfill /mnt/archive --ray head.example:6379": "needs a Ray cluster",
    "phototag web": "serves until stopped (tests/test_web.py runs the server)",
    "phototag eval corel5k/": "minutes on 2 cores (tests/test_evaluate.py runs eval on real ARFF)",
}


def readme_commands() -> list[str]:
    """The `phototag ...` commands of the README's sh blocks, in order, comments cut off."""
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for part in line.split("  #")[0].split("&&"):
                if part.strip().startswith("phototag "):
                    found.append(part.strip())
    return found


# Exit status and the start of the first line of output (stdout, else stderr), in the
# README's order; {home}: the home folder, {data}: the models folder, {config}: XDG config.
EXPECTED = [
    (0, "installed mobilenet-v2@tf2-ptq -> {data}/mobilenet_v2_1.0_224_tf2_ptq.onnx"),
    (0, "{home}/Pictures/cat.jpg: cat 0."),
    (0, "mobilenet-v2@tf2-ptq is already installed -> {data}/mobilenet_v2_1.0_224_tf2_ptq.onnx"),
    (0, "tagged 0 (0 written into the photo, 0 into a sidecar, 0 already as they were), "),
    (0, "{home}/Pictures/cat.jpg: cat 0."),
    (0, "{site}/cat_720p.jpg: cat 0."),
    (0, "tagged 0 ("),
    (0, "{home}/Archive/owl.jpg: "),
    (0, "{home}/Pictures/cat.jpg"),
    (0, "     1  Brasil"),
    (0, "blazeface@full-range         available"),  # the catalogue, by name
    (0, "usage: phototag [-h] [--version] [-c CONFIG] [-q] [-v] [--json] COMMAND ..."),
    (0, '{{"summary": {{"reanalyse": 0, "rescore": 0, "current": 4, "changed": 0, "failed": 0'),
    (0, '{{"path": "{home}/Pictures/2019/parrot.jpg", "removed": ["'),
    (0, "0 photos need re-analysis with mobilenet-v2@tf2-ptq (decode + infer), 0 need only"),
    (0, "0 photos need re-analysis with mobilenet-v2@tf2-ptq (decode + infer), 0 need only"),
    (0, "{home}/Pictures/2019/parrot.jpg: likely missing: animal|bird|parrot"),
    (0, "{home}/Pictures/cat.jpg: cat is now your keyword"),
    (0, "{home}/Pictures/cat.jpg: would remove animal, mammal"),
    (0, "{home}/Pictures/2019/parrot.jpg: removed Scarlet Macaw, animal, bird, macaw, "),
    (0, "tagged 0 ("),
    (2, "phototag: too few photos with your keywords"),
    (0, "0 photos need re-analysis with mobilenet-v2@tf2-ptq (decode + infer), 0 need only"),
    (0, "wrote {config}/systemd/user/phototag.service"),
    (3, "phototag service: never ran here (no status file)"),
    (0, "password of "),
    (1, "phototag: no photo is tagged 'night'"),
    (1, ""),
    (0, "{home}/Archive/owl.jpg"),
    (1, "phototag: no photo is tagged 'dog'"),
    (0, "0."),
    (0, "0 groups of near-duplicates among 3 photos (nothing deleted)"),
    (0, "Brasil, Brazil Trip, Burrowing Owl (2 photos)"),
    (3, "phototag service: never ran here (no status file)"),
    (0, "{home}/Pictures/cat.jpg: (no confident tags)"),
]


def test_every_readme_command_runs(
    tmp_path: Path,
    photos: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    pictures = home / "Pictures"
    for folder in ("2019", "2023"):
        (pictures / folder).mkdir(parents=True)
    shutil.copyfile(photos / "cat_720p.jpg", pictures / "cat.jpg")
    shutil.copyfile(photos / "parrot.jpg", pictures / "2019" / "parrot.jpg")
    shutil.copyfile(photos / "hot_dog.jpg", pictures / "2023" / "hot_dog.jpg")
    (home / "Archive").mkdir()
    shutil.copyfile(photos / "owl.jpg", home / "Archive" / "owl.jpg")
    (home / "Downloads").mkdir()
    shutil.copyfile(photos / "pets.jpg", home / "Downloads" / "cat.jpg")
    config = tmp_path / "config.yaml"
    # The local server below stands in for the web; the watched folder as the README sets it.
    config.write_text("fetch:\n  allow_private: true\nwatch:\n  folders: [~/Pictures]\n")
    monkeypatch.setenv("PHOTOTAG_CONFIG", str(config))
    monkeypatch.setenv("HOME", str(home))
    bindir = os.path.dirname(sys.executable)  # the installed `phototag`, for the unit file
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long passphrase\n"))  # for `web passwd`
    monkeypatch.chdir(ROOT)  # ../shared/models/... as the README says it
    models = partial(SimpleHTTPRequestHandler, directory=str(need_shared(MODELS)))
    models.log_message = lambda *a: None  # type: ignore[attr-defined]
    web = partial(SimpleHTTPRequestHandler, directory=str(photos))
    web.log_message = lambda *a: None  # type: ignore[attr-defined]
    seen: list[tuple[int, str]] = []
    with serve(models) as mirror, serve(web) as site:  # type: ignore[arg-type]
        monkeypatch.setenv("PHOTOTAG_MODEL_MIRROR", mirror)
        for command in readme_commands():
            if command in NOT_RUN:
                continue
            line = command.replace("https://example.org/x.jpg", f"{site}/cat_720p.jpg")
            argv = [a.replace("~", str(home), 1) for a in shlex.split(line)[1:]]
            try:
                rc = cli.main(argv)
            except SystemExit as exc:  # --help
                rc = int(exc.code or 0)
            out, err = capsys.readouterr()
            first = (out or err).splitlines()[0] if (out or err) else ""
            seen.append((rc, first))
        data = Path(os.environ["XDG_DATA_HOME"]) / "phototag" / "models"
        xdg_config = os.environ["XDG_CONFIG_HOME"]
        wanted = [
            (rc, start.format(home=home, data=data, site=site, config=xdg_config))
            for rc, start in EXPECTED
        ]
    ran = [c for c in readme_commands() if c not in NOT_RUN]
    assert len(seen) == len(wanted), "a README command was added or removed: update EXPECTED"
    wrong = [
        (command, rc, first)
        for command, (rc, first), (want_rc, start) in zip(ran, seen, wanted, strict=True)
        if rc != want_rc or not first.startswith(start) or (first and not start)
    ]
    assert not wrong
