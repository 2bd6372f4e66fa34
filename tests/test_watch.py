import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from phototag.config import Config
from phototag.files import fileio, sidecar
from phototag.library.index import PhotoRecord, open_index
from phototag.records import PhotoFile
from phototag.service import watch
from phototag.service.watch import PathFilter, Watcher


class Recorder:
    """A fake queue's `put` that remembers when each job arrived."""

    def __init__(self) -> None:
        self.jobs: list[tuple[float, str, Path, Path | None]] = []
        self.cond = threading.Condition()

    def __call__(self, path: Path, kind: str, old: Path | None) -> None:
        with self.cond:
            self.jobs.append((time.monotonic(), kind, path, old))
            self.cond.notify_all()

    def wait_for(self, kind: str, path: Path, timeout: float = 5.0) -> float:
        """When the job arrived; fails the test if it does not within `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, k, p, _ in self.jobs:
                    if (k, p) == (kind, path):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {kind} job for {path} within {timeout} s; got {self.seen()}")
                self.cond.wait(left)

    def seen(self) -> list[tuple[str, Path, Path | None]]:
        with self.cond:
            return [(k, p, o) for _, k, p, o in self.jobs]


def settings(folder: Path, **watch_settings: object) -> Config:
    cfg = Config()
    cfg.watch.folders = [str(folder)]
    cfg.watch.settle_s = 1.0
    cfg.watch.poll_interval_s = 0.2
    for key, value in watch_settings.items():
        setattr(cfg.watch, key, value)
    return cfg


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    return folder


@contextlib.contextmanager
def watching(cfg: Config) -> Iterator[tuple[Watcher, Recorder]]:
    recorder = Recorder()
    watcher = Watcher(cfg, recorder)
    watcher.start()
    watcher.release()
    try:
        yield watcher, recorder
    finally:
        watcher.stop()


@pytest.fixture
def live(album: Path) -> Iterator[tuple[Watcher, Recorder]]:
    with watching(settings(album)) as running:
        yield running


def write_slowly(path: Path, chunks: int, pause: float) -> float:
    """Write a file in chunks with pauses, as a slow copy or download does.

    Returns the time of the last write, just before the close (the watcher may see the
    close before this thread returns from it).
    """
    with path.open("wb") as f:
        for i in range(chunks):
            time.sleep(pause)
            f.write(bytes([i]) * 50_000)
            f.flush()
        return time.monotonic()


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_a_slowly_written_photo_is_queued_once_after_it_is_complete(
    album: Path, poll: bool
) -> None:
    with watching(settings(album, poll=poll)) as (watcher, recorder):
        assert bool(watcher.polled) == poll
        photo = album / "slow.jpg"
        last_write = write_slowly(photo, chunks=10, pause=0.3)  # 3 s; settle_s is 1 s
        queued = recorder.wait_for("tag", photo)
        assert queued >= last_write
        time.sleep(1.5)  # longer than settle_s: no second job from the settler
        assert recorder.seen() == [("tag", photo, None)]


def test_temporaries_sidecars_and_other_files_are_ignored(album: Path) -> None:
    with watching(settings(album, exclude=["*/cache/*"])) as (_, recorder):
        (album / "cache").mkdir()
        (album / ".thumbnails").mkdir()
        for name in [
            ".IMG.JPG.k2j3h4.phototag-tmp",
            "IMG.JPG.xmp",
            "download.jpg.part",
            "download2.jpg.crdownload",
            "backup.jpg~",
            ".hidden.jpg",
            "notes.txt",
            "cache/small.jpg",
            ".thumbnails/t.png",
        ]:
            (album / name).write_bytes(b"x" * 100)
        photo = album / "real.JPG"
        photo.write_bytes(b"x" * 100)
        recorder.wait_for("tag", photo)
        time.sleep(0.3)
        assert recorder.seen() == [("tag", photo, None)]


def test_renames_move_and_deletes_delete(live: tuple[Watcher, Recorder], album: Path) -> None:
    _, recorder = live
    a, b = album / "a.jpg", album / "b.jpg"
    a.write_bytes(b"photo")
    recorder.wait_for("tag", a)
    a.rename(b)
    recorder.wait_for("move", b)
    b.rename(album / "b.jpg.bak")  # no longer a photo name
    recorder.wait_for("delete", b)
    (album / "c.jpg").write_bytes(b"photo")
    recorder.wait_for("tag", album / "c.jpg")
    (album / "c.jpg").unlink()
    recorder.wait_for("delete", album / "c.jpg")
    assert recorder.seen() == [
        ("tag", a, None),
        ("move", b, a),
        ("delete", b, None),
        ("tag", album / "c.jpg", None),
        ("delete", album / "c.jpg", None),
    ]


def test_a_download_renamed_into_place_is_queued_without_settling(album: Path) -> None:
    # settle_s is long so that a loaded CI machine's scheduling delay cannot pass for settling
    with watching(settings(album, settle_s=4.0)) as (_, recorder):
        part, photo = album / "cat.jpg.part", album / "cat.jpg"
        part.write_bytes(b"x" * 1000)
        renamed = time.monotonic()
        part.rename(photo)
        assert recorder.wait_for("tag", photo) - renamed < 2.0
        assert recorder.seen() == [("tag", photo, None)]


def test_a_folder_moved_to_the_trash_is_one_delete(
    live: tuple[Watcher, Recorder], album: Path, tmp_path: Path
) -> None:
    _, recorder = live
    trip = album / "trip"
    trip.mkdir()
    (trip / "1.jpg").write_bytes(b"x")
    recorder.wait_for("tag", trip / "1.jpg")
    trip.rename(tmp_path / "trash")
    recorder.wait_for("delete", trip)


def test_a_renamed_folder_moves_its_photos_and_one_moved_in_is_tagged(
    live: tuple[Watcher, Recorder], album: Path, tmp_path: Path
) -> None:
    _, recorder = live
    trip, renamed = album / "trip", album / "Trip 2024"
    trip.mkdir()
    (trip / "1.jpg").write_bytes(b"x")
    recorder.wait_for("tag", trip / "1.jpg")
    trip.rename(renamed)
    recorder.wait_for("move", renamed / "1.jpg")
    outside = tmp_path / "card"
    outside.mkdir()
    (outside / "2.jpg").write_bytes(b"x")
    outside.rename(album / "card")
    recorder.wait_for("tag", album / "card" / "2.jpg")
    assert recorder.seen() == [
        ("tag", trip / "1.jpg", None),
        ("move", renamed / "1.jpg", trip / "1.jpg"),
        ("tag", album / "card" / "2.jpg", None),
    ]


def test_events_are_held_until_release(album: Path) -> None:
    recorder = Recorder()
    watcher = Watcher(settings(album), recorder)
    watcher.start()
    try:
        (album / "early.jpg").write_bytes(b"x")
        time.sleep(0.5)
        assert recorder.seen() == []
        watcher.release()
        assert recorder.seen() == [("tag", album / "early.jpg", None)]
    finally:
        watcher.stop()


def record(path: Path, sha: str = "0" * 64) -> PhotoRecord:
    file = PhotoFile.stat(path)
    return PhotoRecord(str(path), file.size, file.mtime_ns, sha)


def test_catch_up_queues_new_and_changed_photos_then_the_vanished(
    album: Path, tmp_path: Path
) -> None:
    old = time.time() - 60
    for name in ("same.jpg", "changed.jpg", "new.jpg", "gone.jpg"):
        (album / name).write_bytes(b"x")
        os.utime(album / name, (old, old))
    with open_index(tmp_path / "index") as index:
        for name in ("same.jpg", "changed.jpg", "gone.jpg"):
            index.put(record(album / name))
        index.put(PhotoRecord("/elsewhere/unwatched.jpg", 1, 1, "1" * 64))
        (album / "changed.jpg").write_bytes(b"xx")
        os.utime(album / "changed.jpg", (old, old))
        (album / "gone.jpg").unlink()
        (album / "recent.jpg").write_bytes(b"complete")  # mtime now, but closed: no wait
        if watch.open_for_writing(album / "recent.jpg") is None:
            pytest.skip("the kernel grants no file lease here (not the owner, or no leases)")

        recorder = Recorder()
        watcher = Watcher(settings(album), recorder)
        with (album / "fresh.jpg").open("wb") as writer:  # still being copied: let it settle
            writer.write(b"half")
            found = watcher.catch_up(index)
        try:
            watcher.settler.start()
            watcher.release()
            assert (found.tag, found.delete, found.settling) == (3, 1, 1)
            recorder.wait_for("tag", album / "fresh.jpg")
        finally:
            watcher.settler.stop()
    assert recorder.seen() == [
        ("tag", album / "changed.jpg", None),
        ("tag", album / "new.jpg", None),
        ("tag", album / "recent.jpg", None),
        ("delete", album / "gone.jpg", None),
        ("tag", album / "fresh.jpg", None),
    ]


def test_inotify_out_of_watches_falls_back_to_polling(
    album: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoWatchesLeft(watch.Observer):  # type: ignore[misc,valid-type]
        def schedule(self, *args: object, **kw: object) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watch, "Observer", NoWatchesLeft)
    with watching(settings(album)) as (watcher, recorder):
        assert "max_user_watches" in watcher.polled[album]
        assert "max_user_watches" in caplog.text and "polling" in caplog.text
        (album / "p.jpg").write_bytes(b"x")
        recorder.wait_for("tag", album / "p.jpg")


def test_network_filesystems_are_polled(album: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "filesystem_type", lambda folder: "nfs4")
    assert "network filesystem (nfs4)" in (watch.polling_reason(album, settings(album)) or "")
    monkeypatch.setattr(watch, "filesystem_type", lambda folder: "ext4")
    assert watch.polling_reason(album, settings(album)) is None
    assert watch.polling_reason(album, settings(album, poll=True)) == "watch.poll is set"


def test_filesystem_type_reads_proc_mounts(tmp_path: Path) -> None:
    if not Path("/proc/mounts").exists():
        pytest.skip("no /proc/mounts on this system")
    assert watch.filesystem_type(Path("/proc/self")) == "proc"
    assert watch.filesystem_type(tmp_path) != ""


def test_filesystem_type_takes_the_deepest_mount(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "nas:/photos /mnt/my\\040nas nfs4 rw 0 0\n"
        "/dev/sdb1 /mnt/my\\040nas/local ext4 rw 0 0\n"
    )
    assert watch.filesystem_type(Path("/mnt/my nas/2024"), mounts) == "nfs4"
    assert watch.filesystem_type(Path("/mnt/my nas/local/x"), mounts) == "ext4"
    assert watch.filesystem_type(Path("/mnt/my nasty"), mounts) == "ext4"
    assert watch.filesystem_type(Path("/x"), tmp_path / "missing") == ""


def test_path_filter() -> None:
    f = PathFilter(
        (Path("/photos"),), frozenset({".jpg"}), ("*",), ("*/raw/*", "tmp*"), recursive=True
    )
    assert f.accepts(Path("/photos/2024/a.JPG"))
    assert not f.accepts(Path("/photos/2024/raw/a.jpg"))
    assert not f.accepts(Path("/photos/tmp1.jpg"))
    assert not f.accepts(Path("/photosX/a.jpg"))
    assert not f.accepts(Path("/photos/.trash/a.jpg"))
    flat = PathFilter((Path("/photos"),), frozenset({".jpg"}), ("*",), (), recursive=False)
    assert flat.accepts(Path("/photos/a.jpg")) and not flat.accepts(Path("/photos/2024/a.jpg"))


def test_open_for_writing_asks_the_kernel(album: Path) -> None:
    photo = album / "a.jpg"
    with photo.open("wb") as f:
        f.write(b"x")
        if watch.open_for_writing(photo) is None:
            pytest.skip("the kernel grants no file lease here (not the owner, or no leases)")
        assert watch.open_for_writing(photo) is True
    assert watch.open_for_writing(photo) is False
    assert watch.open_for_writing(album / "missing.jpg") is None


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_a_writer_pausing_longer_than_settle_s_is_waited_for(album: Path, poll: bool) -> None:
    """The settler sees size and mtime hold still, but the file is still open for writing."""
    with watching(settings(album, poll=poll)) as (_, recorder):
        photo = album / "paused.jpg"
        with photo.open("wb") as f:
            f.write(b"x" * 1000)
            f.flush()
            time.sleep(2.0)  # settle_s is 1 s
            assert recorder.seen() == []
            f.write(b"y" * 1000)
            last_write = time.monotonic()
        assert recorder.wait_for("tag", photo) >= last_write
        time.sleep(1.5)
        assert recorder.seen() == [("tag", photo, None)]


def test_catch_up_removes_our_stale_temp_files_only(album: Path, tmp_path: Path) -> None:
    old = time.time() - fileio.STALE_TEMP_S - 1
    stale = album / ".IMG.JPG.1a2b3c4d.phototag-tmp"
    live = album / ".IMG2.JPG.5e6f7a8b.phototag-tmp"  # maybe another process writing now
    theirs = album / ".other.tmp"
    for path in (stale, live, theirs):
        path.write_bytes(b"half a photo")
    os.utime(stale, (old, old))
    os.utime(theirs, (old, old))
    recorder = Recorder()
    with open_index(tmp_path / "index") as index:
        found = Watcher(settings(album), recorder).catch_up(index)
    assert found.cleaned == 1
    assert not stale.exists() and live.exists() and theirs.exists()
    assert recorder.seen() == []


def test_catch_up_keeps_the_records_of_an_empty_folder(
    album: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unmounted disk leaves an empty mount point: not a reason to forget its photos."""
    second = tmp_path / "second"
    second.mkdir()
    for folder in (album, second):
        (folder / "a.jpg").write_bytes(b"x")
        (folder / "b.jpg").write_bytes(b"x")
    with open_index(tmp_path / "index") as index:
        for folder in (album, second):
            index.put(record(folder / "a.jpg"))
            index.put(record(folder / "b.jpg"))
        for path in (album / "a.jpg", album / "b.jpg", second / "a.jpg"):
            path.unlink()
        recorder = Recorder()
        cfg = settings(album)
        cfg.watch.folders.append(str(second))
        found = Watcher(cfg, recorder).catch_up(index)
    assert (found.delete, found.kept) == (1, 2)
    assert recorder.seen() == [("delete", second / "a.jpg", None)]
    assert f"{album}: no photos found, but 2 are indexed below it; is it unmounted?" in caplog.text


