"""Read a photo's bytes without hanging or exhausting memory, whatever sits at the path.

A FIFO named `x.jpg` would block `open()` forever and a character device (`zero.jpg`) or a
huge sparse file would be read into memory whole. So only regular files are read: checked
by `stat` before opening, opened with O_NONBLOCK (a FIFO swapped in after the check still
cannot block) and checked again on the open descriptor, refused above a size bound before
any byte is read, and read in bounded chunks that stop at the bound whatever `stat` said.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

CHUNK = 1 << 20
# The largest real camera files: a 150-megapixel 16-bit uncompressed TIFF is about 900 MB.
DEFAULT_MAX_BYTES = 1_000_000_000


class UnsafeFile(OSError):
    """Not a regular file, or larger than allowed; the message is one line for the user."""


def _check(st: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError("is a directory, not a photo")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile("not a regular file (a FIFO, device or socket); not read")
    if st.st_size > max_bytes:
        raise UnsafeFile(
            f"file too large ({st.st_size:,} bytes, limit scan.max_file_bytes {max_bytes:,}); not read"
        )


def read_regular(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at `path` (at most `max_bytes`) and its stat."""
    _check(os.stat(path), max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        _check(st, max_bytes)
        chunks, total = [], 0
        while chunk := os.read(fd, min(CHUNK, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew after the stat
                raise UnsafeFile(
                    f"file too large (over the limit scan.max_file_bytes {max_bytes:,}); not read"
                )
        return b"".join(chunks), st
    finally:
        os.close(fd)
