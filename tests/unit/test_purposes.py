"""The purpose registry: what a purpose declares, and the sessions it refuses."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.privacy import purposes
from bridge.privacy.purposes import RegistryError, check_opt_out_digit, load_registry, refusal_for_session

REPO = Path(__file__).resolve().parents[2]
SHA = "a" * 64
CHECKED = datetime(2026, 5, 1, tzinfo=timezone.utc)


def registry(tmp_path: Path, text: str) -> purposes.Registry:
    path = tmp_path / "purposes.toml"
    path.write_text(text)
    return load_registry(path)


BASIC = f"""
[purposes.delivery_order]
records = true
webhooks = {{ hosts = ["hooks.example.com"], countries = ["SG"] }}
retention = {{ sessions_days = 30, recordings_days = 90 }}
notice = {{ text = "This call is recorded.", sha256 = "{SHA}" }}

[purposes.promotion]
marketing = true
notice = {{ text = "Not recorded.", sha256 = "{SHA}" }}

[purposes.quiet]
records = true
empty_opt_out_allowed = true
notice = {{ text = "Recorded.", sha256 = "{SHA}" }}
"""


def test_the_shipped_registry_loads_and_its_notice_hash_is_the_shipped_notice_audio():
    shipped = purposes.registry_for(Settings())
    audio = (REPO / "dialplan" / "sounds" / "masking-recording-notice.wav").read_bytes()
    assert {"delivery_order", "out_of_session"} <= set(shipped.purposes)
    assert shipped.get("delivery_order").notice.sha256 == hashlib.sha256(audio).hexdigest()
    assert shipped.get("delivery_order").records and not shipped.get("delivery_order").marketing


def test_a_purpose_declares_notice_recording_retention_webhooks_and_marketing(tmp_path):
    purpose = registry(tmp_path, BASIC).get("delivery_order")
    assert (purpose.records, purpose.marketing, purpose.sessions_days, purpose.recordings_days) == (True, False, 30, 90)
    assert (purpose.webhook_hosts, purpose.webhook_countries) == (("hooks.example.com",), ("SG",))
    assert purpose.notice == purposes.PurposeNotice("This call is recorded.", SHA)


def test_an_unregistered_purpose_is_refused_with_its_own_code(tmp_path):
    refusal = refusal_for_session(registry(tmp_path, BASIC), "pizza_delivery", None, None, None, None)
    assert (refusal.code, refusal.field) == ("unregistered_purpose", "purpose")
    assert "delivery_order" in refusal.message


def test_marketing_needs_do_not_call_evidence(tmp_path):
    reg = registry(tmp_path, BASIC)
    assert refusal_for_session(reg, "promotion", None, None, None, None).code == "dnc_evidence_required"
    assert refusal_for_session(reg, "promotion", None, None, CHECKED, None).code == "dnc_evidence_required"
    assert refusal_for_session(reg, "promotion", None, None, CHECKED, "DNC-2026-0001") is None


def test_recording_is_refused_under_a_purpose_that_does_not_record_and_never_defaulted_on(tmp_path):
    reg = registry(tmp_path, BASIC)
    assert refusal_for_session(reg, "promotion", True, None, CHECKED, "ref").code == "purpose_does_not_record"
    assert purposes.records(reg, "promotion", True) is False
    assert purposes.records(reg, "delivery_order", True) is True
    assert purposes.records(reg, "delivery_order", False) is False


def test_webhooks_go_only_to_the_hosts_the_purpose_lists(tmp_path):
    reg = registry(tmp_path, BASIC)
    refusal = refusal_for_session(reg, "delivery_order", None, "https://elsewhere.example.net/hook", None, None)
    assert refusal.code == "webhook_destination_not_allowed"
    assert refusal_for_session(reg, "delivery_order", None, "https://hooks.example.com/h", None, None) is None


def test_an_empty_opt_out_digit_is_refused_unless_every_recording_purpose_allows_it(tmp_path):
    reg = registry(tmp_path, BASIC)
    with pytest.raises(RegistryError, match="delivery_order"):
        check_opt_out_digit(reg, "")
    check_opt_out_digit(reg, "9")
    only_quiet = replace(reg, purposes={"quiet": reg.get("quiet"), "promotion": reg.get("promotion")})
    check_opt_out_digit(only_quiet, "")


@pytest.mark.parametrize("text, problem", [
    ("", "no \\[purposes"),
    ("[purposes.Bad-Code]\nnotice = { text = 'x', sha256 = '" + SHA + "' }", "a code is like"),
    ("[purposes.p]\nrecords = true", "notice needs"),
    ("[purposes.p]\nnotice = { text = 'x', sha256 = 'abc' }", "notice needs"),
    ("[purposes.p]\nrecords = 'yes'\nnotice = { text = 'x', sha256 = '" + SHA + "' }", "true or false"),
    ("[purposes.p]\nretention = { recordings_days = 0 }\nnotice = { text = 'x', sha256 = '" + SHA + "' }", "retention"),
    ("[purposes.p]\nwebhooks = { countries = ['Singapore'] }\nnotice = { text = 'x', sha256 = '" + SHA + "' }",
     "countries"),
    ("[purposes.p]\nrecord = true\nnotice = { text = 'x', sha256 = '" + SHA + "' }", "unknown keys"),
    ("[purposes.p", "not TOML"),
])
def test_a_registry_that_says_something_it_may_not_is_refused(tmp_path, text, problem):
    with pytest.raises(RegistryError, match=problem):
        registry(tmp_path, text)


def test_a_missing_registry_file_is_refused_by_name(tmp_path):
    settings = Settings(purpose_registry=tmp_path / "nope.toml")
    with pytest.raises(RegistryError, match="nope.toml"):
        purposes.registry_for(settings)


def test_no_opt_out_digit_is_asked_for_by_name_since_an_empty_value_keeps_the_default():
    assert Settings.from_env({"MASKING_NOTICE_OPT_OUT_DIGIT": "none"}).notice.opt_out_digit == ""
    assert Settings.from_env({"MASKING_NOTICE_OPT_OUT_DIGIT": ""}).notice.opt_out_digit == "9"


def test_a_purposes_declared_country_is_its_one_webhook_country_and_none_for_none_or_several(tmp_path):
    several = BASIC.replace('countries = ["SG"]', 'countries = ["SG", "JP"]')
    assert purposes.declared_country(registry(tmp_path, BASIC), "delivery_order") == "SG"
    assert purposes.declared_country(registry(tmp_path, several), "delivery_order") is None
    assert purposes.declared_country(registry(tmp_path, BASIC), "promotion") is None  # declares none
    assert purposes.declared_country(registry(tmp_path, BASIC), "retired") is None
    assert purposes.declared_country(None, "delivery_order") is None  # no registry given: nothing declared
