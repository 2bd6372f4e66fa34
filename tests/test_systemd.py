import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phototag.config import Config
from phototag.service.daemon import ServiceError
from phototag.service.install import install, render
from tests.conftest import ROOT

SHIPPED = ROOT / "systemd"
EXAMPLE_EXE = Path("/usr/local/bin/phototag")
# An executable that exists here: systemd-analyze verify checks ExecStart's binary.
EXISTING_EXE = Path(sys.executable)


def verify(unit: Path, user: bool, tmp_path: Path) -> None:
    """`systemd-analyze verify` must accept the unit without a single warning."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    result = subprocess.run(
        ["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert unit.name not in result.stderr, result.stderr  # warnings name the file


def test_shipped_units_are_what_install_writes() -> None:
    system = render(False, EXAMPLE_EXE, Path("/etc/phototag/config.yaml"), [Path("/srv/photos")])
    user = render(True, EXAMPLE_EXE, None, [Path("/srv/photos")])
    assert (SHIPPED / "phototag.service").read_text() == system
    assert (SHIPPED / "phototag-user.service").read_text() == user


@pytest.mark.parametrize(
    ("name", "user"), [("phototag.service", False), ("phototag-user.service", True)]
)
def test_shipped_units_pass_systemd_analyze_verify(name: str, user: bool, tmp_path: Path) -> None:
    unit = tmp_path / "phototag.service"
    text = (SHIPPED / name).read_text()
    unit.write_text(text.replace(str(EXAMPLE_EXE), str(EXISTING_EXE)))
    verify(unit, user, tmp_path)


def test_system_unit_sandbox(tmp_path: Path) -> None:
    text = (SHIPPED / "phototag.service").read_text()
    for line in [
        "Type=notify",
        "User=phototag",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/srv/photos",
        "StateDirectory=phototag",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=CAP_LEASE",  # all it may do beyond a plain user: file leases
        "AmbientCapabilities=CAP_LEASE",
    ]:
        assert line in text.splitlines()


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_install_writes_a_unit_for_the_settings(user: bool, tmp_path: Path) -> None:
    photos = tmp_path / "my photos"  # a space: quoted for systemd
    photos.mkdir()
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("")
    cfg = Config(source=cfg_file)
    cfg.watch.folders = [str(photos)]
    unit = install(cfg, user=user, exe=EXISTING_EXE, directory=tmp_path / "units")
    assert unit == tmp_path / "units" / "phototag.service"
    text = unit.read_text()
    assert f"ExecStart={EXISTING_EXE} --config {cfg_file} watch" in text
    if not user:
        assert f'ReadWritePaths="{photos}"' in text
        assert "ProtectHome=yes" in text
    verify(unit, user, tmp_path)


def test_a_system_unit_needs_absolute_folders(tmp_path: Path) -> None:
    cfg = Config()
    cfg.watch.folders = ["~/Pictures"]
    with pytest.raises(ServiceError, match="absolute paths"):
        install(cfg, user=False, exe=EXISTING_EXE, directory=tmp_path)
    with pytest.raises(ServiceError, match=r"watch\.folders is empty"):
        install(Config(), user=True, exe=EXISTING_EXE, directory=tmp_path)


def test_folders_in_home_stay_readable_and_are_made_writable() -> None:
    text = render(False, EXAMPLE_EXE, None, [Path("/home/ann/Pictures")])
    assert "ProtectHome=read-only" in text and "ReadWritePaths=/home/ann/Pictures" in text
