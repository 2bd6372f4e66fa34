"""`phototag watch`: the long-running service around the watcher, the queue and the pipeline.

One main thread takes jobs from the persistent queue in batches and runs them; the
watcher's threads only add jobs. Tag jobs go to a `Processor` (the real one is the
pipeline; tests pass a fake), moves and deletes go to the index. Idle, the main thread
sleeps on the queue's condition and wakes every `HEARTBEAT_S` to refresh the status file.

Signals: SIGTERM/SIGINT finish the run in flight (RUN_BATCHES batches) and exit 0; a
second SIGINT kills at once (the queue survives that). SIGHUP reloads the settings,
keeping the old ones when the new ones are wrong. systemd hears READY/RELOADING/STOPPING
through sd_notify.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from phototag import config, paths, web
from phototag.config import Config, ConfigError
from phototag.files import sidecar
from phototag.files.fileio import atomic_write
from phototag.library.index import Index, open_index
from phototag.records import Outcome, PhotoFile, local_time
from phototag.service import moves
from phototag.service.queue import Job, JobError, Queue, QueueError, pid_alive
from phototag.service.watch import Watcher, folders, identity

if TYPE_CHECKING:
    from phototag.pipeline.runner import Pipeline

log = logging.getLogger("phototag.service")

HEARTBEAT_S = 30.0  # the status file is rewritten (and watched folders checked) this often
FLUSH_EVERY_S = 5.0  # while busy, the index is written at most this often; at once when idle
FLUSH_SHARE = 0.1  # and at most this share of a busy service's time goes to writing it
# Jobs taken at once, in model batches: within one pipeline run the next batch is decoded
# while this one is written, which a run per batch cannot do. A run is also what SIGTERM
# waits for, so it stays a few batches.
RUN_BATCHES = 4
STALE_S = 3 * HEARTBEAT_S  # an older status file means the service is not running
STATUS_EVERY_S = 2.0  # at most this often while busy
QUEUE_FILE = "queue.sqlite3"
STATUS_FILE = "status.json"


class ServiceError(Exception):
    """The service cannot do what was asked (unreadable status, cannot install); one line."""


class Processor(Protocol):
    """Tags photos: `Pipeline.run` with the model loaded, or a fake in tests."""

    version: str  # the model version, for `phototag status`

    def __call__(self, paths: list[Path]) -> list[Outcome]: ...


ProcessorFactory = Callable[[Config, Index], Processor]


@dataclass
class PipelineProcessor:
    pipeline: Pipeline

    @property
    def version(self) -> str:
        return str(self.pipeline.tagger.version)

    def __post_init__(self) -> None:
        self.pipeline.on_committed = _report

    def __call__(self, paths: list[Path]) -> list[Outcome]:
        return self.pipeline.run(paths)

    def idle(self, cfg: Config) -> None:
        """Retrain TagProp once enough new keywords of the user's have come in (cheap check)."""
        from phototag.learn import train

        tagger, index = self.pipeline.tagger, self.pipeline.index
        if index is None or cfg.write.dry_run:
            return
        trained = train.retrain_if_stale(index, tagger.stores, tagger.learned, cfg.tagprop)
        if trained is not None:
            tagger.use(trained.digest, trained.learned)
            log.info(
                "learned %d of your keywords from %d photos (model %s); "
                "`phototag refine` re-scores photos tagged before",
                len(trained.data.tags),
                trained.data.keyworded,
                trained.digest,
            )


def pipeline_processor(cfg: Config, index: Index) -> Processor:
    """The real processor. Imported here, not at the top, so `phototag status` and the
    service's tests load neither ONNX Runtime nor the model."""
    from phototag.pipeline import tagger
    from phototag.pipeline.runner import Pipeline

    # force: the service already skipped photos the index says are unchanged.
    pipeline = Pipeline(
        cfg, tagger.load(cfg), index, dry_run=cfg.write.dry_run, force=True, flush=False
    )
    return PipelineProcessor(pipeline)


