"""`models list|import|pull`: the model catalogue."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phototag import catalogue
from phototag.cli.common import (
    SUBCOMMAND_OPTIONS,
    Subparsers,
    command,
    emit,
    progress_bar,
    show,
)
from phototag.config import Config


def cmd_models_list(args: argparse.Namespace, cfg: Config) -> int:
    installed = {m.spec.ref for m in catalogue.installed()}
    rows = []
    for spec in catalogue.entries():
        mark = "installed" if spec.ref in installed else "available"
        newest = catalogue.find(spec.name).ref == spec.ref
        rows.append(
            {
                "model": spec.ref,
                "installed": mark == "installed",
                "size": spec.size,
                "licence": spec.licence,
                "newest": newest,
            }
        )
        if not args.json:
            note = "  (newest)" if newest else ""
            print(f"{spec.ref:<28} {mark:<10} {spec.size / 1e6:5.1f} MB  {spec.licence}{note}")
    if args.json:
        emit({"models": rows}, as_json=True)
    print(f"models folder: {show(catalogue.models_dir())}", file=sys.stderr)
    return 0


def _report(model: catalogue.InstalledModel, before: set[str]) -> None:
    """`installed REF -> PATH`, or that it already was (pull and import then changed nothing)."""
    if model.spec.ref in before:
        print(f"{model.spec.ref} is already installed -> {show(model.path)}")
    else:
        print(f"installed {model.spec.ref} -> {show(model.path)}")


def cmd_models_import(args: argparse.Namespace, cfg: Config) -> int:
    before = {m.spec.ref for m in catalogue.installed()}
    _report(catalogue.import_file(args.file, args.name), before)
    return 0


def cmd_models_pull(args: argparse.Namespace, cfg: Config) -> int:
    """Each NAME in turn; one that fails gets its line and the others are still pulled."""
    failed = 0
    for ref in args.refs:
        try:
            _pull(args, ref)
        except catalogue.CatalogueError as exc:
            print(f"phototag: {exc}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def _pull(args: argparse.Namespace, ref: str) -> None:
    name, version = catalogue.split_ref(ref)
    spec = catalogue.find(name, version)
    before = {m.spec.ref for m in catalogue.installed()}
    if spec.ref in before:
        _report(catalogue.pull(name, version), before)  # verified on disk, nothing downloaded
        return
    with progress_bar(args, spec.size, "B", f"pulling {spec.ref}") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total or bar.total
            bar.update(done - bar.n)

        model = catalogue.pull(name, version, progress)
    _report(model, before)


def register(sub: Subparsers) -> None:
    models = command(sub, "models", cmd_models_list, "list, download or import models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    p = msub.add_parser(
        "list", help="the model catalogue and what is installed", parents=[SUBCOMMAND_OPTIONS]
    )
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser(
        "import",
        parents=[SUBCOMMAND_OPTIONS],
        help="install a model file you have (checked against the catalogue's sha256)",
        description="Install a local model file. Its sha256 must match a catalogue entry; this is "
        "the offline way to get a model (e.g. `phototag models import mobilenet_v2_1.0_224_quant.onnx`).",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--name", help="catalogue name the file must belong to (e.g. mobilenet-v2)")
    p.set_defaults(func=cmd_models_import)
    p = msub.add_parser(
        "pull",
        parents=[SUBCOMMAND_OPTIONS],
        help="download a model by its pinned URL and sha256",
        description="Download a model from the catalogue's pinned URL, resuming an interrupted "
        "download and verifying its sha256. Set PHOTOTAG_MODEL_MIRROR to use a mirror.",
    )
    p.add_argument(
        "refs",
        nargs="+",
        metavar="NAME[@VERSION]",
        help="one or more, e.g. mobilenet-v2 (the newest) or mobilenet-v2@tf1-quant coco-nanodet",
    )
    p.set_defaults(func=cmd_models_pull)
