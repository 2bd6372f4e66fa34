"""The service's persistent work queue: one SQLite file in the state dir.

Why SQLite: a job must survive kill -9 and power loss between "the watcher saw a file"
and "the photo is tagged and indexed", and several threads (watcher, settler, main
loop) add and take jobs. WAL mode lets them commit without blocking readers.

Why `synchronous=NORMAL`: in WAL mode a commit is then durable against a crash of the
process (kill -9, OOM): the WAL is in the kernel's page cache before `commit` returns.
Only a power cut or kernel panic can lose the last few commits, never corrupt the file;
FULL would add an fsync per queued event (milliseconds each, thousands on a photo
import). What a power cut loses, the catch-up at start finds again: it compares every
watched folder with the index.

Pending jobs are unique per path: a photo modified five times before it is tagged is
tagged once, and the newest request wins (a delete after a tag is a delete).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["tag", "move", "delete"]

MAX_TRIES = 5
BACKOFF_S = 30.0  # first retry after this long, doubling each time
KEEP_ERRORS = 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL,          -- os.fsencode: file names need not be valid UTF-8
    kind TEXT NOT NULL,
    old BLOB,                    -- move: the old path; delete: a second path to forget
    state TEXT NOT NULL,         -- pending | leased
    tries INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    owner TEXT,                  -- the process holding the lease: boot id, pid, start time
    added REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS pending_path ON jobs(path) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS ready ON jobs(state, not_before, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, path BLOB NOT NULL, message TEXT NOT NULL,
    final INTEGER NOT NULL
);
"""


class QueueError(Exception):
    """The queue file cannot be opened (unwritable state dir, not a database); one line."""


@dataclass(frozen=True)
class Job:
    id: int
    path: Path
    kind: Kind
    old: Path | None = None
    tries: int = 0


@dataclass(frozen=True)
class JobError:
    at: float
    path: Path
    message: str
    final: bool  # True: given up (after MAX_TRIES, or at once when retrying cannot help)


@dataclass(frozen=True)
class QueueStats:
    pending: int
    in_flight: int
    done: int  # photos tagged, moved or forgotten
    unchanged: int  # jobs that found nothing to do (our own write coming back as an event)
    failed: int  # given up
    retried: int
    errors: list[JobError]  # newest first


