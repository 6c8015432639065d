"""The package as an operator installs it: `pip wheel`, a fresh venv at the
locked versions, and `masking asterisk config` rendering every template from
what the wheel carries (no checkout to fall back on); and the same command
failing loudly when an install lost its templates."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(p.name for p in (REPO / "dialplan").glob("*.conf"))
SOUNDS = sorted(p.name for p in (REPO / "dialplan" / "sounds").glob("*.wav"))


def run(*command: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MASKING_")}
    return subprocess.run(command, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the wheel built from this checkout, and nothing else of it."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a clean copy: no build/ or egg-info left by other builds
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", ".run", "build", "*.egg-info",
                                                                   "__pycache__", ".pytest_cache", ".hypothesis"))
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(source),
                cwd=work)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (work / "dist").glob("masking_bridge-*.whl")
    venv = work / "venv"
    assert run(sys.executable, "-m", "venv", str(venv), cwd=work).returncode == 0
    install = run(str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-q",
                  "-c", str(REPO / "constraints.txt"), str(wheel), cwd=work)
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def test_the_wheel_carries_the_templates_the_sounds_and_the_license(installed):
    [wheel] = (installed.parent / "dist").glob("masking_bridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for template in TEMPLATES:
        assert f"bridge/stack/dialplan/{template}" in names
    for sound in SOUNDS:
        assert f"bridge/stack/dialplan/sounds/{sound}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert "bridge/store/migrations/0001_initial.sql" in names


def test_masking_asterisk_config_renders_every_template_from_the_installed_package(installed, tmp_path):
    out, sounds = tmp_path / "etc", tmp_path / "sounds"
    result = run(str(installed / "bin" / "masking"), "asterisk", "config", "--out", str(out),
                 "--instance-dir", "/var/lib/masking-asterisk", "--module-dir", "/usr/lib/asterisk/modules",
                 "--sounds-dir", str(sounds), cwd=tmp_path, MASKING_SIP_PORT="5099", MASKING_ARI_PASSWORD="pw-1")

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == TEMPLATES
    assert f"rendered {len(TEMPLATES)} files" in result.stderr
    for path in out.iterdir():
        assert "{{" not in path.read_text(), f"{path.name} has an unfilled placeholder"
    assert "astmoddir => /usr/lib/asterisk/modules" in (out / "asterisk.conf").read_text()
    assert "/var/lib/masking-asterisk/etc" in (out / "asterisk.conf").read_text()
    assert "5099" in (out / "pjsip.conf").read_text() and "pw-1" in (out / "ari.conf").read_text()
    assert sorted(p.name for p in sounds.iterdir()) == SOUNDS


def test_an_install_without_its_templates_fails_loudly_instead_of_rendering_nothing(installed, tmp_path):
    broken = tmp_path / "venv"
    shutil.copytree(installed, broken, symlinks=True)
    [packaged] = broken.glob("lib/python*/site-packages/bridge/stack/dialplan")
    shutil.rmtree(packaged)
    python = broken / "bin" / "python"

    result = run(str(python), "-m", "bridge.cli", "asterisk", "config", "--out", str(tmp_path / "etc"),
                 "--module-dir", "/usr/lib/asterisk/modules", cwd=tmp_path)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Asterisk configuration templates" in lines[0], result.stderr
    assert not (tmp_path / "etc").exists() or not any((tmp_path / "etc").iterdir())


def test_the_installed_package_reads_its_shipped_purpose_registry(installed, tmp_path):
    result = run(str(installed / "bin" / "masking"), "purposes", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "delivery_order" in result.stdout and "out_of_session" in result.stdout


def test_the_wheel_carries_the_edge_configuration_and_renders_it_without_a_checkout(installed, tmp_path):
    [wheel] = (installed.parent / "dist").glob("masking_bridge-*.whl")
    assert "bridge/stack/edge/kamailio.cfg" in zipfile.ZipFile(wheel).namelist()
    script = ("import sys; from pathlib import Path; from bridge.config import Settings;"
              " from bridge.stack.kamailio import EDGE_DIR, edge_values, render_config;"
              " print(EDGE_DIR); sys.stdout.write(render_config(edge_values(Settings.from_env(), Path('run'))))")
    result = run(str(installed / "bin" / "python"), "-c", script, cwd=tmp_path, MASKING_SIP_PORT="5099")
    assert result.returncode == 0, result.stderr
    where, rendered = result.stdout.split("\n", 1)
    assert "site-packages/bridge/stack/edge" in where, "the edge configuration came from a checkout"
    assert "{{" not in rendered and "5099" in rendered
