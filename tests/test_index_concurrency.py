"""Many processes, one library (SQLite): the service, `scan`, `refine` and `tag` at once, and
kill -9 of each of them mid-commit.

Everything is real: `python -m phototag` subprocesses with the real model on camera-like
JPEGs (tests/test_service_e2e.py makes them); what happened is read back from the files and
from the index. Scan's output is unbuffered, so a photo it printed is one it committed.
"""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phototag.config import Config, WriteConfig
from phototag.files import metadata
from phototag.library.index import open_index
from tests.test_service_e2e import (
    USER_KEYWORD,
    Dropped,
    Originals,
    ServiceProcess,
    check_tagged_once,
    decoded,
    drop,
    sources,  # noqa: F401  (a fixture)
    tagged_counts,
)

BATCH = 4


def phototag(cfg_file: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "phototag", "--config", str(cfg_file), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finished(
    proc: subprocess.Popen[str], timeout: float = 180, ok: tuple[int, ...] = (0,)
) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode in ok, err[-3000:]
    assert "in use" not in err, err
    return out, err


def printed(out: str, folder: Path) -> set[str]:
    """The photos a `scan`/`tag` printed as tagged (one line each)."""
    return {line.split(": ", 1)[0] for line in out.splitlines() if line.startswith(str(folder))}


def config(tmp_path: Path, watched: Path) -> Path:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(
        f"model:\n  batch_size: {BATCH}\nwatch:\n  folders: [{watched}]\n  settle_s: 0.5\n"
    )
    return cfg_file


def folders(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).mkdir()
        out.append(tmp_path / name)
    return out


@contextmanager
def service_beside(
    tmp_path: Path, images: list[Path], *names: str
) -> Iterator[tuple[list[Path], Path, Originals, ServiceProcess]]:
    """The service watching `watched`, started, with folders `names` beside it not watched."""
    dirs = folders(tmp_path, "watched", *names)
    cfg_file = config(tmp_path, dirs[0])
    originals = Originals.make(images, (640, 480))
    service = ServiceProcess(cfg_file, tmp_path / "service.log")
    try:
        service.wait_started()
        yield dirs, cfg_file, originals, service
    finally:
        service.stop()


def test_service_scan_refine_and_tag_share_the_index(
    sources: list[Path],  # noqa: F811
    installed_model: Path,
    tmp_path: Path,
) -> None:
    """The service drains a folder while `scan` tags another and `refine` runs; then `tag`
    of one photo while the service runs tags it at once. Every photo is tagged once."""
    with service_beside(tmp_path, sources, "scanned", "single") as setup:
        (watched, scanned, single), cfg_file, originals, service = setup
        by_scan = drop(originals, scanned, 100, 16)
        by_service = drop(originals, watched, 0, 16)
        scan, refine = phototag(cfg_file, "scan", str(scanned)), phototag(cfg_file, "refine")
        scan_out, _ = finished(scan)
        finished(refine)
        assert printed(scan_out, scanned) == {str(p.path) for p in by_scan}
        service.wait_drained(len(by_service))
        assert set(tagged_counts(service.text()).values()) == {1}  # each inferred once
        by_tag = drop(originals, single, 200, 1)
        tag_out, _ = finished(phototag(cfg_file, "tag", str(by_tag[0].path)))
        assert printed(tag_out, single) == {str(by_tag[0].path)}
        check_tagged_once(by_service + by_scan + by_tag, originals)


def kill_scan_at_random(
    rng: random.Random, originals: Originals, folder: Path, cfg_file: Path, n: int
) -> None:
    """One round: scan `n` photos, kill -9 at a random moment, check, rerun, check again."""
    photos = drop(originals, folder, 0, n)
    scan = phototag(cfg_file, "scan", str(folder))
    assert scan.stdout is not None
    lines = [scan.stdout.readline() for _ in range(rng.randrange(n - BATCH))]  # then kill it
    time.sleep(rng.uniform(0.0, 0.05) if lines else rng.uniform(0.2, 1.0))
    scan.kill()
    out, _ = scan.communicate(timeout=30)
    assert scan.returncode == -9, "scan ended before it was killed"
    committed = printed("".join(lines) + out, folder)
    indexed = indexed_under(folder)
    assert committed <= indexed  # every photo it reported is in the index
    written = {str(p.path) for p in photos if metadata.read(p.path, WriteConfig()).ours}
    assert len(written - indexed) <= BATCH  # at most the batch being committed is lost
    check_files(photos, originals)
    rerun_out, _ = finished(phototag(cfg_file, "scan", str(folder)))
    assert printed(rerun_out, folder) == {str(p.path) for p in photos} - indexed
    assert indexed_under(folder) == {str(p.path) for p in photos}
    check_files(photos, originals)


def indexed_under(folder: Path) -> set[str]:
    """The indexed photos in `folder`, each checked to be indexed with the tags in its file."""
    with open_index(Config().index_dir, readonly=True) as index:
        records = [r for r in index.records() if Path(r.path).parent == folder]
    for r in records:
        assert [t.path for t in r.auto] == [
            t.path for t in metadata.read(Path(r.path), WriteConfig()).ours
        ]
    return {r.path for r in records}


def check_files(photos: list[Dropped], originals: Originals) -> None:
    """Decodable, pixel-identical, the user's keyword kept, no keyword twice."""
    for p in photos:
        assert (decoded(p.path) == originals.pixels[p.image]).all(), p.path.name
        kw = metadata.read(p.path, WriteConfig())
        assert (USER_KEYWORD in kw.user_keywords) == p.user, p.path.name
        for field in (kw.keywords, kw.hierarchical):
            assert len(field) == len(set(field)), f"{p.path.name}: a keyword twice: {field}"


@pytest.mark.parametrize("rounds", [pytest.param(2), pytest.param(5, marks=pytest.mark.slow)])
def test_scan_killed_at_random_moments_loses_at_most_a_batch(
    sources: list[Path],  # noqa: F811
    installed_model: Path,
    tmp_path: Path,
    rounds: int,
) -> None:
    originals = Originals.make(sources, (1600, 1200))  # big enough that a scan takes seconds
    rng = random.Random(rounds)
    for i in range(rounds):
        folder, cfg_dir = folders(tmp_path, f"round{i}", f"cfg{i}")
        kill_scan_at_random(rng, originals, folder, config(cfg_dir, folder), 40)


def test_service_killed_mid_drain_keeps_what_it_committed(
    sources: list[Path],  # noqa: F811
    installed_model: Path,
    tmp_path: Path,
) -> None:
    """kill -9 of the service while it commits: the index opens, and a restart finishes the
    rest without tagging any photo twice in its files."""
    (watched,) = folders(tmp_path, "watched")
    cfg_file = config(tmp_path, watched)
    originals = Originals.make(sources, (640, 480))
    service = ServiceProcess(cfg_file, tmp_path / "service.log")
    service.wait_started()
    photos = drop(originals, watched, 0, 24)
    deadline = time.monotonic() + 120
    while not tagged_counts(service.text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    service.kill()
    with open_index(Config().index_dir, readonly=True) as index:
        assert {r.path for r in index.records()} <= {str(p.path) for p in photos}
    check_files(photos, originals)
    again = ServiceProcess(cfg_file, tmp_path / "service.log")
    try:
        again.wait_started()
        again.wait_drained(len(photos))
        check_tagged_once(photos, originals)
    finally:
        again.stop()


# Every command of the README that needs no network and no benchmark download, as written
# there, on a folder of its own ("{pics}"); `tag`, `refine`, `suggest --accept`, `undo` and
# `train` write to the index the service holds open.
README_COMMANDS = [
    "tag {pics}/IMG_0100.JPG",
    "tag --dry-run {pics}/IMG_0101.JPG",
    "scan {pics}",
    "scan --sidecar {archive}",
    "models list",
    "refine",
    "refine --dry-run",
    "suggest {pics}",
    "suggest --accept 'animal|mammal|cat' {pics}/IMG_0102.JPG",
    "undo --dry-run",
    "train",
    "search 'cat AND (beach OR sea) NOT night'",
    "search animal --from 2023-03 --to 2023-05",
    "search --source user '\"Brazil Trip\"'",
    "search --min-score 0.5 --folder {pics} dog",
    "similar {pics}/IMG_0103.JPG -k 5",
    "duplicates {pics}",
    "cluster --auto",
    "status",
    "undo {archive}",
]


def test_every_readme_command_works_with_the_service_running(
    sources: list[Path],  # noqa: F811
    installed_model: Path,
    tmp_path: Path,
) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    with service_beside(tmp_path, sources, "pics", "archive") as setup:
        (watched, pics, archive), cfg_file, originals, service = setup
        drop(originals, watched, 0, 8)
        drop(originals, pics, 100, 12)
        drop(originals, archive, 300, 4)
        for line in README_COMMANDS:
            args = shlex.split(line.format(pics=pics, archive=archive))
            assert f"phototag {args[0]} " in readme, line
            # search exits 1 when nothing matches, as grep does; never "in use"
            finished(phototag(cfg_file, *args), ok=(0, 1) if args[0] == "search" else (0,))
        service.wait_drained(8)