def _enc(path: Path | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _dec(data: bytes | None) -> Path | None:
    return None if data is None else Path(os.fsdecode(data))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _identity(pid: int) -> str:
    """A process as boot id, pid and start time: a pid alone is reused, after a reboot at once."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = ""
    return f"{BOOT_ID}:{pid}:{start}"


def owner_alive(owner: str) -> bool:
    boot, pid, start = owner.split(":")
    if not (boot and start):  # no /proc: trust the pid
        return pid_alive(int(pid))
    return boot == BOOT_ID and _identity(int(pid)) == owner


BOOT_ID = _boot_id()
OWNER = _identity(os.getpid())


class Queue:
    """Jobs for the service, shared by the watcher threads and the main loop of one process."""

    def __init__(
        self, path: Path, max_tries: int = MAX_TRIES, backoff_s: float = BACKOFF_S
    ) -> None:
        self.path = path
        self.max_tries = max_tries
        self.backoff_s = backoff_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection guarded by one lock: the threads are few, each statement short.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise QueueError(f"{path}: cannot open the work queue: {exc}") from None
        # An RLock, so a signal handler that wakes the main loop while it holds the lock
        # cannot deadlock.
        self._ready = threading.Condition(threading.RLock())
        self._woken = False

    def close(self) -> None:
        with self._ready:
            self._db.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One atomic change, under the lock; the threads' waits are woken after it."""
        with self._ready:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._ready.notify_all()

    def _pending(self, path: bytes) -> tuple[int, str, bytes | None] | None:
        return self._db.execute(
            "SELECT id, kind, old FROM jobs WHERE state = 'pending' AND path = ?", (path,)
        ).fetchone()

    def _upsert(self, path: bytes, kind: Kind, old: bytes | None, now: float) -> None:
        """Make `kind` the one pending job for `path`, keeping its place in the queue."""
        existing = self._pending(path)
        if existing is None:
            self._db.execute(
                "INSERT INTO jobs (path, kind, old, state, added) VALUES (?, ?, ?, 'pending', ?)",
                (path, kind, old, now),
            )
        else:
            self._db.execute(
                "UPDATE jobs SET kind = ?, old = ?, tries = 0, not_before = 0 WHERE id = ?",
                (kind, old, existing[0]),
            )

    def put(self, path: Path, kind: Kind, old: Path | None = None) -> None:
        """Ask for `kind` on `path`; merges with the job already pending for it.

        tag after a pending move keeps the move (a move re-tags a changed file);
        move a->b takes over a's pending job (so a move of a moved file is one move from
        its indexed path); delete after a pending move x->p forgets both p and x.
        """
        if (kind == "move") != (old is not None):
            raise ValueError(f"a {kind} job {'needs' if kind == 'move' else 'takes no'} old path")
        new, prior = _enc(path), _enc(old)
        with self._transaction():
            existing = self._pending(new)
            if kind == "tag" and existing is not None and existing[1] == "move":
                kind, prior = "move", existing[2]
            elif kind == "delete" and existing is not None and existing[1] == "move":
                prior = existing[2]
            elif kind == "move":
                source = self._pending(prior)  # type: ignore[arg-type]
                if source is not None:
                    self._db.execute("DELETE FROM jobs WHERE id = ?", (source[0],))
                    if source[1] == "move":
                        prior = source[2]
                if prior == new:  # moved back where it was: only a content check is left
                    kind, prior = "tag", None
            self._upsert(new, kind, prior, time.time())

    def take(self, n: int, timeout: float | None = 0) -> list[Job]:
        """Lease up to `n` ready jobs, oldest first; wait up to `timeout` s (None: forever) for one.

        Returns [] on timeout or when `wake()` is called. The wait ends early when a job
        waiting for its retry becomes ready, so an idle queue sleeps without polling.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while True:
                now = time.time()
                rows = self._db.execute(
                    "SELECT id, path, kind, old, tries FROM jobs "
                    "WHERE state = 'pending' AND not_before <= ? ORDER BY id LIMIT ?",
                    (now, n),
                ).fetchall()
                if rows:
                    with self._transaction():
                        self._db.executemany(
                            "UPDATE jobs SET state = 'leased', owner = ? WHERE id = ?",
                            [(OWNER, r[0]) for r in rows],
                        )
                    return [Job(r[0], _dec(r[1]), r[2], _dec(r[3]), r[4]) for r in rows]  # type: ignore[arg-type]
                if self._woken:
                    self._woken = False
                    return []
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return []
                retry_at = self._db.execute(
                    "SELECT MIN(not_before) FROM jobs WHERE state = 'pending'"
                ).fetchone()[0]
                waits = [
                    w for w in (left, None if retry_at is None else retry_at - now) if w is not None
                ]
                self._ready.wait(max(0.0, min(waits)) if waits else None)

    def ready(self) -> bool:
        """Whether `take` would return a job now."""
        with self._ready:
            return (
                self._db.execute(
                    "SELECT 1 FROM jobs WHERE state = 'pending' AND not_before <= ? LIMIT 1",
                    (time.time(),),
                ).fetchone()
                is not None
            )

    def wake(self) -> None:
        """Make a waiting `take` (or the next one) return [] now: shutdown, reload."""
        with self._ready:
            self._woken = True
            self._ready.notify_all()

    def done(self, jobs: list[Job], unchanged: int = 0) -> None:
        """Finish `jobs`; `unchanged` of them did nothing, counted apart so `done` counts photos."""
        with self._transaction():
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(j.id,) for j in jobs])
            self._count("done", len(jobs) - unchanged)
            self._count("unchanged", unchanged)

    def failed(self, job: Job, message: str, permanent: bool = False) -> bool:
        """Record a failure; retry later with back-off, or give up after `max_tries`, or at
        once when `permanent` (the file is not an image: the same bytes fail the same way).

        Returns True when the job will be retried.
        """
        tries = job.tries + 1
        retry = not permanent and tries < self.max_tries
        now = time.time()
        with self._transaction():
            if retry:
                delay = self.backoff_s * 2 ** (tries - 1)
                self._requeue(job.id, _enc(job.path), tries, now + delay)
                self._count("retried", 1)
            else:
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
                self._count("failed", 1)
            self._db.execute(
                "INSERT INTO errors (at, path, message, final) VALUES (?, ?, ?, ?)",
                (now, _enc(job.path), message, int(not retry)),
            )
            self._db.execute(
                "DELETE FROM errors WHERE id <= (SELECT MAX(id) FROM errors) - ?", (KEEP_ERRORS,)
            )
        return retry

    def _requeue(self, job_id: int, path: bytes | None, tries: int, not_before: float) -> None:
        """Back to pending, unless a newer job for the same path is pending: that one wins."""
        if self._pending(path) is not None:  # type: ignore[arg-type]
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        else:
            self._db.execute(
                "UPDATE jobs SET state = 'pending', owner = NULL, tries = ?, not_before = ? "
                "WHERE id = ?",
                (tries, not_before, job_id),
            )

    def recover(self) -> int:
        """Return jobs leased by a process that is gone (crashed, killed, or before a reboot)."""
        with self._transaction():
            rows = self._db.execute(
                "SELECT id, path, tries, owner FROM jobs WHERE state = 'leased' ORDER BY id"
            ).fetchall()
            lost = [r for r in rows if r[3] == OWNER or not owner_alive(r[3])]
            for job_id, path, tries, _ in lost:
                self._requeue(job_id, path, tries, 0.0)
        return len(lost)

    def _count(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, n, n),
        )

    def __len__(self) -> int:
        """Jobs not yet done: pending (including those waiting to be retried) and in flight."""
        with self._ready:
            return self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]

    def stats(self) -> QueueStats:
        with self._ready:
            states = dict(
                self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
            )
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            errors = [
                JobError(at, _dec(path), message, bool(final))  # type: ignore[arg-type]
                for at, path, message, final in self._db.execute(
                    "SELECT at, path, message, final FROM errors ORDER BY id DESC"
                )
            ]
        return QueueStats(
            pending=states.get("pending", 0),
            in_flight=states.get("leased", 0),
            done=counters.get("done", 0),
            unchanged=counters.get("unchanged", 0),
            failed=counters.get("failed", 0),
            retried=counters.get("retried", 0),
            errors=errors,
        )
