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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phototag import catalogue
from phototag.config import Config, WriteConfig
from phototag.config import load as load_config
from phototag.files import metadata
from phototag.library.index import open_index
from phototag.pipeline import tagger
from tests.conftest import MODEL_V2, need_shared
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
    tmp_path: Path,
    images: list[Path],
    *names: str,
    before: Callable[[list[Path], Path, Originals], None] | None = None,
) -> Iterator[tuple[list[Path], Path, Originals, ServiceProcess]]:
    """The service watching `watched`, started (after `before`, given the folders, the config
    and the photos), with folders `names` beside it not watched."""
    dirs = folders(tmp_path, "watched", *names)
    cfg_file = config(tmp_path, dirs[0])
    originals = Originals.make(images, (640, 480))
    if before is not None:
        before(dirs, cfg_file, originals)
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
    """The service drains a folder while `scan` tags another and `refine` re-analyses a third
    (tagged by the older model) with the newer one; then `tag` of one photo while the service
    runs tags it at once. Every photo is tagged once, and nobody's commit is lost."""
    to_refine: list[Dropped] = []

    def tagged_by_the_older_model(dirs: list[Path], cfg_file: Path, originals: Originals) -> None:
        to_refine.extend(drop(originals, dirs[3], 400, 16))
        finished(phototag(cfg_file, "scan", str(dirs[3])))
        catalogue.import_file(need_shared(MODEL_V2))  # everyone below resolves the newer one

    with service_beside(
        tmp_path, sources, "scanned", "single", "refined", before=tagged_by_the_older_model
    ) as setup:
        (watched, scanned, single, _), cfg_file, originals, service = setup
        by_scan = drop(originals, scanned, 100, 16)
        by_service = drop(originals, watched, 0, 16)
        scan, refine = phototag(cfg_file, "scan", str(scanned)), phototag(cfg_file, "refine")
        scan_out, _ = finished(scan)
        _, refine_err = finished(refine)
        assert printed(scan_out, scanned) == {str(p.path) for p in by_scan}
        assert f"{len(to_refine)} photos need re-analysis" in refine_err
        service.wait_drained(len(by_service))
        assert set(tagged_counts(service.text()).values()) == {1}  # each inferred once
        by_tag = drop(originals, single, 200, 1)
        tag_out, _ = finished(phototag(cfg_file, "tag", str(by_tag[0].path)))
        assert printed(tag_out, single) == {str(by_tag[0].path)}
        check_tagged_once(by_service + by_scan + by_tag + to_refine, originals)
        with open_index(Config().index_dir, readonly=True) as index:
            versions = {r.model_version for r in index.records()}
        assert versions == {str(tagger.load(load_config(cfg_file)).version)}


def kill_at_random(
    rng: random.Random, originals: Originals, folder: Path, cfg_file: Path, n: int, command: str
) -> None:
    """One round: `scan` the folder or `tag` its `n` photos, kill -9 at a random moment, check,
    rerun, check again."""
    photos = drop(originals, folder, 0, n)
    args = [str(folder)] if command == "scan" else [str(p.path) for p in photos]
    proc = phototag(cfg_file, command, *args)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(rng.randrange(n - BATCH))]  # then kill it
    time.sleep(rng.uniform(0.0, 0.05) if lines else rng.uniform(0.2, 1.0))
    proc.kill()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -9, f"{command} ended before it was killed"
    committed = printed("".join(lines) + out, folder)
    indexed = indexed_under(folder)
    assert committed <= indexed  # every photo it reported is in the index
    written = {str(p.path) for p in photos if metadata.read(p.path, WriteConfig()).ours}
    assert len(written - indexed) <= BATCH  # at most the batch being committed is lost
    check_files(photos, originals)
    rerun_out, _ = finished(phototag(cfg_file, command, *args))
    everything = {str(p.path) for p in photos}
    # scan leaves what it committed alone; tag re-tags what it is given, without doubling
    assert printed(rerun_out, folder) == everything - (indexed if command == "scan" else set())
    assert indexed_under(folder) == everything
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
def test_scan_and_tag_killed_at_random_moments_lose_at_most_a_batch(
    sources: list[Path],  # noqa: F811
    installed_model: Path,
    tmp_path: Path,
    rounds: int,
) -> None:
    originals = Originals.make(sources, (1600, 1200))  # big enough that a scan takes seconds
    rng = random.Random(rounds)
    for i in range(rounds):
        folder, cfg_dir = folders(tmp_path, f"round{i}", f"cfg{i}")
        command = ("scan", "tag")[i % 2]
        kill_at_random(rng, originals, folder, config(cfg_dir, folder), 40, command)


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


def test_refine_killed_mid_commit_loses_nothing_and_a_rerun_finishes(
    sources: list[Path],  # noqa: F811
    installed_model: Path,
    tmp_path: Path,
) -> None:
    """kill -9 of `refine` while it re-analyses with a newer model: every photo stays indexed,
    at most the batch being committed has its new keywords on file before the index knows,
    and a second `refine` brings every photo to the new version with file and index agreeing."""
    (folder,) = folders(tmp_path, "album")
    cfg_file = config(tmp_path, folder)
    originals = Originals.make(sources, (1600, 1200))
    photos = drop(originals, folder, 0, 40)
    finished(phototag(cfg_file, "scan", str(folder)))
    catalogue.import_file(need_shared(MODEL_V2))  # resolve now picks it: refine re-analyses
    new_version = str(tagger.load(load_config(cfg_file)).version)
    refine = phototag(cfg_file, "refine")
    assert refine.stdout is not None
    refine.stdout.readline()  # the first changed photo is committed; kill it soon after
    time.sleep(random.Random(3).uniform(0.0, 0.3))
    refine.kill()
    refine.communicate(timeout=30)
    assert refine.returncode == -9, "refine ended before it was killed"
    with open_index(Config().index_dir, readonly=True) as index:
        records = {r.path: r for r in index.records()}
    assert set(records) == {str(p.path) for p in photos}  # nothing lost
    behind = [
        path
        for path, r in records.items()
        if [t.path for t in r.auto]
        != [t.path for t in metadata.read(Path(path), WriteConfig()).ours]
    ]
    assert len(behind) <= BATCH and all(records[p].model_version != new_version for p in behind)
    assert 0 < sum(r.model_version == new_version for r in records.values()) < len(photos)
    check_files(photos, originals)
    finished(phototag(cfg_file, "refine"))
    assert indexed_under(folder) == set(records)  # file and index agree for every photo
    with open_index(Config().index_dir, readonly=True) as index:
        assert {r.model_version for r in index.records()} == {new_version}
    check_files(photos, originals)


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
