import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phototag import cli, paths
from phototag.config import Config, ConfigError
from phototag.library.index import Index, open_index
from phototag.service import daemon as service
from phototag.service.queue import Queue, QueueStats
from tests.conftest import ROOT
from tests.fakes import FakeProcessor, factory


def settings(*folders: Path) -> Config:
    cfg = Config()
    cfg.watch.folders = [str(f) for f in folders]
    cfg.watch.settle_s = 0.5
    return cfg


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.05)


@pytest.fixture
def album(tmp_path: Path) -> Path:
    folder = tmp_path / "album"
    folder.mkdir()
    return folder


# --- settings ----------------------------------------------------------------------


def test_no_folders_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"watch\.folders is empty"):
        service.validate(Config())


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"watch\.folders: .*nope: no such folder"):
        service.validate(settings(tmp_path / "nope"))
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a folder"):
        service.validate(settings(tmp_path / "file.jpg"))


def test_folders_are_made_absolute(album: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(album.parent)
    assert service.validate(settings(Path("album"))) == [album]


# --- sd_notify and logging ---------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify")
    sock.bind(address)
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield sock
    sock.close()


def test_sd_notify_sends_one_datagram(notify_socket: socket.socket) -> None:
    assert service.sd_notify("READY=1", "STATUS=idle")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=idle"


def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"phototag-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert service.sd_notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_outside_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.sd_notify("READY=1") is False


def test_journald_gets_plain_lines_with_priorities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stderr:
        st = os.fstat(stderr.fileno())
        monkeypatch.setattr(sys, "stderr", stderr)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert service.under_journald()
        service.configure_logging()
        logging.getLogger("phototag.test").warning("inotify limit reached")
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # inherited by a child writing elsewhere
        assert not service.under_journald()
    logging.basicConfig(force=True)
    assert (tmp_path / "stderr").read_text() == "<4>inotify limit reached\n"


# --- the service loop, in a thread --------------------------------------------------


def finished(stats: QueueStats) -> int:
    return stats.done + stats.unchanged


class Running:
    """A service in a thread of this process, with its fake processor."""

    def __init__(self, cfg: Config) -> None:
        self.processors: list[FakeProcessor] = []

        def make(cfg: Config, index: Index) -> FakeProcessor:
            self.processors.append(factory()(cfg, index))
            return self.processors[-1]

        self.service = service.Service(cfg, make)
        self.exit: list[int] = []
        self.thread = threading.Thread(target=lambda: self.exit.append(self.service.run()))
        self.thread.start()
        wait_until(lambda: bool(self.processors) and self.state() == "idle", what="start")

    def state(self) -> str | None:
        st = service.status()
        return st.state if st else None

    def stats(self):
        return self.service._queue.stats()

    def settled(self, done: int) -> None:
        """Wait until `done` jobs are finished (photos done or events with nothing to do) and
        nothing is pending or in flight."""
        wait_until(
            lambda: finished(self.stats()) >= done and len(self.service._queue) == 0,
            what=f"{done} jobs done",
        )

    def stop(self) -> int:
        self.service.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.exit[0]


def test_our_own_keyword_write_does_not_tag_the_photo_again(album: Path) -> None:
    running = Running(settings(album))
    try:
        photo = album / "a.jpg"
        photo.write_bytes(b"pixels")
        # The tag job, and the event of our own write (a temp file renamed over the
        # photo), which the index finds unchanged: done without inference.
        running.settled(done=2)
        time.sleep(1.0)  # twice settle_s: no event of ours comes back late
        assert running.processors[0].calls == [[photo]]
        assert photo.read_bytes() == b"pixels<keywords>"
        # done counts the photo once; the event of our own write had nothing to do
        assert (running.stats().done, running.stats().unchanged) == (1, 1)
    finally:
        running.stop()


def test_photos_are_tagged_moved_and_forgotten(
    album: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = Running(settings(album))
    try:
        a, b = album / "a.jpg", album / "b.jpg"
        a.write_bytes(b"pixels")
        running.settled(done=2)
        a.rename(b)
        running.settled(done=3)
        b.unlink()
        running.settled(done=4)
        assert running.processors[0].calls == [[a]]  # a move needs no inference

        (album / "bad.jpg").write_bytes(b"trunc")
        wait_until(lambda: running.stats().retried == 1, what="a retry")
        # a job backing off before its retry waits: the service is not idle
        wait_until(lambda: running.state() == "waiting to retry", what="waiting to retry")
        assert cli.main(["status"]) == 0
        assert capsys.readouterr().out.splitlines()[0].endswith("), waiting to retry")
    finally:
        assert running.stop() == 0
    st = service.status()
    assert st is not None and not st.running and st.state == "stopped"
    assert (st.done, st.unchanged, st.failed, st.retried, st.queued) == (3, 1, 0, 1, 1)
    assert st.model_version == "fake-model@1" and st.folders == [str(album)]
    assert [(e.path.name, e.message, e.final) for e in st.errors] == [
        ("bad.jpg", "cannot decode: truncated JPEG", False)
    ]
    with open_index(Config().index_dir, readonly=True) as index:
        assert len(index) == 0
    assert "bad.jpg" in service.describe(st) and "not running" in service.describe(st)


def test_catch_up_at_start_tags_what_arrived_while_stopped(album: Path) -> None:
    (album / "old.jpg").write_bytes(b"x")
    os.utime(album / "old.jpg", (time.time() - 60,) * 2)
    running = Running(settings(album))
    try:
        running.settled(done=2)
        assert running.processors[0].calls == [[album / "old.jpg"]]
    finally:
        running.stop()
    running = Running(settings(album))  # nothing changed since: nothing to do
    try:
        time.sleep(0.5)
        assert running.processors[0].calls == []
    finally:
        running.stop()


def test_status_of_a_running_service(album: Path) -> None:
    running = Running(settings(album))
    try:
        st = service.status()
        assert st is not None and st.running and st.pid == os.getpid() and st.state == "idle"
        assert "running (pid" in service.describe(st)
        assert service.status_path().stat().st_mode & 0o777 == 0o644  # for other users' status
    finally:
        running.stop()
    assert service.status_path() == paths.state_dir() / "status.json"


def test_a_stale_status_file_is_not_running(album: Path) -> None:
    running = Running(settings(album))
    running.stop()
    st = service.status()
    assert st is not None
    st.state, st.updated = "idle", time.time() - service.STALE_S - 1
    service.status_path().write_bytes(st.to_json())
    assert service.status().running is False  # type: ignore[union-attr]
    assert service.describe(None).startswith("phototag service: never ran")


# --- the service as systemd runs it: a process, signals, sd_notify -----------------

SCRIPT = """
import sys
from pathlib import Path
from phototag import config
from phototag.service import daemon as service
from tests.fakes import factory
service.configure_logging()
sys.exit(service.run(config.load(Path(sys.argv[1])), factory(Path(sys.argv[2]))))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_service_process_under_systemd_signals(
    album: Path, tmp_path: Path, notify_socket: socket.socket
) -> None:
    """READY, idle without CPU, SIGHUP reload (good and bad), SIGTERM mid-batch exits 0."""
    second = tmp_path / "second"
    second.mkdir()
    cfg_file, journal = tmp_path / "config.yaml", tmp_path / "journal"
    journal.touch()
    cfg_file.write_text(f"watch:\n  folders: [{album}]\n  settle_s: 0.5\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(cfg_file), str(journal)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def expect(message: bytes) -> None:
            while True:
                got = notify_socket.recv(4096)
                if message in got.split(b"\n"):
                    return

        expect(b"READY=1")
        st = service.status()
        assert st is not None and st.running and st.pid == proc.pid

        wait_until(lambda: service.status().state == "idle", what="idle")  # type: ignore[union-attr]
        before = cpu_seconds(proc.pid)
        time.sleep(2.0)
        idle = cpu_seconds(proc.pid) - before
        assert idle < 0.1, f"idle service used {idle:.2f} s of CPU in 2 s"

        cfg_file.write_text(f"watch:\n  folders: [{album}, {second}]\n  settle_s: 0.5\n")
        proc.send_signal(signal.SIGHUP)
        expect(b"RELOADING=1")
        expect(b"READY=1")
        (second / "new.jpg").write_bytes(b"x")
        wait_until(lambda: "done new.jpg" in journal.read_text(), what="tagging after reload")

        cfg_file.write_text("watch:\n  folders: [/no/such/folder]\n")
        proc.send_signal(signal.SIGHUP)
        expect(b"RELOADING=1")
        expect(b"READY=1")  # one READY per reload: this one says the old settings still serve
        assert proc.poll() is None

        (album / "slow.jpg").write_bytes(b"x")
        wait_until(lambda: "start slow.jpg" in journal.read_text(), what="a batch in flight")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        expect(b"STOPPING=1")
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate()[1]
    assert "reload failed, keeping the old settings" in stderr and "/no/such/folder" in stderr
    assert "done slow.jpg" in journal.read_text()  # the batch in flight was finished
    with Queue(paths.state_dir() / service.QUEUE_FILE) as queue:
        assert queue.stats().in_flight == 0
    assert service.status().running is False  # type: ignore[union-attr]
    print(f"idle CPU: {idle:.3f} s in 2 s")


def test_a_watched_folder_gone_is_reported_and_watched_again_when_back(
    album: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(service, "HEARTBEAT_S", 0.2)
    running = Running(settings(album))
    try:
        (album / "a.jpg").write_bytes(b"pixels")
        running.settled(done=2)
        album.rename(tmp_path / "unplugged")
        wait_until(lambda: "watched folder is gone" in caplog.text, what="a warning")
        wait_until(lambda: service.status().missing == [str(album)], what="status")  # type: ignore[union-attr]
        assert "(missing: " in service.describe(service.status())

        (tmp_path / "unplugged" / "b.jpg").write_bytes(b"pixels")  # added elsewhere meanwhile
        (tmp_path / "unplugged").rename(album)
        wait_until(lambda: "watched folder is back" in caplog.text, what="the folder back")
        running.settled(done=4)
        (album / "c.jpg").write_bytes(b"pixels")  # and watched live again
        running.settled(done=6)
        assert [p.name for c in running.processors[0].calls for p in c] == [
            "a.jpg",
            "b.jpg",
            "c.jpg",
        ]
        assert service.status().missing == []  # type: ignore[union-attr]
    finally:
        running.stop()
    with open_index(Config().index_dir, readonly=True) as index:
        assert len(index) == 3  # nothing forgotten while the folder was away


@pytest.mark.parametrize(("every_s", "most"), [(0.0, 99), (60.0, 2)])
def test_a_busy_service_writes_its_index_on_a_clock(
    album: Path, monkeypatch: pytest.MonkeyPatch, every_s: float, most: int
) -> None:
    """Jobs are done only once the index holding them is written; a burst writes it rarely."""
    monkeypatch.setattr(service, "FLUSH_EVERY_S", every_s)
    monkeypatch.setattr(service, "FLUSH_SHARE", float("inf"))  # the clock alone decides
    flushes: list[int] = []
    original = service.Service._flush

    def counted(self: service.Service) -> None:
        if self._unflushed:
            flushes.append(len(self._unflushed))
            assert finished(self._queue.stats()) == sum(flushes[:-1])  # nothing done before
        original(self)

    monkeypatch.setattr(service.Service, "_flush", counted)
    old = time.time() - 60
    for i in range(12):
        (album / f"{i}.jpg").write_bytes(b"pixels")
        os.utime(album / f"{i}.jpg", (old, old))
    cfg = settings(album)
    cfg.model.batch_size = 1
    running = Running(cfg)  # the catch-up queues all 12 at once
    try:
        running.settled(done=24)  # 12 tags and the 12 events of our own writes
    finally:
        running.stop()
    assert sum(flushes) == 24
    assert len(flushes) <= most
    if every_s == 0:
        assert len(flushes) >= 12 / service.RUN_BATCHES  # one a run


def test_a_full_disk_at_the_index_is_one_warning_and_the_job_is_kept(
    album: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17 item 4: ENOSPC while indexing was logged with a traceback."""
    import errno

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Index, "put", full)
    running = Running(settings(album))
    try:
        (album / "a.jpg").write_bytes(b"pixels")
        wait_until(lambda: "No space left on device" in caplog.text, what="the warning")
    finally:
        running.stop()
    assert not [r.getMessage() for r in caplog.records if r.exc_info]  # no traceback
    assert "tagging a batch of 1 failed: No space left on device" in caplog.text
    assert "(will retry)" in caplog.text
