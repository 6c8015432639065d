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

    result = masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000001", "--b", "9300 0002", "--ttl", "600",
                     "--no-record")

    assert result.returncode == 0, result.stderr
    session = json.loads(result.stdout)
    assert session["participant_b"] == "+6593000002"  # national form normalised with the default region
    assert session["virtual_number"].startswith("+65") and session["status"] == "active"
    assert session["record"] is False


def test_sessions_create_takes_a_call_time_limit_and_refuses_a_nonsensical_one(stack):
    masking(stack, "numbers", "add", "+6563000401")

    created = masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000401", "--b", "+6583000401", "--time-limit", "90")
    refused = masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000402", "--b", "+6583000402", "--time-limit", "0")

    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["time_limit_seconds"] == 90
    assert refused.returncode == 2 and "--time-limit" in refused.stderr


def test_a_participant_never_gets_the_same_virtual_number_twice_while_live(stack):
    masking(stack, "numbers", "add", "+6563000101", "+6563000102")
    first = json.loads(masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000101", "--b", "+6583000101").stdout)
    second = json.loads(masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000101", "--b", "+6583000102").stdout)
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


def test_sessions_can_be_listed_shown_extended_and_closed_from_the_cli(stack):
    masking(stack, "numbers", "add", "+6563000201")
    created = json.loads(masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000201", "--b", "+6583000201",
                                 "--ttl", "60", "--external-ref", "order-cli-1").stdout)
    listed = json.loads(masking(stack, "sessions", "list", "--external-ref", "order-cli-1", "--json").stdout)
    table = masking(stack, "sessions", "list", "--external-ref", "order-cli-1").stdout
    extended = json.loads(masking(stack, "sessions", "extend", created["id"], "--ttl", "7200", "--json").stdout)
    closed = masking(stack, "sessions", "close", created["id"])
    closed_again = masking(stack, "sessions", "close", created["id"])
    shown = json.loads(masking(stack, "sessions", "show", created["id"], "--json").stdout)

    assert [s["id"] for s in listed["sessions"]] == [created["id"]]
    assert table.splitlines()[0].split()[:3] == ["id", "virtual_number", "status"] and created["id"] in table
    assert extended["expires_at"] > created["expires_at"]
    assert closed.returncode == 0 and shown["status"] == "closed"
    assert closed_again.returncode == 1 and "session is closed" in closed_again.stderr
    assert masking(stack, "sessions", "show", "nope").returncode == 2


def test_numbers_can_be_reserved_and_retired_only_when_unused_from_the_cli(stack):
    assert masking(stack, "numbers", "add", "--reserved", "+6563000301").returncode == 0
    session = json.loads(masking(stack, "sessions", "create", "--purpose", "delivery_order", "--a", "+6593000301", "--b", "+6583000301",
                                 "--number", "+6563000301").stdout)
    in_use = masking(stack, "numbers", "retire", "+6563000301")
    masking(stack, "sessions", "close", session["id"])
    retired = masking(stack, "numbers", "retire", "+6563000301")
    listed = json.loads(masking(stack, "numbers", "list", "--status", "retired", "--json").stdout)

    assert session["virtual_number"] == "+6563000301"
    assert in_use.returncode == 1 and session["id"] in in_use.stderr
    assert retired.returncode == 0
    assert "+6563000301" in [n["number"] for n in listed["numbers"]]


def test_webhook_deliveries_are_visible_and_dead_letters_retried_from_the_cli(stack):
    listed = masking(stack, "webhooks", "list", "--json")
    retried = masking(stack, "webhooks", "retry")
    assert listed.returncode == 0 and "events" in json.loads(listed.stdout)
    assert retried.returncode == 0 and retried.stdout.startswith("requeued")


def test_the_running_service_recorded_its_configuration_without_secrets(stack):
    listed = masking(stack, "audit", "list", "--action", "config.changed", "--json")
    rows = json.loads(listed.stdout)["entries"]
    assert rows and rows[-1]["actor"] == "service" and rows[-1]["source"].startswith("service@")
    settings = rows[0]["details"]["settings"]
    assert settings["MASKING_SIP_PORT"] == str(stack.settings.asterisk.sip_port)
    assert "MASKING_ARI_PASSWORD" not in settings and stack.settings.ari_password not in listed.stdout


def test_a_shared_number_and_a_session_with_a_pin_from_the_cli(stack):
    assert masking(stack, "numbers", "add", "--pin-mode", "+6563000901").returncode == 0

    created = [masking(stack, "sessions", "create", "--purpose", "delivery_order", "--pin-mode", "--a", a,
                       "--b", "+6583000901", *extra)
               for a, extra in (("+6593000901", ()), ("+6593000902", ("--number", "+6563000901")),
                                ("+6593000903", ("--number", "+6563000901")))]
    sessions = [json.loads(c.stdout) for c in created]
    shared = {n["number"] for n in json.loads(masking(stack, "numbers", "list", "--json").stdout)["numbers"]
              if n["pin_mode"]}

    assert "+6563000901" in shared and {s["virtual_number"] for s in sessions} <= shared
    assert all(len(s["pin"]) == 4 and s["pin"].isdigit() for s in sessions)
    assert sessions[1]["pin"] != sessions[2]["pin"]  # one driver, two live sessions on one number
