"""The real service end to end: `python -m phototag watch` in a subprocess with the real model.

Photos are camera-like JPEGs made from ../shared/photos (each file unique by its EXIF, a third
with the user's own keyword); what the service did is read back from the files (pyexiv2 for
all, exiftool for a sample), from the index opened read-only, and from its log, which has one
"tagged" line per inference.
"""

from __future__ import annotations

import io
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyexiv2
import pytest
from PIL import Image

from phototag.config import Config, WriteConfig
from phototag.files import metadata
from phototag.library.index import open_index
from phototag.service import daemon as service
from tests.conftest import exiftool_keywords

USER_KEYWORD = "Grandma"


# --- photos -------------------------------------------------------------------------


@dataclass
class Originals:
    """Camera-like JPEGs: a few distinct images, many unique files of each."""

    pixels: list[np.ndarray]  # decoded pixels of each distinct image
    jpegs: list[bytes]  # its JPEG with EXIF

    @classmethod
    def make(cls, sources: list[Path], size: tuple[int, int]) -> Originals:
        pixels, jpegs = [], []
        for i, src in enumerate(sources):
            with Image.open(src) as img:
                rgb = img.convert("RGB").resize(size, Image.Resampling.BILINEAR)
            exif = Image.Exif()
            exif[0x010F], exif[0x0110] = "TestCam", "Model 1"
            exif.get_ifd(0x8769)[36867] = f"2024:06:{1 + i:02d} 12:00:00"
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=90, exif=exif)
            jpegs.append(buf.getvalue())
            pixels.append(decoded(buf.getvalue()))
        return cls(pixels, jpegs)

    def photo(self, i: int, user_keyword: bool) -> tuple[int, bytes]:
        """The i-th unique file: which image it shows, and its bytes."""
        which = i % len(self.jpegs)
        with pyexiv2.ImageData(self.jpegs[which]) as img:
            img.modify_exif({"Exif.Photo.ImageUniqueID": f"{i:032x}"})
            if user_keyword:
                img.modify_xmp({"Xmp.dc.subject": [USER_KEYWORD]})
                img.modify_iptc({"Iptc.Application2.Keywords": [USER_KEYWORD]})
            return which, img.get_bytes()


def decoded(data: bytes | Path) -> np.ndarray:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def sources() -> list[Path]:
    from tests.conftest import PHOTOS, need_shared

    return sorted(p for p in need_shared(PHOTOS).iterdir() if p.suffix in (".jpg", ".bmp"))


@dataclass
class Dropped:
    path: Path
    image: int  # index into Originals.pixels
    user: bool  # carries the user's keyword


def drop(
    originals: Originals, folder: Path, start: int, n: int, staging: Path | None = None
) -> list[Dropped]:
    """Write photos `start`..`start+n` into `folder`, every third with the user's keyword.

    With `staging`, each is written there first and renamed into `folder`, as a file
    manager's move does; otherwise it is written in place, as a card import does.
    """
    out = []
    for i in range(start, start + n):
        which, data = originals.photo(i, user_keyword=i % 3 == 0)
        path = folder / f"IMG_{i:04d}.JPG"
        if staging is None:
            path.write_bytes(data)
        else:
            (staging / path.name).write_bytes(data)
            os.rename(staging / path.name, path)
        out.append(Dropped(path, which, i % 3 == 0))
    return out


# --- the service in a subprocess ----------------------------------------------------


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


TAGGED = re.compile(r" INFO tagged (.+?): ")


