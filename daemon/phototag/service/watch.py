"""Watch folders and turn file events into queue jobs, only for photos that are complete.

A photo is complete when the writer closes it (inotify's IN_CLOSE_WRITE) or, where no
close is seen (polling, network filesystems, a writer that keeps the file open), when
its size and mtime have held still for `settle_s` and, where the kernel can tell
(`open_for_writing`), nobody has it open for writing: a writer pausing longer than
`settle_s` is waited for, not tagged half-written. A rename onto a photo name is complete
at once: that is how downloaders, editors and our own metadata writer publish a file.

Our own keyword writes come back as events too (a temp file renamed over the photo).
They are not filtered here: the index records the photo's size and mtime after our
write, so the service finds such a job "unchanged" and finishes it without inference.
That holds however late the event arrives, which a "recently written" set would not.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import logging
import os
import re
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from phototag.config import Config
from phototag.files import sidecar
from phototag.files.fileio import is_temp, remove_stale_temp
from phototag.library.index import Index
from phototag.records import PhotoFile
from phototag.service.queue import Kind

log = logging.getLogger("phototag.watch")

Put = Callable[[Path, Kind, Path | None], None]


# Filesystems whose changes made by other machines inotify never reports.
NETWORK_FS = frozenset(
    [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "virtiofs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "afs",
        "ncpfs",
        "davfs",
        "fuse.sshfs",
        "sshfs",
        "fuse.rclone",
        "fuse.glusterfs",
        "fuse.davfs2",
        "fuse.s3fs",
        "fuse.gcsfuse",
    ]
)

# Only the events we act on reach us: no open/close-without-write storm while we read photos.
EVENTS = [
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
]


def folders(cfg: Config) -> list[Path]:
    """The watched folders as absolute paths, `~` expanded, as events and the index name them."""
    return [Path(os.path.abspath(Path(f).expanduser())) for f in cfg.watch.folders]


@dataclass(frozen=True)
class PathFilter:
    """Which paths are photos we watch: below a root, not hidden, a photo extension, globs.

    Hidden names cover our temp files (`.IMG.JPG.x.phototag-tmp`); the extension test
    covers partial downloads (`.part`, `.crdownload`), backups (`~`) and sidecars (`.xmp`).
    Globs are matched against the file name, the path below the root and the full path,
    so `*.tmp.jpg`, `Private/*` and `*/cache/*` all do what they look like. Symlinks follow
    scan's rule (`scan.follow_symlinks`, off by default): nothing outside the watched
    folders is written through a link.
    """

    roots: tuple[Path, ...]
    extensions: frozenset[str]
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    recursive: bool
    follow_symlinks: bool = False

    @classmethod
    def from_config(cls, cfg: Config) -> PathFilter:
        return cls(
            tuple(folders(cfg)),
            frozenset(e.lower() for e in cfg.scan.extensions),
            tuple(cfg.watch.include),
            tuple(cfg.watch.exclude),
            cfg.watch.recursive,
            cfg.scan.follow_symlinks,
        )

    def root_of(self, path: Path) -> Path | None:
        """The watched root `path` is visible below, if any."""
        for root in self.roots:
            if path.is_relative_to(root) and path != root:
                rel = path.relative_to(root)
                if any(part.startswith(".") for part in rel.parts):
                    return None
                return root if self.recursive or len(rel.parts) == 1 else None
        return None

    def below(self, path: Path) -> Path | None:
        """`path` relative to its watched root, if it is visible below one."""
        root = self.root_of(path)
        return None if root is None else path.relative_to(root)

    def accepts(self, path: Path) -> bool:
        rel = self.below(path)
        if rel is None or path.suffix.lower() not in self.extensions:
            return False
        names = (rel.name, rel.as_posix(), path.as_posix())

        def matches(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)

        if not matches(self.include) or matches(self.exclude):
            return False
        return self.follow_symlinks or not path.is_symlink()


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def open_for_writing(path: Path) -> bool | None:
    """Whether some process has `path` open for writing; None where the kernel will not say.

    The kernel grants a read lease (fcntl F_SETLEASE) only on a file nobody has open for
    writing (or mapped writable), so taking one and dropping it at once asks exactly that.
    It needs the file's owner (or CAP_LEASE) and a local filesystem; elsewhere the settle
    time alone decides. A writer opening the file in the microseconds we hold the lease
    waits for us, and the kernel signals us: SIGURG (ignored) rather than SIGIO (fatal).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


