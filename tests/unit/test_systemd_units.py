"""The systemd units in systemd/ are ones systemd accepts (`systemd-analyze
verify`), and they agree with the documented host install: the paths they run
are the ones docs/deployment.md installs."""
from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "systemd").glob("*.service"))
SYSTEM_UNITS = Path("/lib/systemd/system")


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def executables(path: Path) -> set[str]:
    service = unit(path)["Service"]
    commands = [service.get(key, "") for key in ("ExecStartPre", "ExecStart", "ExecReload", "ExecStop")]
    return {command.split()[0].lstrip("-@+!") for command in commands if command}


def test_there_are_units_for_asterisk_the_bridge_and_the_fastagi_standby():
    assert [u.name for u in UNITS] == ["masking-agi.service", "masking-asterisk.service", "masking-bridge.service"]


def test_every_unit_runs_unprivileged_with_the_documented_environment_file():
    guide = (REPO / "docs" / "deployment.md").read_text()
    for path in UNITS:
        service = unit(path)["Service"]
        assert service["User"] == "masking" and service["Group"] == "masking", path.name
        assert service["EnvironmentFile"] == "/etc/masking-bridge/masking.env", path.name
        assert service["Restart"] == "on-failure", path.name
        assert f"systemd/{path.name}" in guide, f"docs/deployment.md does not install {path.name}"
        for executable in executables(path):
            assert executable in guide, f"docs/deployment.md does not say where {executable} comes from"


@pytest.mark.skipif(not shutil.which("systemd-analyze") or not SYSTEM_UNITS.is_dir(),
                    reason="systemd-analyze and systemd's own units are not installed (Debian package systemd)")
def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    """Verified in a root of their own: systemd's units, ours, and a stand-in
    at every path they execute (verify checks that each is executable)."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for path in UNITS:
        shutil.copy(path, root / "etc/systemd/system" / path.name)
        for executable in executables(path):
            stand_in = root / executable.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--generators=no", f"--root={root}",
                             *(path.name for path in UNITS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
