"""The disclosure ledger's pure decisions: destinations' countries, recipients, disclosed-to."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bridge.config import ConfigError, Settings
from bridge.config.values import parse_countries
from bridge.privacy.audit import AuditEntry
from bridge.privacy.ledger import (
    UNKNOWN_COUNTRY, country_of, destination_details, destination_host, disclosed_to, parse_moment, recipient_of,
)

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
MINE, THEIRS = b"m" * 32, b"t" * 32
SESSION = uuid.uuid4()


def row(seq: int, action: str, actor: str = "apikey:ab12:shop", subject: bytes | None = MINE,
        at: datetime = NOW, **details) -> AuditEntry:
    return AuditEntry(seq=seq, at=at, actor=actor, action=action, target_type="session", target_id=str(SESSION),
                      source="127.0.0.1", session_id=SESSION, subject_hash=subject, details=details)


def test_a_destination_is_its_host_never_its_path_query_or_credentials():
    assert destination_host("https://user:tok@Hooks.Shop.SG:8443/events?token=s3cret") == "hooks.shop.sg"
    assert destination_host("not a url") == "unknown"


def test_a_country_comes_from_the_mapping_then_the_declared_country_else_unknown():
    mapping = parse_countries("hooks.shop.sg=SG, *.example.com=us, *.eu.example.com=DE")
    assert country_of("hooks.shop.sg", mapping) == "SG"
    assert country_of("a.b.example.com", mapping) == "US"
    assert country_of("x.eu.example.com", mapping) == "DE", "the longest suffix wins"
    assert country_of("example.com", mapping) == UNKNOWN_COUNTRY, "*.domain is names under it, not the domain"
    assert country_of("elsewhere.net", mapping, declared="my") == "MY"
    assert country_of("elsewhere.net", mapping) == "unknown"
    assert destination_details("https://hooks.shop.sg/x", mapping) == {"host": "hooks.shop.sg", "country": "SG"}


@pytest.mark.parametrize("raw", ["hooks.shop.sg", "hooks.shop.sg=Singapore", "=SG", "h=S1"])
def test_a_malformed_country_mapping_stops_the_start(raw):
    with pytest.raises(ValueError):
        parse_countries(raw)
    with pytest.raises(ConfigError, match="MASKING_DESTINATION_COUNTRIES"):
        Settings.from_env({"MASKING_DESTINATION_COUNTRIES": raw})


def test_recipients_are_the_key_and_its_account_the_operator_or_the_destination():
    assert recipient_of(row(1, "session.read", account="acme")).to_json() == \
        {"kind": "api_key", "name": "apikey:ab12:shop", "account": "acme"}
    assert recipient_of(row(2, "session.created", actor="cli:ops")).to_json() == \
        {"kind": "cli_operator", "name": "cli:ops"}
    hook = row(3, "webhook.delivered", actor="service", subject=None, host="hooks.shop.sg", country="SG")
    assert recipient_of(hook).to_json() == {"kind": "webhook", "name": "hooks.shop.sg", "country": "SG"}
    asked = row(4, "out_of_session.asked", actor="service", host="biz.example", country="unknown")
    assert recipient_of(asked).to_json() == {"kind": "business", "name": "biz.example", "country": "unknown"}


def test_disclosed_to_groups_by_recipient_and_leaves_out_the_other_partys_rows_and_old_ones():
    entries = [
        row(1, "session.created", account="acme", at=NOW - timedelta(days=2)),
        row(2, "session.created", subject=THEIRS, account="acme"),  # B's number, in B's ledger
        row(3, "session.read", account="acme", at=NOW - timedelta(days=1)),
        row(4, "webhook.delivered", actor="service", subject=None, host="hooks.shop.sg", country="SG"),
        row(5, "recording.audio", actor="cli:ops", subject=None, at=NOW - timedelta(days=400)),
        row(6, "legal_hold.set", actor="cli:ops"),  # not a disclosure
    ]

    listed = disclosed_to(entries, MINE, NOW - timedelta(days=365))

    assert [(d["recipient"]["kind"], d["actions"], d["times"]) for d in listed] == [
        ("webhook", {"webhook.delivered": 1}, 1),
        ("api_key", {"session.created": 1, "session.read": 1}, 2),
    ]
    assert listed[1]["first_at"] == (NOW - timedelta(days=2)).isoformat()
    assert listed[0]["session_ids"] == [str(SESSION)] and listed[0]["recipient"]["country"] == "SG"


def test_audit_list_times_read_as_dates_or_offset_times():
    assert parse_moment("2026-12-01", "--since") == NOW
    assert parse_moment("2026-12-01T08:00:00+08:00", "--until") == NOW
    for bad in ("2026-12-01T08:00:00", "yesterday"):
        with pytest.raises(ValueError, match="--since"):
            parse_moment(bad, "--since")
