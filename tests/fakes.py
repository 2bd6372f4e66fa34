"""A processor that behaves like the pipeline without a model, for service tests.

Like the real one, it writes keywords into the photo through a temp file renamed over
it (so the write comes back as a watcher event) and indexes the photo as it is after
the write. Photos named `bad*` fail; photos named `slow*` take a second.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from phototag.config import Config
from phototag.files.fileio import atomic_write
from phototag.library.index import Index, PhotoRecord
from phototag.records import Outcome, PhotoFile, Tag
from phototag.service.daemon import ProcessorFactory

CAT = Tag("animal|mammal|cat", 0.9)


@dataclass
class FakeProcessor:
    index: Index
    journal: Path | None = None  # where calls are logged, for a test in another process
    version: str = "fake-model@1"
    calls: list[list[Path]] = field(default_factory=list)

    def _log(self, line: str) -> None:
        if self.journal is not None:
            with self.journal.open("a") as f:
                f.write(line + "\n")

    def __call__(self, paths: list[Path]) -> list[Outcome]:
        self.calls.append(list(paths))
        outcomes = []
        for path in paths:
            self._log(f"start {path.name}")
            if path.name.startswith("slow"):
                time.sleep(1.0)
            if path.name.startswith("bad"):
                outcomes.append(Outcome(path, error="cannot decode: truncated JPEG"))
                continue
            data = path.read_bytes() + b"<keywords>"
            atomic_write(path, data)
            file = PhotoFile.stat(path)
            sha = hashlib.sha256(data).hexdigest()
            record = PhotoRecord(
                str(path), file.size, file.mtime_ns, sha, auto=[CAT], written_to=str(path)
            )
            self.index.put(record)
            outcomes.append(Outcome(path, tags=[CAT], written_to=path))
            self._log(f"done {path.name}")
        return outcomes


def factory(journal: Path | None = None) -> ProcessorFactory:
    def make(cfg: Config, index: Index) -> FakeProcessor:
        return FakeProcessor(index, journal)

    return make