class Settler:
    """Photos that changed without a close event yet; emitted once they hold still and
    nobody has them open for writing.

    One thread sleeps on a condition until the earliest deadline, so an idle settler
    costs nothing.
    """

    def __init__(self, settle_s: float, emit: Callable[[Path], None]) -> None:
        self.settle_s = settle_s
        self._emit = emit
        self._due: dict[Path, tuple[float, tuple[int, int] | None]] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="phototag-settler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()

    def touch(self, path: Path) -> None:
        """`path` changed: emit it after `settle_s` without further change."""
        with self._cond:
            self._due[path] = (time.monotonic() + self.settle_s, _signature(path))
            self._cond.notify_all()

    def forget(self, path: Path) -> bool:
        """Stop waiting for `path`; True if it was waited for (still being written)."""
        with self._cond:
            return self._due.pop(path, None) is not None

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._cond:
                ready = self._settled()
                while not ready and not self._stopped:
                    first = min((d for d, _ in self._due.values()), default=None)
                    self._cond.wait(None if first is None else max(0.0, first - time.monotonic()))
                    ready = self._settled()
                if self._stopped:
                    return
            for path in ready:  # outside the lock: emitting takes the queue's lock
                self._emit(path)

    def _settled(self) -> list[Path]:
        """Pop the paths whose deadline passed with the file unchanged; re-arm the others."""
        now = time.monotonic()
        ready = []
        for path, (deadline, before) in list(self._due.items()):
            if deadline > now:
                continue
            after = _signature(path)
            if after is None or after[0] == 0:  # gone (a delete event follows) or still empty
                del self._due[path]
            elif after != before or open_for_writing(path):
                self._due[path] = (now + self.settle_s, after)
            else:
                del self._due[path]
                ready.append(path)
        return ready


def filesystem_type(folder: Path, mounts: Path = Path("/proc/mounts")) -> str:
    """The type of the filesystem holding `folder` per /proc/mounts; "" where unknown."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return ""
    real = os.path.realpath(folder)
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes space, tab, newline and backslash as octal.
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def polling_reason(folder: Path, cfg: Config) -> str | None:
    """Why `folder` must be polled rather than watched with inotify, or None."""
    if cfg.watch.poll:
        return "watch.poll is set"
    fstype = filesystem_type(folder)
    if fstype in NETWORK_FS:
        return f"it is on a network filesystem ({fstype}), where inotify misses other machines' changes"
    return None


def inotify_failure(exc: OSError) -> str:
    """One line that tells the user which kernel limit to raise."""
    if exc.errno == errno.ENOSPC:
        try:
            limit = Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip()
        except OSError:
            limit = "?"
        return (
            f"too few inotify watches (fs.inotify.max_user_watches = {limit}); raise it with "
            "`sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.d/ to keep it)"
        )
    if exc.errno == errno.EMFILE:
        return "too many inotify instances (raise fs.inotify.max_user_instances)"
    return f"inotify failed: {exc.strerror or exc}"


def identity(folder: Path) -> tuple[int, int] | None:
    """The folder's (device, inode); None when it is not there. A folder deleted, renamed
    away, unmounted or mounted over changes it, though its path may still exist."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


@dataclass(frozen=True)
class CatchUp:
    tag: int  # new or changed photos queued
    settling: int  # photos modified moments ago, left to the settler
    delete: int  # indexed photos that vanished
    kept: int = 0  # indexed photos below a folder that is empty or missing: not forgotten
    cleaned: int = 0  # stale temp files of ours removed


