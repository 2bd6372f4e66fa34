"""`Index.search`: the tag index follows every write, and the CLI query path over a stored
synthetic library answers as a plain scan of the records does, fast."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import synthetic_library

from phototag import cli
from phototag.library.index import PhotoRecord, open_index
from phototag.library.query import And, Node, Not, Or, Term, parse
from phototag.library.tagindex import Filter, date_bound
from phototag.records import LEVEL_SEP, PhotoFile, Tag


def record(
    path: str, *tags: str, user: tuple[str, ...] = (), taken: str | None = None
) -> PhotoRecord:
    return PhotoRecord(
        path=path,
        size=1,
        mtime_ns=1,
        sha256=path.ljust(64, "0"),
        taken=taken,
        auto=[Tag(t, 0.9) for t in tags],
        user=list(user),
    )


def test_tag_index_follows_puts_moves_and_removes(backend: str, tmp_path: Path) -> None:
    with open_index(tmp_path, backend) as index:
        index.put_many(
            [
                record("/p/a/cat.jpg", "animal|mammal|cat"),
                record("/p/b/parrot.jpg", "animal|bird|parrot", taken="2021-05-01T10:00:00"),
            ]
        )
        assert index.search(parse("animal")) == ["/p/a/cat.jpg", "/p/b/parrot.jpg"]
        index.put(record("/p/a/dog.jpg", "animal|mammal|dog", user=("Rex",)))
        assert index.search(parse("rex")) == ["/p/a/dog.jpg"]
        assert index.search(parse("rex"), Filter(source="auto")) == []
        index.put(record("/p/a/cat.jpg", "food|hot dog"))  # re-tagged: the old tags go
        assert index.search(parse("cat")) == []
        assert index.search(parse('"hot dog"')) == ["/p/a/cat.jpg"]
        index.move("/p/b/parrot.jpg", PhotoFile(Path("/q/parrot.jpg"), 1, 2))
        assert index.search(parse("bird"), Filter(folder="/q")) == ["/q/parrot.jpg"]
        assert index.search(parse("bird"), Filter(folder="/p")) == []
        spring = Filter(taken_from=date_bound("2021-05"), taken_before=date_bound("2021", True))
        assert index.search(parse("animal"), spring) == ["/q/parrot.jpg"]
        index.remove("/p/a/dog.jpg")
        assert index.search(parse("animal")) == ["/q/parrot.jpg"]
        assert index.search(None) == ["/p/a/cat.jpg", "/q/parrot.jpg"]
    with open_index(tmp_path, backend, readonly=True) as reopened:  # afresh from the file
        assert reopened.search(parse("animal")) == ["/q/parrot.jpg"]
        assert reopened.search(parse("food NOT rex")) == ["/p/a/cat.jpg"]


def test_search_prints_undecodable_names_escaped(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = os.fsdecode(b"/p/caf\xe9 cat.jpg")  # a Latin-1 name on a UTF-8 system
    with open_index(tmp_path / "index", backend) as index:
        index.put(record(name, "animal|mammal|cat"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"index:\n  path: {tmp_path / 'index'}\n  backend: {backend}\n", encoding="utf-8"
    )
    assert cli.main(["-c", str(config), "search", "cat"]) == 0
    assert capsys.readouterr().out == "/p/caf\\xe9 cat.jpg\n"
    assert cli.main(["-c", str(config), "search", "--json", "cat"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == "/p/caf\\xe9 cat.jpg"


# --- the CLI over a stored synthetic library, against a scan of every record ---------------


def keys(path: str) -> set[str]:
    """What a tag is found by: each level's name and each path from the root, lower case."""
    levels = path.lower().split(LEVEL_SEP)
    return set(levels) | {LEVEL_SEP.join(levels[: i + 1]) for i in range(len(levels))}


def holds(node: Node, found: set[str]) -> bool:
    if isinstance(node, Term):
        return node.text in found
    if isinstance(node, Not):
        return not holds(node.operand, found)
    if isinstance(node, And):
        return all(holds(child, found) for child in node.operands)
    assert isinstance(node, Or)
    return any(holds(child, found) for child in node.operands)


def scan(records: list[PhotoRecord], query: str, flt: Filter) -> list[str]:
    node = parse(query)
    out = []
    for r in records:
        found: set[str] = set()
        if flt.source in ("auto", "any"):
            found |= {k for t in r.auto if t.score >= flt.min_score for k in keys(t.path)}
        if flt.source in ("user", "any"):
            found |= {k for keyword in r.user for k in keys(keyword)}
        taken = np.datetime64(r.taken) if r.taken else None
        if flt.taken_from is not None and (taken is None or taken < flt.taken_from):
            continue
        if flt.taken_before is not None and (taken is None or taken >= flt.taken_before):
            continue
        if flt.folder is not None and not r.path.startswith(flt.folder + "/"):
            continue
        if holds(node, found):
            out.append(r.path)
    return sorted(out)


N_PHOTOS = 20_000
CASES = [
    (["t0"], Filter()),
    (["--source", "user", "t3 OR kw1"], Filter(source="user")),
    (["--min-score", "0.5", "r1 -m7"], Filter(min_score=0.5)),
    (
        ["--from", "2018", "--to", "2019-06", "(t1 OR t2) NOT r3"],
        Filter(taken_from=date_bound("2018"), taken_before=date_bound("2019-06", end=True)),
    ),
    (["--folder", "/photos/2020", "NOT t0"], Filter(folder="/photos/2020")),
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PhotoRecord]]:
    root = tmp_path_factory.mktemp("stored")
    records = synthetic_library.photo_records(synthetic_library.library(N_PHOTOS, dim=0))
    with open_index(root / "index") as index:
        index.put_many(records)
    config = root / "config.yaml"
    config.write_text(f"index:\n  path: {root / 'index'}\n", encoding="utf-8")
    return config, records


@pytest.mark.parametrize(("args", "flt"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_cli_search_over_a_stored_library_is_exact_and_fast(
    stored: tuple[Path, list[PhotoRecord]], args: list[str], flt: Filter
) -> None:
    config, records = stored
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        assert cli.main(["-c", str(config), "search", *args]) == 0
    seconds = time.perf_counter() - start
    expected = scan(records, args[-1], flt)
    assert len(expected) > 100  # the cases are chosen to find many photos
    assert out.getvalue().splitlines() == expected
    # open + load 20 000 records + build the tag index + query + print: about 0.5 s on the
    # shared 2-core machine; a per-record lookup or scan in the query path takes far longer
    assert seconds < 5, f"search over {N_PHOTOS} stored photos took {seconds:.1f} s"


def test_search_piped_into_head_stops_quietly(stored: tuple[Path, list[PhotoRecord]]) -> None:
    config, _ = stored
    command = [sys.executable, "-m", "phototag", "-c", str(config), "search", "t0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()  # `| head -1`: read one line, then hang up
        child.stdout.close()
        errors = child.stderr.read()
    assert first.startswith(b"/photos/")
    assert child.returncode == 141, errors  # as a tool killed by SIGPIPE, no traceback
    assert errors == b""


def test_search_while_the_service_holds_the_index(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"index:\n  path: {tmp_path / 'index'}\n  backend: {backend}\n", encoding="utf-8"
    )
    with open_index(tmp_path / "index", backend) as writer:  # open for writing, as the service
        writer.put(record("/p/cat.jpg", "animal|mammal|cat"))
        writer.flush()
        assert cli.main(["-c", str(config), "search", "animal"]) == 0
    assert capsys.readouterr().out == "/p/cat.jpg\n"
