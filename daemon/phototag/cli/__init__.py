"""The `phototag` command line: thin wrappers that parse, call one module, and report.

Every command prints results on stdout (pipe-friendly) and one line per problem on
stderr, and goes on with the other photos; the exit status is 1 when anything failed.
One module per command group, each with a `register(sub)` that adds its parsers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from phototag import __version__, config
from phototag.cli.common import UserError, global_options, show

# The module (phototag.cli.GROUP) that registers each command, in the order of the help. A
# command imports only its own group, so `search` starts without the models, PIL or exiv2
# (tests/test_cli_imports.py checks this table against what the groups register).
COMMANDS = {
    "tag": "tag",
    "scan": "tag",
    "show": "show",
    "tags": "tags",
    "refine": "review",
    "suggest": "review",
    "undo": "review",
    "train": "learn",
    "eval": "learn",
    "search": "find",
    "similar": "search",
    "duplicates": "search",
    "cluster": "search",
    "faces": "faces",
    "models": "models",
    "watch": "service",
    "status": "service",
    "service": "service",
    "backfill": "backfill",
    "web": "web",
}

VERSION = f"phototag {__version__}"

# Exceptions that are one line for the user (exit status 2), by the module defining them. Only
# a module a command has loaded can raise its own, so the tuple is made when one is raised.
USER_ERRORS = {
    "phototag.catalogue": "CatalogueError",
    "phototag.library.index": "IndexUnavailable",
    "phototag.service.daemon": "ServiceError",
    "phototag.learn.train": "TrainError",
}

EPILOG = """\
first steps:
  phototag models pull mobilenet-v2          download the default model (pinned sha256)
  phototag models import FILE.onnx           or install a model file you already have
  phototag tag ~/Pictures/cat.jpg            tag one photo, writing keywords into it
  phototag scan ~/Pictures                   tag every photo below a folder
  phototag refine                            re-tag after a model or threshold change
  phototag train                             learn your own keywords, then refine
  phototag undo ~/Pictures                   remove phototag's keywords, keep yours
  phototag search 'cat AND (beach OR sea)'   find indexed photos by their tags
  phototag web passwd; phototag web          browse and review the library at http://127.0.0.1:8765
settings: {config} (see config.yaml in the project for every setting)
"""


def groups(argv: Sequence[str]) -> list[ModuleType]:
    """The command modules to register: the named command's alone, else all (for the help).

    `--version` is answered here, before any group is imported.
    """
    peek = argparse.ArgumentParser(prog="phototag", add_help=False)
    peek.add_argument("--version", action="version", version=VERSION)
    global_options(peek)
    peek.add_argument("command", nargs="?")
    named = peek.parse_known_args(argv)[0].command
    wanted = [COMMANDS[named]] if named in COMMANDS else dict.fromkeys(COMMANDS.values())
    return [importlib.import_module(f"phototag.cli.{group}") for group in wanted]


def user_errors() -> tuple[type[Exception], ...]:
    loaded = [getattr(sys.modules[m], name) for m, name in USER_ERRORS.items() if m in sys.modules]
    return (UserError, config.ConfigError, *loaded)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the command groups `groups(argv)` names (all of them by default)."""
    parser = argparse.ArgumentParser(
        prog="phototag",
        description="Tag photos with a CNN and write the keywords where Lightroom, digiKam, "
        "darktable and exiftool read them (XMP dc:subject, lr:hierarchicalSubject, IPTC Keywords).",
        epilog=EPILOG.format(config=config.default_path()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=VERSION)
    global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for group in groups(argv or []):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:  # plain `phototag`: what it can do, not an error
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="phototag: %(message)s",
        stream=sys.stderr,
        force=True,  # the stderr of this call: main() may run many times in one process
    )
    try:
        cfg = config.load(args.config)
        if getattr(args, "write_mode", None):
            cfg.write.mode = args.write_mode
        return args.func(args, cfg)
    except user_errors() as exc:  # evaluated only when something was raised
        print(f"phototag: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phototag: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `phototag search cat | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # as a tool killed by SIGPIPE
    except OSError as exc:  # a full disk or a failing drive at the index or the queue
        where = f"{show(exc.filename)}: " if exc.filename else ""
        print(f"phototag: {where}{exc.strerror or exc}; stopped here", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
