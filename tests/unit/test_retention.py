"""What retention purges and erasure keeps, decided without a database."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bridge.config import ConfigError, Settings, parse_days
from bridge.privacy.retention import (
    KeptBecause, Kind, RetentionPolicy, SessionToErase, Verdict, plan_erasure, session_ended_at,
    verdict,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
POLICY = RetentionPolicy(recordings_days=30, call_details_days=365, sessions_days=90)


def test_a_recording_older_than_its_period_is_due_and_a_younger_one_is_not():
    assert verdict(POLICY, Kind.RECORDINGS, NOW - timedelta(days=31), False, NOW) is Verdict.DUE
    assert verdict(POLICY, Kind.RECORDINGS, NOW - timedelta(days=29), False, NOW) is Verdict.NOT_DUE


def test_exactly_at_the_cutoff_is_not_due_yet_a_moment_later_it_is():
    cutoff = NOW - timedelta(days=30)
    assert verdict(POLICY, Kind.RECORDINGS, cutoff, False, NOW) is Verdict.NOT_DUE
    assert verdict(POLICY, Kind.RECORDINGS, cutoff - timedelta(microseconds=1), False, NOW) is Verdict.DUE


def test_each_kind_runs_on_its_own_period_and_webhook_bodies_on_the_call_details_one():
    moment = NOW - timedelta(days=100)
    assert verdict(POLICY, Kind.SESSIONS, moment, False, NOW) is Verdict.DUE
    assert verdict(POLICY, Kind.CALL_DETAILS, moment, False, NOW) is Verdict.NOT_DUE
    assert verdict(POLICY, Kind.WEBHOOK_EVENTS, moment, False, NOW) is Verdict.NOT_DUE
    assert verdict(POLICY, Kind.WEBHOOK_EVENTS, NOW - timedelta(days=366), False, NOW) is Verdict.DUE


def test_legal_hold_keeps_what_is_due_and_says_so_but_changes_nothing_not_due():
    assert verdict(POLICY, Kind.SESSIONS, NOW - timedelta(days=400), True, NOW) is Verdict.HELD
    assert verdict(POLICY, Kind.SESSIONS, NOW - timedelta(days=1), True, NOW) is Verdict.NOT_DUE


def test_a_period_of_never_keeps_everything_and_zero_purges_anything_already_ended():
    forever = RetentionPolicy(recordings_days=None, call_details_days=0, sessions_days=0)
    assert forever.cutoff(Kind.RECORDINGS, NOW) is None
    assert verdict(forever, Kind.RECORDINGS, NOW - timedelta(days=10000), False, NOW) is Verdict.NOT_DUE
    assert verdict(forever, Kind.SESSIONS, NOW - timedelta(seconds=1), False, NOW) is Verdict.DUE


def test_a_live_session_or_a_call_without_a_moment_is_never_due():
    assert verdict(POLICY, Kind.SESSIONS, None, False, NOW) is Verdict.NOT_DUE


def test_a_session_ends_when_closed_or_when_its_time_ran_out():
    closed_at, expires_at = NOW - timedelta(days=5), NOW + timedelta(days=5)
    assert session_ended_at("closed", closed_at, expires_at, NOW) == closed_at
    assert session_ended_at("expired", None, NOW - timedelta(days=2), NOW) == NOW - timedelta(days=2)
    assert session_ended_at("active", None, NOW - timedelta(hours=1), NOW) == NOW - timedelta(hours=1)
    assert session_ended_at("active", None, expires_at, NOW) is None


@pytest.mark.parametrize(("raw", "days"), [("90", 90), ("0", 0), (" 7 ", 7), ("never", None), ("NEVER", None)])
def test_periods_are_days_or_never(raw, days):
    assert parse_days(raw) == days


@pytest.mark.parametrize("raw", ["-1", "1.5", "ninety", "", "36501"])
def test_other_periods_are_refused(raw):
    with pytest.raises(ValueError):
        parse_days(raw)


def test_retention_settings_default_validate_and_name_the_variable():
    assert RetentionPolicy.from_settings(Settings.from_env({})) == RetentionPolicy(90, 365, 90)
    never = Settings.from_env({"MASKING_RETAIN_RECORDINGS_DAYS": "never"})
    assert RetentionPolicy.from_settings(never).recordings_days is None
    with pytest.raises(ConfigError, match="MASKING_RETAIN_SESSIONS_DAYS"):
        Settings.from_env({"MASKING_RETAIN_SESSIONS_DAYS": "soon"})
    with pytest.raises(ConfigError, match="MASKING_PURGE_BATCH"):
        Settings.from_env({"MASKING_PURGE_BATCH": "0"})
    with pytest.raises(ConfigError, match="MASKING_PURGE_INTERVAL_SECONDS"):
        Settings.from_env({"MASKING_PURGE_INTERVAL_SECONDS": "-5"})


def test_erasure_keeps_held_sessions_and_calls_in_progress_and_closes_live_ones_first():
    held, busy, live, ended = (uuid.uuid4() for _ in range(4))
    plan = plan_erasure([
        SessionToErase(held, live=True, held=True, call_in_progress=True, hold_reason="case 12"),
        SessionToErase(busy, live=True, held=False, call_in_progress=True),
        SessionToErase(live, live=True, held=False, call_in_progress=False),
        SessionToErase(ended, live=False, held=False, call_in_progress=False),
    ])
    assert plan.erase == [live, ended]
    assert plan.close_first == [live]
    assert plan.kept == [(held, KeptBecause.LEGAL_HOLD, "case 12"), (busy, KeptBecause.CALL_IN_PROGRESS, None)]


# -- a purpose's own periods (its registry entry's `retention`) ----------------------------
def registry_with(tmp_path, body: str):
    from bridge.privacy.purposes import load_registry

    sha = "0" * 64
    path = tmp_path / "purposes.toml"
    path.write_text("\n".join(f"[purposes.{code}]\n{retention}\nnotice = {{ text = 'x', sha256 = '{sha}' }}"
                              for code, retention in body))
    return load_registry(path)


PURPOSES = [("short", "retention = { recordings_days = 1 }"),
            ("long", "retention = { sessions_days = 400, recordings_days = 365 }"),
            ("plain", "")]


def test_a_purposes_period_wins_for_its_sessions_shorter_or_longer_and_the_rest_keep_the_global_one(tmp_path):
    policy = POLICY.with_purposes(registry_with(tmp_path, PURPOSES))
    old = NOW - timedelta(days=2)
    assert verdict(policy, Kind.RECORDINGS, old, False, NOW, "short") is Verdict.DUE
    assert verdict(policy, Kind.RECORDINGS, old, False, NOW, "plain") is Verdict.NOT_DUE  # global 30 days
    assert verdict(policy, Kind.RECORDINGS, NOW - timedelta(days=100), False, NOW, "long") is Verdict.NOT_DUE
    assert verdict(policy, Kind.RECORDINGS, NOW - timedelta(days=100), False, NOW, "plain") is Verdict.DUE
    assert verdict(policy, Kind.SESSIONS, NOW - timedelta(days=100), False, NOW, "long") is Verdict.NOT_DUE
    assert verdict(policy, Kind.SESSIONS, NOW - timedelta(days=100), False, NOW, "short") is Verdict.DUE  # global
    # A purpose no longer registered, or none: the global periods.
    assert verdict(policy, Kind.RECORDINGS, NOW - timedelta(days=31), False, NOW, "retired") is Verdict.DUE
    assert verdict(policy, Kind.RECORDINGS, old, False, NOW, None) is Verdict.NOT_DUE
    # Call details and webhook bodies have no purpose period.
    assert policy.cutoff(Kind.CALL_DETAILS, NOW, "short") == NOW - timedelta(days=365)
    # Legal hold still keeps what its purpose made due.
    assert verdict(policy, Kind.RECORDINGS, old, True, NOW, "short") is Verdict.HELD


def test_a_purposes_period_applies_under_a_global_never_which_still_keeps_the_other_purposes(tmp_path):
    forever = RetentionPolicy(recordings_days=None, call_details_days=None, sessions_days=None)
    policy = forever.with_purposes(registry_with(tmp_path, PURPOSES))
    assert verdict(policy, Kind.RECORDINGS, NOW - timedelta(days=2), False, NOW, "short") is Verdict.DUE
    assert verdict(policy, Kind.RECORDINGS, NOW - timedelta(days=10000), False, NOW, "plain") is Verdict.NOT_DUE
    assert policy.cutoff(Kind.SESSIONS, NOW, "short") is None
    assert forever.latest_cutoff(Kind.RECORDINGS, NOW) is None  # nothing to scan at all


def test_the_candidates_bound_is_the_latest_cutoff_of_any_purpose_or_the_global_one(tmp_path):
    policy = POLICY.with_purposes(registry_with(tmp_path, PURPOSES))
    assert policy.purpose_cutoffs(Kind.RECORDINGS, NOW) == {"long": NOW - timedelta(days=365),
                                                            "short": NOW - timedelta(days=1)}
    assert policy.purpose_cutoffs(Kind.SESSIONS, NOW) == {"long": NOW - timedelta(days=400)}
    assert policy.latest_cutoff(Kind.RECORDINGS, NOW) == NOW - timedelta(days=1)
    assert policy.latest_cutoff(Kind.SESSIONS, NOW) == NOW - timedelta(days=90)
    assert "plain" not in policy.purposes  # declares nothing: the global periods


def test_the_policy_in_force_is_the_settings_periods_with_the_shipped_purposes_own():
    from bridge.privacy.retention import policy_in_force

    policy = policy_in_force(Settings.from_env({}))
    assert (policy.recordings_days, policy.call_details_days, policy.sessions_days) == (90, 365, 90)
    assert policy.days(Kind.SESSIONS, "delivery_order") == 30 and policy.days(Kind.SESSIONS, "nope") == 90
