"""The operator's `masking` command against the real stack's database and Asterisk."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.stack import REPO


def masking(stack, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **stack.env, **env}, timeout=60)


def test_a_malformed_number_is_refused_with_exit_code_2_and_not_echoed(stack):
    result = masking(stack, "numbers", "add", "+65123")
    assert result.returncode == 2
    assert "+65123" not in result.stderr and "phone number" in result.stderr


def test_sessions_create_prints_the_session_with_its_virtual_number(stack):
    assert masking(stack, "numbers", "add", "+6563000001").returncode == 0

    result = masking(stack, "sessions", "create", "--a", "+6593000001", "--b", "9300 0002", "--ttl", "600",
                     "--no-record")

    assert result.returncode == 0, result.stderr
    session = json.loads(result.stdout)
    assert session["participant_b"] == "+6593000002"  # national form normalised with the default region
    assert session["virtual_number"].startswith("+65") and session["status"] == "active"
    assert session["record"] is False


def test_a_participant_never_gets_the_same_virtual_number_twice_while_live(stack):
    masking(stack, "numbers", "add", "+6563000101", "+6563000102")
    first = json.loads(masking(stack, "sessions", "create", "--a", "+6593000101", "--b", "+6583000101").stdout)
    second = json.loads(masking(stack, "sessions", "create", "--a", "+6593000101", "--b", "+6583000102").stdout)
    assert first["virtual_number"] != second["virtual_number"]


def test_doctor_reports_every_dependency_healthy_on_a_running_stack(stack):
    stack.settings.recording_dir.mkdir(parents=True, exist_ok=True)
    result = masking(stack, "doctor")
    assert result.returncode == 0, result.stdout
    for name in ("ari", "ari app", "ami", "database", "recordings"):
        assert any(line.startswith("ok") and f" {name} " in line + " " for line in result.stdout.splitlines()), \
            result.stdout


def test_doctor_says_precisely_what_is_wrong(stack):
    result = masking(stack, "doctor", MASKING_ARI_PASSWORD="wrong", MASKING_AMI_PASSWORD="wrong",
                     MASKING_DATABASE_URL="postgresql://postgres@127.0.0.1:9/nowhere",
                     MASKING_RECORDING_DIR="/nonexistent/recordings")
    assert result.returncode == 1
    out = result.stdout
    assert "refused MASKING_ARI_USER/PASSWORD" in out
    assert "AMI refused MASKING_AMI_USER/PASSWORD" in out
    assert "cannot connect to MASKING_DATABASE_URL" in out
    assert "/nonexistent/recordings does not exist" in out