def validate(cfg: Config) -> list[Path]:
    """The folders to watch, or a ConfigError saying what to fix."""
    where = cfg.source or config.default_path()
    if not cfg.watch.folders:
        raise ConfigError(
            f"{where}: watch.folders is empty: name the folders to watch, e.g.\n"
            "watch:\n  folders: [~/Pictures]"
        )
    if cfg.watch.settle_s < 0 or cfg.watch.poll_interval_s <= 0:
        raise ConfigError(f"{where}: watch.settle_s and watch.poll_interval_s must be positive")
    result = folders(cfg)
    for given, folder in zip(cfg.watch.folders, result, strict=True):
        if not folder.exists():
            raise ConfigError(f"{where}: watch.folders: {given}: no such folder")
        if not folder.is_dir():
            raise ConfigError(f"{where}: watch.folders: {given}: not a folder")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise ConfigError(f"{where}: watch.folders: {given}: cannot read it (permissions)")
    return result


# --- systemd ------------------------------------------------------------------------


def sd_notify(*fields: str) -> bool:
    """Tell systemd (Type=notify) about our state; False when not started by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", address.lstrip("\0"), exc)
        return False
    return True


def under_journald() -> bool:
    """True when stderr goes to the journal (systemd sets JOURNAL_STREAM to its dev:inode)."""
    try:
        dev, ino = (int(v) for v in os.environ["JOURNAL_STREAM"].split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (KeyError, ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFormatter(logging.Formatter):
    """Plain lines with sd-daemon(3) "<N>" priority prefixes; journald adds the time."""

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 2)}>{super().format(record)}"


class LocalTimeFormatter(logging.Formatter):
    """Log lines dated as `phototag status` dates everything: ISO 8601, local time, offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return local_time(record.created)


