"""A command imports only what it runs: `search` answers without numpy, the models, PIL or exiv2.

A one-off `phototag search` is mostly interpreter and import time (docs/benchmarks.md), so
the parser registers only the named command's group and the groups import their heavy
modules inside the commands that use them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import phototag
from phototag import cli
from phototag.cli.common import show
from phototag.library.index import open_index
from tests.conftest import PHOTOS, need_shared

HEAVY = ("numpy", "onnxruntime", "PIL", "pyexiv2", "tqdm")

# Runs `phototag ARGS` in this fresh interpreter, then names the heavy modules and the
# command groups it loaded.
PROBE = f"""
import json, sys
import phototag
from phototag import cli
from phototag.cli.common import show
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules if m in {HEAVY!r} or m.startswith("phototag.cli."))
print(json.dumps({{"code": code, "loaded": loaded}}))
"""
SEARCH = ["phototag.cli.common", "phototag.cli.find"]


def run_probe(*args: str) -> tuple[list[str], dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    *lines, last = done.stdout.splitlines()
    return lines, json.loads(last)


def test_search_loads_no_model_image_or_metadata_library(
    tmp_path: Path, installed_model: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat_720p.jpg", "parrot.jpg"):
        shutil.copyfile(need_shared(PHOTOS) / name, folder / name)
    config = tmp_path / "config.yaml"
    config.write_text(f"index:\n  path: {tmp_path / 'index'}\n", encoding="utf-8")
    assert cli.main(["-q", "-c", str(config), "scan", str(folder)]) == 0
    with open_index(tmp_path / "index", readonly=True) as index:
        parrot = index.get(str(folder / "parrot.jpg"))
    assert parrot is not None and parrot.auto
    tag = parrot.auto[0].path

    found, probe = run_probe("-q", "-c", str(config), "search", f'"{tag}"')
    assert probe == {"code": 0, "loaded": SEARCH}
    assert str(folder / "parrot.jpg") in found

    _, probe = run_probe("-q", "-c", str(config), "search", "(unclosed")
    assert probe == {"code": 2, "loaded": SEARCH}  # a user error is still one line, status 2


def test_version_loads_no_command() -> None:
    found, probe = run_probe("--version")
    assert found == [f"phototag {phototag.__version__}"]
    assert probe == {"code": 0, "loaded": ["phototag.cli.common"]}


def test_a_command_that_runs_the_model_still_loads_it(tmp_path: Path) -> None:
    """The lazy imports are in the commands: `similar` without a model fails as before."""
    config = tmp_path / "config.yaml"
    config.write_text(f"index:\n  path: {tmp_path / 'index'}\n", encoding="utf-8")
    photo = need_shared(PHOTOS) / "parrot.jpg"
    _, probe = run_probe("-q", "-c", str(config), "similar", str(photo))
    assert probe["code"] == 2  # no model installed: one line, exit status 2
    assert "onnxruntime" in probe["loaded"]  # type: ignore[operator]


@pytest.mark.parametrize("group", sorted(set(cli.COMMANDS.values())))
def test_the_command_table_names_what_each_group_registers(group: str) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(f"phototag.cli.{group}").register(sub)
    assert sorted(sub.choices) == sorted(c for c, g in cli.COMMANDS.items() if g == group)


def test_the_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    listed = capsys.readouterr().out
    assert all(f"    {name} " in listed for name in cli.COMMANDS)


def test_show_escapes_control_characters_only() -> None:
    """The fast path (a printable path as it is) and the escaping path agree."""
    assert show("/photos/Été 2024/IMG 1.jpg") == "/photos/Été 2024/IMG 1.jpg"
    assert show("/photos/a\nb\x7f.jpg") == "/photos/a\\nb\\x7f.jpg"
    assert show("/photos/a\u00a0b.jpg") == "/photos/a\u00a0b.jpg"  # not printable, not Cc
    assert show(os.fsdecode(b"/photos/\xff.jpg")) == "/photos/\\xff.jpg"


def test_every_command_module_is_in_the_table() -> None:
    """A new cli/ module must be named in `cli.COMMANDS`, or its commands would not exist."""
    modules = {m.name for m in pkgutil.iter_modules(cli.__path__)} - {"common"}
    assert modules == set(cli.COMMANDS.values())
