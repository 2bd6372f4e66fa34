"""`phototag service install [--user]`: write a systemd unit for `phototag watch`.

The shipped files in `systemd/` are this module's output for the example paths (a test
keeps them equal), so the unit is written in one place only.

The system unit runs as the dedicated user `phototag` with a read-only view of the
system: only the watched folders (keywords are written into photos and sidecars) and
its state dir (index, queue, status; systemd's StateDirectory=) are writable. A user
unit cannot use most sandboxing without user namespaces, so it keeps only what works
everywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from phototag.config import Config
from phototag.files.fileio import atomic_write
from phototag.service.daemon import ServiceError
from phototag.service.watch import folders

SYSTEM_DIR = Path("/etc/systemd/system")
SYSTEM_CONFIG = Path("/etc/phototag/config.yaml")
UNIT_NAME = "phototag.service"
HOME_PREFIXES = ("/home", "/root", "/run/user")


def _quote(value: str | Path) -> str:
    """A path as one systemd command-line word (systemd.syntax quoting, specifiers escaped)."""
    text = str(value).replace("%", "%%")
    if not any(c in text for c in " \t\"'\\;$"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def render(
    user: bool,
    executable: Path,
    config_path: Path | None,
    watched: list[Path],
    index_dir: Path | None = None,
    gpu: bool = False,
) -> str:
    """The unit file's text; `gpu` leaves /dev visible so CUDA finds the GPU."""
    command = [_quote(executable)]
    if config_path is not None:
        command += ["--config", _quote(config_path)]
    command.append("watch")
    lines = [
        "# Written by `phototag service install`; run it again after changing watch.folders.",
        "[Unit]",
        "Description=phototag: tag new photos in watched folders",
        "After=local-fs.target" + ("" if user else " remote-fs.target"),
    ]
    if not user:
        # Network folders must be mounted before we start watching them.
        lines += [f"RequiresMountsFor={' '.join(_quote(f) for f in watched)}"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={' '.join(command)}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=10s",
        "# SIGTERM: the batch in flight is finished (seconds), then the index is flushed.",
        "TimeoutStopSec=60s",
        "Environment=PYTHONUNBUFFERED=1",
        "# Tagging is background work: the desktop and the disk come first.",
        "Nice=10",
        "IOSchedulingClass=idle",
        "NoNewPrivileges=yes",
    ]
    if not user:
        at_home = any(str(f).startswith(HOME_PREFIXES) for f in watched)
        writable = [*watched, *([index_dir] if index_dir else [])]
        lines += [
            "User=phototag",
            "Group=phototag",
            "# Index, queue and status in /var/lib/phototag; models in /var/lib/phototag too.",
            "StateDirectory=phototag",
            "CacheDirectory=phototag",
            "Environment=XDG_STATE_HOME=/var/lib XDG_DATA_HOME=/var/lib XDG_CACHE_HOME=/var/cache",
            "ProtectSystem=strict",
            f"ProtectHome={'read-only' if at_home else 'yes'}",
            f"ReadWritePaths={' '.join(_quote(f) for f in writable)}",
            "PrivateTmp=yes",
            *([] if gpu else ["PrivateDevices=yes"]),
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictAddressFamilies=AF_UNIX",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "SystemCallArchitectures=native",
            "# Only to ask the kernel whether a photo is still being written (a file lease).",
            "CapabilityBoundingSet=CAP_LEASE",
            "AmbientCapabilities=CAP_LEASE",
        ]
    lines += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}"]
    return "\n".join(lines) + "\n"


def executable() -> Path:
    """The installed `phototag` command: the one running now, else the one on PATH."""
    running = Path(sys.argv[0])
    if running.name == "phototag" and running.is_file():
        return running.resolve()
    found = shutil.which("phototag")
    if found is None:
        raise ServiceError("cannot find the phototag command; install phototag (pip install .)")
    return Path(found).resolve()


def unit_dir(user: bool) -> Path:
    if not user:
        return SYSTEM_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def install(
    cfg: Config, user: bool, exe: Path | None = None, directory: Path | None = None
) -> Path:
    """Write the unit for these settings and return its path; ServiceError says what is wrong.

    A system unit needs the settings in a file the `phototag` user can read (default
    /etc/phototag/config.yaml) and absolute folders: `~` would be that user's home.
    """
    if not cfg.watch.folders:
        raise ServiceError("watch.folders is empty: name the folders to watch in the settings")
    if not user:
        relative = [f for f in cfg.watch.folders if not Path(f).is_absolute()]
        if relative:
            raise ServiceError(
                f"watch.folders: {relative[0]}: a system service needs absolute paths "
                "(~ would be the phototag user's home); or use --user"
            )
    config_path = cfg.source.resolve() if cfg.source else None
    if not user and config_path is None:
        config_path = SYSTEM_CONFIG
    index_dir = Path(cfg.index.path).expanduser() if cfg.index.path else None
    gpu = cfg.model.providers == "cuda"
    text = render(user, exe or executable(), config_path, folders(cfg), index_dir, gpu)
    target = (directory or unit_dir(user)) / UNIT_NAME
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text.encode(), mode=0o644)
    except OSError as exc:
        hint = " (run it with sudo, or use --user)" if not user else ""
        raise ServiceError(
            f"{target}: cannot write the unit: {exc.strerror or exc}{hint}"
        ) from None
    return target


def next_steps(user: bool, cfg_source: Path | None = None) -> str:
    """What the person installing still has to type."""
    if user:
        return (
            "systemctl --user daemon-reload\n"
            "systemctl --user enable --now phototag\n"
            "loginctl enable-linger $USER    # optional: keep watching while logged out"
        )
    return (
        "useradd --system --home-dir /var/lib/phototag --create-home --shell /usr/sbin/nologin "
        "phototag\n"
        f"# phototag must be able to read {cfg_source or SYSTEM_CONFIG} and write the photos "
        "(e.g. a shared group)\n"
        "sudo -u phototag env XDG_DATA_HOME=/var/lib phototag models pull mobilenet-v2\n"
        "systemctl daemon-reload\n"
        "systemctl enable --now phototag"
    )
