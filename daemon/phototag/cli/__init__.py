"""The `phototag` command line: thin wrappers that parse, call one module, and report.

Every command prints results on stdout (pipe-friendly) and one line per problem on
stderr, and goes on with the other photos; the exit status is 1 when anything failed.
One module per command group, each with a `register(sub)` that adds its parsers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from phototag import __version__, catalogue, config
from phototag.cli import backfill, faces, learn, models, review, search, service, tag, tags, web
from phototag.cli import show as show_command
from phototag.cli.common import UserError, global_options, show
from phototag.learn import train
from phototag.library.index import IndexUnavailable
from phototag.service.daemon import ServiceError

COMMAND_GROUPS = (
    tag,
    show_command,
    tags,
    review,
    learn,
    search,
    faces,
    models,
    service,
    backfill,
    web,
)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phototag",
        description="Tag photos with a CNN and write the keywords where Lightroom, digiKam, "
        "darktable and exiftool read them (XMP dc:subject, lr:hierarchicalSubject, IPTC Keywords).",
        epilog=EPILOG.format(config=config.default_path()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"phototag {__version__}")
    global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
    except (
        UserError,
        config.ConfigError,
        catalogue.CatalogueError,
        IndexUnavailable,
        ServiceError,
        train.TrainError,
    ) as exc:
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
