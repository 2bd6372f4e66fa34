"""Crash-safe writes: the folder fsync that makes a rename durable, batched or not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phototag.files import fileio


@pytest.fixture
def folder_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders fsynced, in order (file fsyncs are not listed)."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isdir(target):
            synced.append(target)
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    return synced


def test_each_write_syncs_its_folder(tmp_path: Path, folder_syncs: list[str]) -> None:
    for i in range(3):
        fileio.atomic_write(tmp_path / f"f{i}", b"x")
    assert folder_syncs == [str(tmp_path)] * 3


def test_a_batch_syncs_each_folder_once_when_it_ends(
    tmp_path: Path, folder_syncs: list[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with fileio.folder_syncs_batched():
        for i in range(3):
            fileio.atomic_write(tmp_path / "a" / f"f{i}", b"x")
            fileio.atomic_write(tmp_path / "b" / f"f{i}", b"y")
        assert folder_syncs == []  # held back until the batch is over
        assert (tmp_path / "a" / "f2").read_bytes() == b"x"  # the renames themselves are done
    assert folder_syncs == [str(tmp_path / "a"), str(tmp_path / "b")]
    fileio.atomic_write(tmp_path / "a" / "after", b"z")  # outside a batch: at once again
    assert folder_syncs[-1] == str(tmp_path / "a")


def test_a_failed_batch_still_syncs_what_it_renamed(
    tmp_path: Path, folder_syncs: list[str]
) -> None:
    with pytest.raises(RuntimeError), fileio.folder_syncs_batched():
        fileio.atomic_write(tmp_path / "f", b"x")
        raise RuntimeError("the next photo failed")
    assert folder_syncs == [str(tmp_path)]