def configure_logging(verbose: bool = False) -> None:
    """Service logging: INFO by default (one line per photo), timestamps unless journald."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(LocalTimeFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )


# --- status -------------------------------------------------------------------------


@dataclass
class ServiceStatus:
    """What `phototag status` shows; written by the service, read by anyone."""

    pid: int
    started: float
    updated: float
    # starting | catching up | idle (nothing waits) | waiting to retry | tagging | learning | stopped
    state: str
    folders: list[str]
    polled: list[str]  # folders watched by polling (network filesystem, inotify limits)
    model_version: str
    queued: int = 0
    in_flight: int = 0
    done: int = 0  # photos tagged, moved or forgotten (not job attempts)
    unchanged: int = 0  # events with nothing to do, such as our own writes coming back
    failed: int = 0  # given up: after retries, or at once for a file that is not an image
    retried: int = 0
    errors: list[JobError] = field(default_factory=list)  # newest first
    missing: list[str] = field(default_factory=list)  # watched folders not there now
    running: bool = False  # computed by `status()`, not stored

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("running")
        data["errors"] = [[e.at, str(e.path), e.message, e.final] for e in self.errors]
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, text: str) -> ServiceStatus:
        data = json.loads(text)
        data["errors"] = [JobError(at, Path(p), m, f) for at, p, m, f in data["errors"]]
        return cls(**data)


def status_path(state_dir: Path | None = None) -> Path:
    return (state_dir or paths.state_dir()) / STATUS_FILE


def status(state_dir: Path | None = None) -> ServiceStatus | None:
    """The service's last status; None if it never ran with this state dir.

    `running` is true when its process is alive and it wrote the file recently (a
    reused pid alone would fool us; a stale file alone would too).
    """
    path = status_path(state_dir)
    try:
        result = ServiceStatus.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServiceError(f"{path}: unreadable status file: {exc}") from None
    result.running = (
        result.state != "stopped"
        and pid_alive(result.pid)
        and time.time() - result.updated < STALE_S
    )
    return result


# --- the service --------------------------------------------------------------------


class Service:
    """The main loop; `run()` returns the exit status."""

    def __init__(self, cfg: Config, make_processor: ProcessorFactory = pipeline_processor):
        self.cfg = cfg
        self.make_processor = make_processor
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.state_dir = paths.state_dir()
        self.started = time.time()
        self._state = "starting"
        self._status_at = 0.0
        self._status_state = ""
        self._unflushed: list[Job] = []  # finished, but the index holding it is not written yet
        self._unchanged = 0  # how many of those found nothing to do
        self._flush_due = time.monotonic() + FLUSH_EVERY_S

    # signals ------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: object = None) -> None:
        if signum == signal.SIGINT:  # a second Ctrl-C kills at once
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        self.stopping.set()
        self._queue.wake()

    def request_reload(self, signum: int | None = None, frame: object = None) -> None:
        self.reload_requested.set()
        self._queue.wake()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # tests run the service in a thread and call request_stop()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    # lifecycle ----------------------------------------------------------------------

    def run(self) -> int:
        validate(self.cfg)
        try:
            queue = Queue(self.state_dir / QUEUE_FILE)
        except QueueError as exc:
            raise ServiceError(str(exc)) from None
        with (
            queue as self._queue,
            open_index(self.cfg.index_dir, self.cfg.index.backend) as self._index,
        ):
            self._install_signals()
            recovered = self._queue.recover()
            if recovered:
                log.info("%d jobs of a stopped run are queued again", recovered)
            self._processor = self.make_processor(self.cfg, self._index)
            self._watcher = self._start_watcher(self.cfg)
            stop_web = web.beside_service(self.cfg, self._index)
            try:
                self._loop()
            finally:
                sd_notify("STOPPING=1")
                stop_web()
                self._watcher.stop()
                self._flush()
                self._state = "stopped"
                self._write_status(force=True)
        log.info("stopped")
        return 0

    def _start_watcher(self, cfg: Config) -> Watcher:
        """Watch first and hold the events, catch up with the index, then let events through."""
        watcher = Watcher(cfg, self._queue.put, wake=self._queue.wake)
        watcher.start()
        self._state = "catching up"
        self._write_status(force=True, watcher=watcher)
        # Ready once events are caught: a catch-up of a big network tree may outlast
        # systemd's start timeout, and nothing is lost while it runs.
        sd_notify("READY=1", "STATUS=catching up")
        found = watcher.catch_up(self._index, self.stopping)
        watcher.release()
        log.info(
            "folders watched: %d; since the last run: %d new or changed, %d vanished, %d settling",
            len(watcher.filter.roots),
            found.tag,
            found.delete,
            found.settling,
        )
        if found.cleaned:
            log.info("removed %d temp files left by interrupted writes", found.cleaned)
        self._state = "idle"
        sd_notify(f"STATUS={self._summary()}")
        return watcher

    def _loop(self) -> None:
        run_size = RUN_BATCHES * max(1, self.cfg.model.batch_size)
        worked = False  # since the last idle time
        while not self.stopping.is_set():
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()
            self._check_folders()
            # Idle: make what was done durable before sleeping; busy: when due.
            if self._unflushed and (not self._queue.ready() or time.monotonic() > self._flush_due):
                self._flush()
            # idle only when nothing waits: a job backing off before its retry is waiting
            self._state = "idle" if len(self._queue) == 0 else "waiting to retry"
            self._write_status()
            jobs = self._queue.take(run_size, timeout=HEARTBEAT_S)
            if jobs:
                self._state = "tagging"
                self._write_status()
                sd_notify(f"STATUS={self._summary()}")
                worked |= self._work(jobs)
                sd_notify(f"STATUS={self._summary()}")
            elif worked:
                worked = False
                self._idle()

    def _idle(self) -> None:
        """Quiet after work: the processor may retrain (the pipeline's does), never failing us."""
        idle = getattr(self._processor, "idle", None)
        if idle is None:
            return
        self._state = "learning"
        self._write_status()
        try:
            idle(self.cfg)
        except Exception as exc:  # the old model keeps working
            log.error("retraining failed: %s", str(exc).splitlines()[0] if str(exc) else exc)

    def _check_folders(self) -> None:
        """A watched folder deleted, renamed away, unmounted or mounted (again): say so, and
        watch the folders anew; the catch-up keeps an empty folder's photos indexed."""
        changed = self._watcher.changed()
        if not changed:
            return
        for folder in changed:
            if identity(folder) is None:
                log.warning(
                    "%s: watched folder is gone (deleted, moved or unmounted); its photos stay "
                    "indexed, and it is watched again once it is back",
                    folder,
                )
            else:
                log.warning("%s: watched folder is back or was replaced; catching up", folder)
        old, self._watcher = self._watcher, self._start_watcher(self.cfg)
        old.stop()

    def _reload(self) -> None:
        sd_notify("RELOADING=1")
        try:
            cfg = config.load(self.cfg.source)
            validate(cfg)
            if cfg.index_dir != self.cfg.index_dir:
                raise ConfigError("index.path changed: restart the service to use the new index")
            processor = self.make_processor(cfg, self._index)
        except Exception as exc:  # whatever is wrong, the old settings keep working
            log.error("reload failed, keeping the old settings: %s", str(exc).splitlines()[0])
            sd_notify("READY=1", f"STATUS={self._summary()}")
            return
        if (cfg.watch, cfg.scan) != (self.cfg.watch, self.cfg.scan):
            old, self._watcher = self._watcher, self._start_watcher(cfg)  # says READY=1
            old.stop()
        else:
            sd_notify("READY=1", f"STATUS={self._summary()}")
        self.cfg, self._processor = cfg, processor
        log.info("settings reloaded from %s", cfg.source or "defaults")

    # work ---------------------------------------------------------------------------

    def _work(self, jobs: list[Job]) -> bool:
        """Run jobs in their queue order: consecutive tags as one batch, moves and deletes
        one by one between them (a photo tagged, then moved, must be tagged first).

        Jobs are marked done only after the index is flushed (`_flush`), so a crash in
        between repeats them instead of losing their index updates. True when a job did
        something: our own keyword write coming back later is no new stretch of work.
        """
        unchanged = self._unchanged
        finished: list[Job] = []
        tags: list[Job] = []
        for job in jobs:
            if job.kind == "tag":
                tags.append(job)
                continue
            finished += self._tag(tags)
            tags = []
            if self._relocate(job):
                finished.append(job)
        self._unflushed += finished + self._tag(tags)
        return self._unchanged - unchanged < len(jobs)

    def _flush(self) -> None:
        """Write the index, then mark the jobs it covers done.

        Writing the index rewrites all of it (TinyDB's one JSON file: about 20 ms at
        1 000 photos, 0.2 s at 10 000; docs/benchmarks.md), so a busy service does it
        every FLUSH_EVERY_S, or less often where it takes more than FLUSH_SHARE of the
        time, rather than after every batch; a kill -9 in between only repeats the
        unflushed jobs.
        """
        start = time.monotonic()
        self._index.flush()
        self._queue.done(self._unflushed, self._unchanged)
        self._unflushed, self._unchanged = [], 0
        took = time.monotonic() - start
        self._flush_due = start + took + max(FLUSH_EVERY_S, took / FLUSH_SHARE)

    def _tag(self, jobs: list[Job]) -> list[Job]:
        finished, todo = [], []
        for job in jobs:
            try:
                unchanged = sidecar.unchanged(self._index, PhotoFile.stat(job.path), self.cfg.write)
            except FileNotFoundError:  # gone again: its delete or move job follows
                finished.append(job)
                self._unchanged += 1
                continue
            except OSError as exc:
                self._failed(job, exc.strerror or str(exc))
                continue
            # Unchanged: our own keyword write coming back as an event, or a touched file.
            (finished if unchanged else todo).append(job)
            self._unchanged += unchanged
        if not todo:
            return finished
        try:
            outcomes = {str(o.path): o for o in self._processor([j.path for j in todo])}
        except OSError as exc:  # a full disk at the index: one line, the jobs are retried
            log.warning("tagging a batch of %d failed: %s", len(todo), exc.strerror or exc)
            outcomes = {str(j.path): Outcome(j.path, error=f"{exc.strerror or exc}") for j in todo}
        except Exception as exc:  # a bug or a broken model: keep the jobs, retry later
            log.exception("tagging a batch of %d failed", len(todo))
            outcomes = {str(j.path): Outcome(j.path, error=f"{exc}") for j in todo}
        for job in todo:
            outcome = outcomes.get(str(job.path)) or Outcome(job.path, error="no result")
            if outcome.error:
                self._failed(job, outcome.error, outcome.permanent)
            else:
                finished.append(job)
                if not outcome.reported:
                    log.info("%s", _describe(outcome))
        return finished

    def _relocate(self, job: Job) -> bool:
        """Apply a move or delete to the index; False when it failed (and will be retried)."""
        if self.cfg.write.dry_run:
            log.info("dry run: would %s %s", job.kind, job.path)
            return True
        try:
            if job.kind == "move" and job.old is not None:
                if moves.move(self._index, job.old, job.path):
                    self._queue.put(job.path, "tag")
                log.info("%s -> %s", job.old, job.path)
            elif job.path.suffix.lower() in self._watcher.filter.extensions:
                if moves.delete(self._index, job.path, job.old):
                    log.info("%s: gone, forgotten", job.path)
            elif n := moves.delete_folder(self._index, job.path):
                log.info("%s: folder gone, %d photos forgotten", job.path, n)
        except OSError as exc:
            self._failed(job, f"{exc.strerror or exc}")
            return False
        return True

    def _failed(self, job: Job, message: str, permanent: bool = False) -> None:
        retry = self._queue.failed(job, message, permanent)
        log.warning("%s: %s%s", job.path, message, " (will retry)" if retry else " (giving up)")

    # status -------------------------------------------------------------------------

    def _summary(self) -> str:
        q = self._queue.stats()
        return f"{self._state}: {q.pending} queued, {q.done} done, {q.failed} failed"

    def _write_status(self, force: bool = False, watcher: Watcher | None = None) -> None:
        now = time.time()
        if (
            not force
            and self._state == self._status_state
            and now - self._status_at < STATUS_EVERY_S
        ):
            return
        self._status_at, self._status_state = now, self._state
        watcher = watcher or self._watcher
        q = self._queue.stats()
        current = ServiceStatus(
            pid=os.getpid(),
            started=self.started,
            updated=now,
            state=self._state,
            folders=[str(f) for f in watcher.filter.roots],
            polled=[str(f) for f in watcher.polled],
            model_version=self._processor.version,
            missing=[str(f) for f, was in watcher.identities.items() if was is None],
            queued=q.pending,
            in_flight=q.in_flight,
            done=q.done,
            unchanged=q.unchanged,
            failed=q.failed,
            retried=q.retried,
            errors=q.errors,
        )
        try:
            # Readable by all: `phototag status` may run as another user than the service.
            atomic_write(status_path(self.state_dir), current.to_json(), mode=0o644)
        except OSError as exc:
            log.warning("cannot write the status file: %s", exc.strerror or exc)


def _report(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        log.info("%s", _describe(outcome))
        outcome.reported = True


def _describe(outcome: Outcome) -> str:
    """One log line per photo; "tagged" exactly when it was inferred and written."""
    if outcome.skipped:
        return f"{outcome.path}: {outcome.skipped}"
    tags = ", ".join(f"{t.name} {t.score:.2f}" for t in outcome.tags) or "no confident tags"
    return f"tagged {outcome.path}: {tags} -> {outcome.written_to}"


def run(cfg: Config, make_processor: ProcessorFactory = pipeline_processor) -> int:
    """`phototag watch`: serve until SIGTERM/SIGINT; returns the exit status (0)."""
    return Service(cfg, make_processor).run()


def describe(st: ServiceStatus | None) -> str:
    """`phototag status` output: a few lines a person reads."""
    if st is None:
        return "phototag service: never ran here (no status file)"
    head = (
        f"phototag service: running (pid {st.pid}, since {local_time(st.started)}), {st.state}"
        if st.running
        else f"phototag service: not running (last seen {local_time(st.updated)})"
    )
    lines = [
        head,
        f"folders: {', '.join(st.folders)}"
        + (f" (polled: {', '.join(st.polled)})" if st.polled else "")
        + (f" (missing: {', '.join(st.missing)})" if st.missing else ""),
        f"model: {st.model_version}",
        f"queue: {st.queued} waiting, {st.in_flight} in progress; "
        f"{st.done} photos done, {st.failed} failed, {st.retried} retries "
        f"({st.unchanged} events with nothing to do)",
    ]
    lines += [
        f"  {local_time(e.at)} {e.path}: {e.message}" + ("" if e.final else " (will retry)")
        for e in st.errors[:5]
    ]
    return "\n".join(lines)
