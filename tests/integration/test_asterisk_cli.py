"""`masking asterisk cli '...'`: the operator's way into the CLI of the Asterisk
this project runs, whose control socket is in its own run/ directory (a
plain `asterisk -rx` looks for /var/run/asterisk and finds nothing)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.stack import REPO


def masking(stack, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **stack.env, **env}, timeout=60)


def test_a_cli_command_runs_on_the_projects_own_asterisk(stack):
    result = masking(stack, "asterisk", "cli", "core show version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Asterisk 2"), result.stdout


def test_the_cli_shows_the_trunks_asterisk_was_given(stack):
    result = masking(stack, "asterisk", "cli", "pjsip show endpoints")
    assert result.returncode == 0, result.stderr
    assert "carrier-in" in result.stdout and "carrier-out" in result.stdout


def test_a_command_asterisk_does_not_know_exits_non_zero_with_one_clear_line(stack):
    result = masking(stack, "asterisk", "cli", "core show nonsense")
    assert result.returncode == 1
    assert result.stderr.strip() == ("asterisk cli: Asterisk has no command 'core show nonsense' "
                                     "('core show help' lists them)")


def test_an_instance_that_is_not_running_is_named_and_the_command_fails(stack):
    result = masking(stack, "asterisk", "cli", "core show version", MASKING_INSTANCE_NAME="not-running-here")
    assert result.returncode == 1
    assert "no Asterisk is running for instance 'not-running-here'" in result.stderr
    assert result.stdout == ""