def test_a_watched_folder_that_goes_and_comes_back_is_noticed(album: Path, tmp_path: Path) -> None:
    with watching(settings(album)) as (watcher, _):
        assert watcher.changed() == []
        album.rename(tmp_path / "away")
        assert watcher.changed() == [album]
        (tmp_path / "away").rename(album)
        assert watcher.changed() == []  # the same folder again
        album.rename(tmp_path / "away")
        album.mkdir()  # another folder at its path, as a mount point left behind
        assert watcher.changed() == [album]


def test_sidecar_written_by_another_program_queues_its_photo(
    album: Path, live: tuple[Watcher, Recorder]
) -> None:
    """darktable saves IMG.jpg.xmp (in place, or a temp file renamed): the photo is re-read."""
    photo = album / "1.jpg"
    photo.write_bytes(b"x")
    _, recorder = live
    recorder.wait_for("tag", photo)
    with recorder.cond:
        recorder.jobs.clear()
    (album / "1.jpg.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    recorder.wait_for("tag", photo)
    with recorder.cond:
        recorder.jobs.clear()
    (album / ".1.jpg.xmp.tmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    (album / ".1.jpg.xmp.tmp").rename(album / "1.jpg.xmp")
    recorder.wait_for("tag", photo)
    assert all(p == photo for _, p, _ in recorder.seen())  # never the sidecar itself


def test_our_own_sidecar_write_is_unchanged_in_the_index(album: Path, tmp_path: Path) -> None:
    """What keeps the service from looping on its own sidecar writes."""
    photo = album / "1.jpg"
    photo.write_bytes(b"x")
    side = album / "1.jpg.xmp"
    side.write_text("<x/>")
    cfg = Config().write
    seen = sidecar.signature(photo, cfg)
    with open_index(tmp_path / "index") as index:
        index.put(
            replace(
                record(photo),
                sidecar_size=seen.size,
                sidecar_mtime_ns=seen.mtime_ns,
                sidecar_sha256=seen.sha256,
            )
        )
        assert sidecar.unchanged(index, PhotoFile.stat(photo), cfg)
        side.write_text("<x:edited/>")  # another program's edit
        assert not sidecar.unchanged(index, PhotoFile.stat(photo), cfg)


def test_a_record_from_before_the_sidecar_hash_is_judged_by_size_and_mtime(
    album: Path, tmp_path: Path
) -> None:
    """An upgraded index does not re-tag every photo with a sidecar once just to learn hashes."""
    photo = album / "1.jpg"
    photo.write_bytes(b"x")
    (album / "1.jpg.xmp").write_text("<x/>")
    cfg = Config().write
    seen = sidecar.signature(photo, cfg)
    assert len(seen.sha256) == 64
    with open_index(tmp_path / "index") as index:
        old = replace(record(photo), sidecar_size=seen.size, sidecar_mtime_ns=seen.mtime_ns)
        index.put(old)
        assert sidecar.unchanged(index, PhotoFile.stat(photo), cfg)
        index.put(replace(old, sidecar_sha256="0" * 64))  # a hash that no longer matches
        assert not sidecar.unchanged(index, PhotoFile.stat(photo), cfg)
