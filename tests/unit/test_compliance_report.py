"""`masking compliance report`'s checks: each setting that defeats the PDPA
mapping fails on its own; a safe configuration passes every check."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bridge.config import Notice, Settings
from bridge.privacy.compliance import Facts, purposes_in_force, render_markdown, report, setting_checks

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
STRONG = "x9Lr2vQ7pT4mW8kZ"

SAFE = Settings(purposes="delivery_order,support_callback", record_by_default=False,
                webhook_url="https://hooks.example.com/masking", ari_password=STRONG + "a", ami_password=STRONG + "b",
                webhook_secret=STRONG + "c", agi_secret=STRONG + "d")
FRESH = Facts(NOW, NOW - timedelta(minutes=5))


def failing(settings: Settings, facts: Facts = FRESH) -> list[str]:
    return [c["name"] for c in report(settings, facts)["checks"] if not c["ok"]]


def test_a_safe_configuration_passes_every_check():
    document = report(SAFE, FRESH)
    assert failing(SAFE) == [] and document["passed"]
    assert "all checks pass" in render_markdown(document)


@pytest.mark.parametrize("change, check", [
    ({"subject_request_days": 366}, "request_deadline"),
    ({"subject_request_days": 31}, "request_deadline"),
    ({"retain_recordings_days": "never"}, "retention_recordings"),
    ({"retain_call_details_days": "never"}, "retention_call_details"),
    ({"retain_sessions_days": "Forever"}, "retention_sessions"),
    ({"purposes": ""}, "purposes_registered"),
    ({"record_by_default": True}, "recording_has_purpose"),
    ({"notice": Notice(opt_out_digit="")}, "opt_out_offered"),
    ({"webhook_url": "http://hooks.example.com/masking"}, "webhook_https"),
    ({"out_of_session_url": "http://hooks.example.com/ask"}, "out_of_session_https"),
    ({"audit_checkpoint_url": "http://anchor.example.com/"}, "checkpoint_url_https"),
    ({"webhook_secret": "masking-dev-webhook-secret"}, "secrets_not_default"),
    ({"agi_secret": ""}, "secrets_not_default"),
    ({"development": True}, "development_mode_off"),
    ({"test_hooks": True}, "test_hooks_off"),
    ({"purge_interval_seconds": 0.0}, "purge_scheduled"),
    ({"audit_checkpoint_seconds": 0.0}, "checkpoints_scheduled"),
])
def test_each_risky_setting_fails_its_own_check_and_only_it(change, check):
    assert failing(replace(SAFE, **change)) == [check]


def test_the_shipped_defaults_fail_on_purposes_recording_and_secrets():
    assert {"purposes_registered", "recording_has_purpose", "secrets_not_default"} <= set(failing(Settings()))


@pytest.mark.parametrize("facts", [Facts(NOW, None), Facts(NOW, NOW - timedelta(days=1, minutes=1)),
                                   Facts(NOW, None, "the checkpoint file cannot be trusted: line 2: forged")])
def test_no_checkpoint_or_a_stale_one_fails(facts):
    assert failing(SAFE, facts) == ["checkpoint_recent"]


def test_the_report_names_no_url_or_secret_and_lists_overdue_obligations_and_what_is_in_force():
    settings = replace(SAFE, webhook_url="http://user-token-123@hooks.example.com/secret-path",
                       webhook_secret="masking-dev-webhook-secret")
    facts = replace(FRESH, open_requests=({"id": "r1", "kind": "access", "subject": "+65****4444",
                                           "due_at": "2026-05-01T00:00:00+00:00", "overdue": True},
                                          {"id": "r2", "kind": "erasure", "subject": "+65****5555",
                                           "due_at": "2026-07-01T00:00:00+00:00", "overdue": False}),
                    open_incidents=({"id": "i1", "overdue": ["incident_assessment"]},))
    document = report(settings, facts)
    text = render_markdown(document)

    assert "secret-path" not in text and "user-token" not in text and "masking-dev-webhook-secret" not in text
    assert document["requests"]["open"] == 2 and [r["id"] for r in document["requests"]["overdue"]] == ["r1"]
    assert "i1 incident_assessment" in text and "r1 access +65****4444" in text
    assert [p["code"] for p in document["purposes"]] == ["delivery_order", "support_callback"]
    assert document["retention"] == {"recordings": "90", "call_details": "365", "sessions": "90"}
    assert "| webhook_https | FAIL |" in text


def test_purposes_are_read_in_one_place_from_masking_purposes_today():
    assert [p.code for p in purposes_in_force(Settings(purposes=" b_code, a_code ,"))] == ["a_code", "b_code"]
    assert purposes_in_force(Settings()) == []
    assert all(c.ok for c in setting_checks(SAFE))
