"""`web`: serve the web app alone, and `web passwd`: set a login password."""

from __future__ import annotations

import argparse
import getpass
import sys

from phototag.cli.common import Subparsers, UserError, command, open_index, show
from phototag.config import Config


def cmd_web(args: argparse.Namespace, cfg: Config) -> int:
    from phototag.web import auth, server

    if args.action == "passwd":
        password = _read_password()
        try:
            where = auth.set_password(args.user, password)
        except auth.AuthError as exc:
            raise UserError(str(exc)) from None
        print(f"password of {args.user} set (scrypt hash in {show(where)})", file=sys.stderr)
        return 0
    if args.listen:
        cfg.web.listen = args.listen
    try:
        server.listen_address(cfg.web.listen)
    except server.ListenError as exc:
        raise UserError(str(exc)) from None
    with open_index(cfg, dry_run=False) as index:
        srv = server.server(cfg, index)
        print(f"phototag: serving http://{cfg.web.listen} (Ctrl-C stops)", file=sys.stderr)
        srv.run()
    return 0


def _read_password() -> str:
    """Asked twice on a terminal; one line on standard input otherwise (scripts, tests)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new web password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ; nothing changed")
    return first


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "web",
        cmd_web,
        "serve the web app (library, search, review, tag an upload); `web passwd` sets a login",
        description="Serve the local web app at web.listen (default http://127.0.0.1:8765) "
        "without watching folders; `phototag watch` serves it too when web.enabled. "
        "`phototag web passwd` sets the login password (stored as a salted scrypt hash).",
    )
    p.add_argument("action", nargs="?", choices=["serve", "passwd"], default="serve")
    p.add_argument("--listen", metavar="HOST:PORT", help="default: the web.listen setting")
    p.add_argument("--user", default=getpass.getuser(), help="the account (default: %(default)s)")
