"""`watch`, `status`, `service install`: the service and its systemd unit."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from phototag.cli.common import (
    SUBCOMMAND_OPTIONS,
    SYSTEM_STATE_DIR,
    Subparsers,
    command,
    emit,
    show,
)
from phototag.config import Config
from phototag.pipeline import backfill
from phototag.records import local_time


def cmd_watch(args: argparse.Namespace, cfg: Config) -> int:
    from phototag.service import daemon as service

    service.configure_logging(args.verbose)
    return service.run(cfg)


def cmd_status(args: argparse.Namespace, cfg: Config) -> int:
    from phototag.service import daemon as service

    st = service.status(SYSTEM_STATE_DIR if args.system else None)
    last = None if args.system else backfill.last_report()
    if args.json:  # one document; dates ISO 8601 in local time, as the text says them
        doc = None if st is None else json.loads(st.to_json()) | {"running": st.running}
        if doc is not None:
            doc |= {k: local_time(doc[k]) for k in ("started", "updated")}
            doc["errors"] = [
                {"at": local_time(at), "path": path, "message": msg, "final": final}
                for at, path, msg, final in doc["errors"]
            ]
        emit({"service": doc, "backfill": None if last is None else asdict(last)}, as_json=True)
        return 0 if st and st.running else 3
    print(service.describe(st))
    if last is not None:
        print(backfill.describe(last))
    return 0 if st and st.running else 3  # 3: "not running", as systemctl status says it


def cmd_service_install(args: argparse.Namespace, cfg: Config) -> int:
    from phototag.service import install as service_install

    unit = service_install.install(cfg, user=args.user)
    print(f"wrote {show(unit)}")
    print(service_install.next_steps(args.user, cfg.source))
    return 0


def register(sub: Subparsers) -> None:
    p = command(
        sub,
        "watch",
        cmd_watch,
        "run the service: watch folders and tag new photos (what systemd starts)",
        description="Watch the folders in config.yaml (watch.folders) and tag every photo that "
        "arrives, once it is completely written. Catches up on what changed while it was down, "
        "keeps a persistent queue, reloads settings on SIGHUP and stops cleanly on SIGTERM.",
    )
    p = command(sub, "status", cmd_status, "is the service running, its queue, and its last errors")
    p.add_argument(
        "--system", action="store_true", help=f"the system-wide service ({SYSTEM_STATE_DIR})"
    )
    service = command(sub, "service", cmd_service_install, "install the systemd unit")
    ssub = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    p = ssub.add_parser(
        "install",
        parents=[SUBCOMMAND_OPTIONS],
        help="write the systemd unit for this installation",
        description="Write phototag.service.daemon with this installation's paths and the watched "
        "folders from your config (as ReadWritePaths), then print the systemctl commands to run.",
    )
    p.add_argument(
        "--user",
        action="store_true",
        help="a user unit (~/.config/systemd/user) instead of system-wide",
    )
    p.set_defaults(func=cmd_service_install)