class ServiceProcess:
    """`python -m phototag watch`, as systemd starts it, logging to a file."""

    def __init__(self, cfg_file: Path, log: Path) -> None:
        self.log = log
        with log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "phototag", "--config", str(cfg_file), "watch"],
                stderr=out,
                stdout=subprocess.DEVNULL,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
        return True

    def status(self) -> service.ServiceStatus | None:
        st = service.status()
        return st if st is not None and st.pid == self.proc.pid else None

    def wait_started(self, timeout: float = 60) -> None:
        wait_until(
            lambda: self.alive() and self.status() is not None, timeout, "the service to start"
        )

    def idle(self) -> bool:
        """Idle with an empty queue (the status file is rewritten at each change of state)."""
        st = self.status()
        return st is not None and st.state == "idle" and st.queued == st.in_flight == 0

    def wait_drained(self, tagged: int, timeout: float = 120) -> None:
        """Until `tagged` photos have a "tagged" line and the queue is empty and idle."""
        wait_until(
            lambda: self.alive() and len(tagged_counts(self.text())) >= tagged and self.idle(),
            timeout,
            f"{tagged} photos tagged and an empty queue",
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.text()[-3000:]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def tagged_counts(log: str) -> Counter[str]:
    """How many times each photo was inferred and written, from the service's log."""
    return Counter(m[1] for m in TAGGED.finditer(log))


@pytest.fixture
def watched(tmp_path: Path, installed_model: Path) -> Iterator[tuple[Path, Path]]:
    """A watched folder and the config file naming it; settle_s short to keep tests fast."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(f"watch:\n  folders: [{folder}]\n  settle_s: 1.0\n")
    yield folder, cfg_file


@pytest.fixture
def running(watched: tuple[Path, Path], tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(watched[1], tmp_path / "service.log")
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.kill()


# --- checks -------------------------------------------------------------------------


def check_tagged_once(photos: list[Dropped], originals: Originals, pixels_every: int = 1) -> None:
    """Tagged (our keywords once, the user's kept), indexed as in the file, and the pixels
    untouched (of every `pixels_every`-th photo: decoding camera-sized ones takes a while)."""
    cfg = WriteConfig()
    with open_index(Config().index_dir, readonly=True) as index:
        assert sorted(r.path for r in index.records()) == sorted(str(p.path) for p in photos)
        for i, p in enumerate(photos):
            kw = metadata.read(p.path, cfg)
            assert kw.ours, f"{p.path.name}: no tags of ours"
            paths = [t.path for t in kw.ours]
            assert len(paths) == len(set(paths)), f"{p.path.name}: a tag twice in our record"
            for field in (kw.keywords, kw.hierarchical, kw.our_keywords):
                assert len(field) == len(set(field)), f"{p.path.name}: a keyword twice: {field}"
            assert (USER_KEYWORD in kw.user_keywords) == p.user, p.path.name
            record = index.get(p.path)
            assert record is not None
            assert [t.path for t in record.auto] == paths
            assert record.user == kw.user_keywords
            if i % pixels_every == 0:
                np.testing.assert_array_equal(
                    decoded(p.path), originals.pixels[p.image], p.path.name
                )


def check_with_exiftool(photos: list[Dropped]) -> None:
    for p in photos:
        seen = exiftool_keywords(p.path)
        for field, values in seen.items():
            assert len(values) == len(set(values)), f"{p.path.name}: {field} repeats: {values}"
        assert len(seen["Subject"]) >= 1 + p.user, seen
        assert (USER_KEYWORD in seen["Subject"]) == p.user
        assert (USER_KEYWORD in seen["Keywords"]) == p.user


# --- tests --------------------------------------------------------------------------


def test_photos_dropped_into_a_watched_folder_are_tagged_once(
    sources: list[Path], watched: tuple[Path, Path], running: ServiceProcess, tmp_path: Path
) -> None:
    folder, _ = watched
    originals = Originals.make(sources, (1600, 1200))
    staging = tmp_path / "staging"
    staging.mkdir()
    running.wait_started()
    start = time.monotonic()
    photos = drop(originals, folder, 0, 150) + drop(originals, folder, 150, 50, staging)
    running.wait_drained(len(photos))
    drained = time.monotonic() - start

    # One written in slow chunks, pausing longer than settle_s without closing.
    slow = folder / "slow.jpg"
    which, data = originals.photo(999, user_keyword=False)
    with slow.open("wb") as f:
        for i, chunk in enumerate(np.array_split(np.frombuffer(data, np.uint8), 6)):
            f.write(chunk.tobytes())
            f.flush()
            time.sleep(1.5 if i == 2 else 0.3)
        closed = time.time()
    photos.append(Dropped(slow, which, False))
    running.wait_drained(len(photos))
    time.sleep(1.5)  # longer than settle_s: late events of our own writes would show now
    running.stop()

    log = running.text()
    counts = tagged_counts(log)
    assert set(counts) == {str(p.path) for p in photos}
    assert max(counts.values()) == 1, [p for p, n in counts.items() if n > 1]
    assert f"{slow}: " not in log.replace(f"tagged {slow}: ", ""), "slow.jpg was tried half-written"
    check_tagged_once(photos, originals, pixels_every=10)
    check_with_exiftool([*photos[::40], photos[-1]])
    with open_index(Config().index_dir, readonly=True) as index:
        assert index.get(slow).tagged_at >= closed  # type: ignore[union-attr]
    print(f"200 photos 1600x1200 dropped and drained in {drained:.1f} s")


def crash_and_recover(
    sources: list[Path], folder: Path, cfg_file: Path, log: Path, rounds: int, n: int
) -> None:
    """Kill -9 the service `rounds` times while it tags `n` photos, then let it finish.

    Odd rounds kill it as soon as it is up (model loading, catch-up); the others once it
    has tagged a run, then at a random moment up to the index flush that follows and
    beyond (decode, inference, keyword writes, index flush).
    """
    originals = Originals.make(sources, (640, 480))
    rng = random.Random(rounds)
    photos = drop(originals, folder, 0, n // 2)  # found by the catch-up of the first start

    def inferences() -> int:
        return sum(tagged_counts(log.read_text()).values()) if log.exists() else 0

    kills = []
    for r in range(rounds):
        before = inferences()
        proc = ServiceProcess(cfg_file, log)
        try:
            proc.wait_started()
            if r == 0:
                photos += drop(originals, folder, n // 2, n - n // 2)  # seen as events
            if r % 2 == 0:
                wait_until(
                    lambda: inferences() > before or proc.idle(),  # noqa: B023
                    60,
                    "a run tagged",
                )
                time.sleep(rng.uniform(0, service.FLUSH_EVERY_S))
        finally:
            proc.kill()
        written = sum(1 for p in photos if metadata.read(p.path, WriteConfig()).ours)
        with open_index(Config().index_dir, readonly=True) as index:
            kills.append((written, len(index)))
    proc = ServiceProcess(cfg_file, log)
    try:
        proc.wait_started()
        proc.wait_drained(n)
        proc.stop()
    finally:
        if proc.proc.poll() is None:
            proc.kill()

    counts = tagged_counts(log.read_text())
    assert set(counts) == {str(p.path) for p in photos}  # no temp file was ever tagged
    check_tagged_once(photos, originals)
    check_with_exiftool(photos[:: max(1, n // 5)])
    leftovers = sorted(folder.glob(f".*{metadata.TEMP_SUFFIX}"))
    print(
        f"at each kill, photos (written, indexed): {kills}; "
        f"temp files left by kill -9: {len(leftovers)}"
    )


def test_kill_9_while_tagging_loses_and_damages_nothing(
    sources: list[Path], watched: tuple[Path, Path], tmp_path: Path
) -> None:
    crash_and_recover(sources, *watched, tmp_path / "service.log", rounds=1, n=100)


@pytest.mark.slow
def test_kill_9_five_times_while_tagging_300_photos(
    sources: list[Path], watched: tuple[Path, Path], tmp_path: Path
) -> None:
    crash_and_recover(sources, *watched, tmp_path / "service.log", rounds=5, n=300)


def indexed() -> dict[str, list[str]]:
    """Indexed path -> its tag paths, as another process reads the index."""
    with open_index(Config().index_dir, readonly=True) as index:
        return {r.path: [t.path for t in r.auto] for r in index.records()}


def test_moves_renames_and_deletions_reach_the_index_running_or_stopped(
    sources: list[Path], watched: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, cfg_file = watched
    originals = Originals.make(sources[:6], (640, 480))
    trip = folder / "trip"
    trip.mkdir()
    photos = drop(originals, folder, 0, 4) + drop(originals, trip, 4, 4)
    a, b, c, d, e, f, g, h = (p.path for p in photos)
    log = tmp_path / "service.log"
    proc = ServiceProcess(cfg_file, log)
    try:
        proc.wait_started()
        proc.wait_drained(8)
        tags = indexed()

        # While running: rename, move to a subfolder, delete, rename a folder.
        a.rename(folder / "renamed.jpg")
        b.rename(trip / "b.jpg")
        c.unlink()
        trip.rename(folder / "Trip 2024")
        trip = folder / "Trip 2024"
        expect = {
            folder / "renamed.jpg": a,
            trip / "b.jpg": b,
            folder / d.name: d,
            **{trip / p.name: p for p in (e, f, g, h)},
        }
        wait_until(lambda: indexed().keys() == {str(p) for p in expect}, 30, "moves while running")
        proc.stop()

        # While stopped: the same kinds of change, found by the catch-up.
        (trip / e.name).rename(folder / "e.jpg")
        (trip / f.name).unlink()
        trip.rename(folder / "Trip 2025")
        drop(originals, folder, 8, 1)  # a new one
        del expect[trip / e.name], expect[trip / f.name]
        expect = {
            **{k: v for k, v in expect.items() if k.parent != trip},
            **{folder / "Trip 2025" / k.name: v for k, v in expect.items() if k.parent == trip},
            folder / "e.jpg": e,
        }
        proc = ServiceProcess(cfg_file, log)
        proc.wait_started()
        new = folder / "IMG_0008.JPG"
        wait_until(
            lambda: indexed().keys() == {str(p) for p in [*expect, new]}, 30, "moves while stopped"
        )
        proc.wait_drained(9)
        proc.stop()
    finally:
        if proc.proc.poll() is None:
            proc.kill()
    now = indexed()
    for path, was in expect.items():
        assert now[str(path)] == tags[str(was)], path  # tags came along
    counts = tagged_counts(log.read_text())
    assert set(counts) == {str(p) for p in (a, b, c, d, e, f, g, h, new)}  # a move is no inference
    assert max(counts.values()) == 1