class Watcher(FileSystemEventHandler):
    """Observers over the configured folders, feeding `put(path, kind, old)`.

    Starts holding its events: the caller runs `catch_up` against the index, then
    `release`, so a live event (a delete) always lands after the catch-up's job for
    the same path (a tag) and wins.
    """

    def __init__(self, cfg: Config, put: Put, wake: Callable[[], None] = lambda: None) -> None:
        self.filter = PathFilter.from_config(cfg)
        self.cfg = cfg
        self._put = put
        self._wake = wake  # called when a watched folder itself goes away
        self._held: list[tuple[Path, Kind, Path | None]] | None = []
        self._lock = threading.Lock()
        self.settler = Settler(cfg.watch.settle_s, lambda p: self._emit(p, "tag"))
        self._observers: list[BaseObserver] = []
        self.polled: dict[Path, str] = {}  # folder -> why it is polled
        self.identities: dict[Path, tuple[int, int] | None] = {}  # when watching began

    def start(self) -> None:
        self.settler.start()
        inotify: BaseObserver | None = None
        for folder in self.filter.roots:
            self.identities[folder] = identity(folder)
            if self.identities[folder] is None:
                log.warning("%s: watched folder not found; watching it once it is back", folder)
                continue
            reason = polling_reason(folder, self.cfg)
            if reason is None:
                try:
                    if inotify is None:
                        inotify = Observer()
                        inotify.start()
                        self._observers.append(inotify)
                    self._schedule(inotify, folder)
                    continue
                except OSError as exc:
                    reason = inotify_failure(exc)
            log.warning(
                "%s: polling every %g s because %s",
                folder,
                self.cfg.watch.poll_interval_s,
                reason,
            )
            poller = PollingObserver(timeout=self.cfg.watch.poll_interval_s)
            self._schedule(poller, folder)
            poller.start()
            self._observers.append(poller)
            self.polled[folder] = reason

    def _schedule(self, observer: BaseObserver, folder: Path) -> None:
        observer.schedule(
            self, str(folder), recursive=self.cfg.watch.recursive, event_filter=EVENTS
        )

    def changed(self) -> list[Path]:
        """Watched folders gone, back, or replaced since watching began: watch them anew."""
        return [f for f, was in self.identities.items() if identity(f) != was]

    def stop(self) -> None:
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            observer.join()
        self._observers.clear()
        self.settler.stop()

    def release(self) -> None:
        """Pass on the events held since `start`, then every event as it comes."""
        with self._lock:
            for job in self._held or ():
                self._put(*job)
            self._held = None

    def _emit(self, path: Path, kind: Kind, old: Path | None = None) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append((path, kind, old))
            else:
                self._put(path, kind, old)

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._on(event)
        except Exception:  # an exception here would silently end the observer's thread
            log.exception("cannot handle %s", event)

    def _photo_of(self, path: Path) -> Path | None:
        """The watched photo whose sidecar `path` is (IMG.JPG.xmp or IMG.xmp), if any."""
        if path.suffix.lower() != ".xmp":
            return None
        photo = path.with_suffix("")
        if self.filter.accepts(photo) and photo.exists():
            return photo
        return next(
            (p for p in sorted(path.parent.glob(f"{path.stem}.*")) if self.filter.accepts(p)),
            None,
        )

    def _on(self, event: FileSystemEvent) -> None:
        src = Path(os.fsdecode(event.src_path))
        accepts = self.filter.accepts
        dest = Path(os.fsdecode(event.dest_path)) if event.event_type == "moved" else src
        photo = None if event.is_directory else self._photo_of(dest)
        if photo is not None:
            # Another program (darktable, digiKam) wrote the sidecar: read the keywords again.
            # Our own sidecar writes come back too and end as "unchanged" (sidecar.unchanged).
            if event.event_type in ("closed", "moved", "deleted"):
                self._emit(photo, "tag")
            return
        if event.is_directory:
            # A folder moved out of the tree (to the trash) reports only itself, not its photos.
            if event.event_type == "deleted" and self.filter.below(src) is not None:
                self._emit(src, "delete")
            elif event.event_type == "deleted" and src in self.identities:
                self._wake()
            return
        if event.event_type == "closed":
            if accepts(src):
                self.settler.forget(src)
                self._emit(src, "tag")
        elif event.event_type in ("created", "modified"):
            if accepts(src):
                self.settler.touch(src)
        elif event.event_type == "deleted":
            if accepts(src):
                self.settler.forget(src)
                self._emit(src, "delete")
        elif event.event_type == "moved":
            self._moved(src, Path(os.fsdecode(event.dest_path)))

    def _moved(self, src: Path, dest: Path) -> None:
        was_photo, is_photo = self.filter.accepts(src), self.filter.accepts(dest)
        half_written = self.settler.forget(src)
        if was_photo and is_photo and not half_written:
            self._emit(dest, "move", src)  # tags and vectors follow, no inference
            return
        if was_photo:
            self._emit(src, "delete")
        if is_photo:
            if half_written:
                self.settler.touch(dest)
            else:  # renamed onto a photo name: published complete (downloads, atomic saves)
                self._emit(dest, "tag")

    def listing(self) -> Iterator[tuple[Path, Path, list[str]]]:
        """(root, folder, file names) below the watched folders, hidden folders left out;
        symlinked folders followed as scan follows them (each real folder once, so a link
        loop ends), symlinked files left to `PathFilter.accepts`."""
        follow = self.filter.follow_symlinks
        seen: set[tuple[int, int]] = set()
        for root in self.filter.roots:
            for folder, subdirs, files in os.walk(root, onerror=_walk_error, followlinks=follow):
                try:
                    st = os.stat(folder)
                except OSError:
                    subdirs[:] = []
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    subdirs[:] = []
                    continue
                seen.add((st.st_dev, st.st_ino))
                visible = sorted(d for d in subdirs if not d.startswith("."))
                subdirs[:] = visible if self.filter.recursive else []
                yield root, Path(folder), sorted(files)

    def walk(self) -> Iterator[Path]:
        """The photos below the watched folders now."""
        for _, folder, names in self.listing():
            yield from (folder / n for n in names if self.filter.accepts(folder / n))

    def catch_up(self, index: Index, stop: threading.Event | None = None) -> CatchUp:
        """Queue what changed while nobody watched: new and changed photos first, then the gone.

        Tags go first so that a photo moved while we were away is found by content at
        its new path (the pipeline moves its record) before its old path is forgotten.
        Photos open for writing, or (where the kernel cannot tell) modified within
        `settle_s`, are left to the settler. One the kernel says nobody writes is queued
        at once, however recent: it may be one of ours, tagged moments before a stop and
        then moved, whose old record must not be forgotten before it is found.
        Our temp files left by a killed write are removed on the way. A watched folder
        with no photos at all while the index has some below it is taken for an
        unmounted disk or share, not for a mass deletion: its records are kept.
        """
        tag = settling = cleaned = 0
        seen: set[str] = set()
        found: set[Path] = set()  # roots with photos
        now = time.time()
        for root, folder, names in self.listing():
            if stop is not None and stop.is_set():
                break
            for name in names:
                path = folder / name
                if is_temp(name):
                    cleaned += remove_stale_temp(path, now)
                    continue
                if not self.filter.accepts(path):
                    continue
                try:
                    file = PhotoFile.stat(path)
                except OSError:
                    continue
                seen.add(str(path))
                found.add(root)
                if sidecar.unchanged(index, file, self.cfg.write):
                    continue
                writing = open_for_writing(path)
                if writing or (
                    writing is None and now - file.mtime_ns / 1e9 < self.settler.settle_s
                ):
                    self.settler.touch(path)
                    settling += 1
                else:
                    self._put(path, "tag", None)
                    tag += 1
        gone, kept = [], Counter[Path]()
        for indexed in index.paths():
            path = Path(indexed)
            root = self.filter.root_of(path)
            if root is None or indexed in seen or os.path.lexists(path):
                continue
            if root in found:
                gone.append(path)
            else:
                kept[root] += 1
        for root, n in kept.items():
            log.warning(
                "%s: no photos found, but %d are indexed below it; is it unmounted? "
                "They stay indexed until they are seen deleted",
                root,
                n,
            )
        for path in gone:
            self._put(path, "delete", None)
        return CatchUp(tag, settling, len(gone), kept.total(), cleaned)


def _walk_error(exc: OSError) -> None:
    log.warning("%s: cannot list folder: %s", exc.filename, exc.strerror or exc)
