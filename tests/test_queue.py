import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from phototag.service import queue as queue_module
from phototag.service.queue import Queue, QueueError

A, B, C = Path("/p/a.jpg"), Path("/p/b.jpg"), Path("/p/c.jpg")


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    with Queue(tmp_path / "q.sqlite3", max_tries=3, backoff_s=0.2) as q:
        yield q


def kinds(jobs: list) -> list[tuple]:
    return [(j.kind, j.path, j.old) for j in jobs]


def test_jobs_come_out_oldest_first_and_leave_when_done(queue: Queue) -> None:
    for p in (A, B, C):
        queue.put(p, "tag")
    assert len(queue) == 3
    first = queue.take(2)
    assert [j.path for j in first] == [A, B]
    assert queue.stats().in_flight == 2
    queue.done(first)
    assert [j.path for j in queue.take(5)] == [C]
    assert len(queue) == 1
    assert queue.stats().done == 2


def test_pending_jobs_are_one_per_path_and_the_newest_request_wins(queue: Queue) -> None:
    for _ in range(5):
        queue.put(A, "tag")
    queue.put(B, "tag")
    queue.put(A, "delete")
    assert kinds(queue.take(10)) == [("delete", A, None), ("tag", B, None)]


def test_a_job_in_flight_does_not_swallow_a_new_request(queue: Queue) -> None:
    queue.put(A, "tag")
    leased = queue.take(1)
    queue.put(A, "tag")  # the file changed again while being tagged
    assert len(queue) == 2
    queue.done(leased)
    assert kinds(queue.take(1)) == [("tag", A, None)]


def test_moves_merge_with_what_is_pending(queue: Queue) -> None:
    queue.put(A, "move", old=Path("/p/x.jpg"))
    queue.put(A, "tag")  # a move re-tags a changed file anyway: keep the move
    queue.put(B, "move", old=A)  # x -> a -> b is one move x -> b
    assert kinds(queue.take(10)) == [("move", B, Path("/p/x.jpg"))]
    queue.put(C, "move", old=B)
    queue.put(B, "move", old=C)  # and back: only a content check is left
    assert kinds(queue.take(10)) == [("tag", B, None)]
    queue.put(A, "move", old=C)
    queue.put(A, "delete")  # moved then deleted: forget both paths
    assert kinds(queue.take(10)) == [("delete", A, C)]


def test_a_move_needs_its_old_path(queue: Queue) -> None:
    with pytest.raises(ValueError, match="move job needs old path"):
        queue.put(A, "move")
    with pytest.raises(ValueError, match="tag job takes no old path"):
        queue.put(A, "tag", old=B)


def test_failures_retry_with_backoff_then_give_up(queue: Queue) -> None:
    queue.put(A, "tag")
    (job,) = queue.take(1)
    assert queue.failed(job, "cannot decode")
    assert queue.take(1) == []  # backing off
    t0 = time.monotonic()
    (job,) = queue.take(1, timeout=5)  # the wait ends when the retry is due
    assert 0.1 < time.monotonic() - t0 < 1.0
    assert job.tries == 1
    assert queue.failed(job, "cannot decode")
    (job,) = queue.take(1, timeout=5)
    assert not queue.failed(job, "truncated file")  # third try: given up, recorded
    assert len(queue) == 0
    stats = queue.stats()
    assert (stats.failed, stats.retried) == (1, 2)
    assert [(e.path, e.message, e.final) for e in stats.errors[:2]] == [
        (A, "truncated file", True),
        (A, "cannot decode", False),
    ]


def test_a_permanent_failure_is_given_up_at_once(queue: Queue) -> None:
    queue.put(A, "tag")
    (job,) = queue.take(1)
    assert not queue.failed(job, "not an image", permanent=True)
    assert len(queue) == 0
    stats = queue.stats()
    assert (stats.failed, stats.retried) == (1, 0)
    assert [(e.message, e.final) for e in stats.errors] == [("not an image", True)]


def test_done_counts_photos_and_unchanged_events_apart(queue: Queue) -> None:
    queue.put(A, "tag")
    queue.put(B, "tag")
    queue.done(queue.take(2), unchanged=1)
    assert (queue.stats().done, queue.stats().unchanged) == (1, 1)


def test_a_newer_request_replaces_a_failed_retry(queue: Queue) -> None:
    queue.put(A, "tag")
    (job,) = queue.take(1)
    queue.put(A, "tag")
    queue.failed(job, "boom")
    (again,) = queue.take(1)
    assert again.tries == 0 and len(queue) == 1


def test_take_waits_without_polling_until_put_or_wake(queue: Queue) -> None:
    threading.Timer(0.2, queue.put, (A, "tag")).start()
    t0 = time.monotonic()
    assert [j.path for j in queue.take(1, timeout=5)] == [A]
    assert time.monotonic() - t0 < 2
    threading.Timer(0.2, queue.wake).start()
    t0 = time.monotonic()
    assert queue.take(1, timeout=5) == []
    assert time.monotonic() - t0 < 2
    assert queue.take(1, timeout=0.1) == []


def test_leases_of_a_dead_process_return_to_pending(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    code = (
        "import sys; from pathlib import Path; from phototag.service.queue import Queue\n"
        "q = Queue(Path(sys.argv[1])); q.put(Path('/p/a.jpg'), 'tag'); q.put(Path('/p/b.jpg'), 'tag')\n"
        "q.take(1)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    with Queue(path) as q:
        assert q.stats().in_flight == 1
        assert [j.path for j in q.take(5)] == [B]  # a is leased, and its owner is gone
        assert q.recover() == 2  # a (dead owner) and b (ours, from "before the restart")
        assert [j.path for j in q.take(5)] == [A, B]


def test_a_lease_held_by_a_live_process_is_left_alone(queue: Queue, tmp_path: Path) -> None:
    queue.put(A, "tag")
    queue.take(1)
    db = sqlite3.connect(queue.path)
    db.execute("UPDATE jobs SET owner = ?", (queue_module._identity(os.getppid()),))
    db.commit()
    db.close()
    assert queue.recover() == 0  # alive, and not us
    db = sqlite3.connect(queue.path)
    owner = queue_module._identity(os.getppid()).replace(queue_module.BOOT_ID, "another-boot")
    db.execute("UPDATE jobs SET owner = ?", (owner,))  # that pid, before a reboot
    db.commit()
    db.close()
    assert queue.recover() == 1


def test_file_names_that_are_not_utf8_survive(queue: Queue) -> None:
    odd = Path(os.fsdecode(b"/p/caf\xe9.jpg"))
    queue.put(odd, "tag")
    assert queue.take(1)[0].path == odd


def test_jobs_survive_kill_9(tmp_path: Path) -> None:
    """A producer is SIGKILLed mid-stream: every put it reported is there after reopening."""
    path = tmp_path / "q.sqlite3"
    code = (
        "import sys; from pathlib import Path; from phototag.service.queue import Queue\n"
        "q = Queue(Path(sys.argv[1]))\n"
        "for i in range(100000):\n"
        "    q.put(Path(f'/p/{i}.jpg'), 'tag')\n"
        "    print(i, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Queue(path) as q:
        assert q._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert len(q) >= last + 1
        paths = {j.path for j in q.take(100000)}
    assert {Path(f"/p/{i}.jpg") for i in range(last + 1)} <= paths


def test_a_file_that_is_not_a_queue_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "q.sqlite3").write_bytes(b"not a database, really" * 100)
    with pytest.raises(
        QueueError, match=r"q\.sqlite3: cannot open the work queue: file is not a database"
    ):
        Queue(tmp_path / "q.sqlite3")
