"""The audit trail's hash chain and what goes into its rows, without a database."""
from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bridge.config import Settings
from bridge.privacy.audit import (
    GENESIS, AuditEntry, Problem, canonical, chain_hash, changed_settings, clean_reason, config_snapshot,
    fingerprint, sealed, verify_chain,
)

T0 = datetime(2025, 1, 31, 8, 0, tzinfo=timezone.utc)


def chain(count: int) -> list[AuditEntry]:
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        entry = AuditEntry(seq=seq, at=T0 + timedelta(seconds=seq), actor="apikey:ab12cd34:shop",
                           action="recording.read", target_type="recording", target_id=str(uuid.UUID(int=seq)),
                           source="127.0.0.1", session_id=uuid.UUID(int=1000 + seq),
                           details={"call_id": str(uuid.UUID(int=seq)), "n": seq})
        rows.append(sealed(entry, prev))
        prev = rows[-1].hash
    return rows


def test_an_intact_chain_verifies_and_names_its_head():
    rows = chain(5)
    result = verify_chain(rows)
    assert result.ok and result.rows_checked == 5
    assert (result.head_seq, result.head_hash) == (5, rows[-1].hash)


def test_an_empty_trail_is_intact_with_the_genesis_head():
    result = verify_chain([])
    assert result.ok and result.head_seq == 0 and result.head_hash == GENESIS == bytes(32)


def test_the_first_row_links_to_32_zero_bytes():
    assert chain(1)[0].prev_hash == bytes(32)


def test_the_hash_is_sha256_of_the_canonical_form_and_ignores_the_stored_hash():
    row = chain(1)[0]
    assert len(row.hash) == 32
    assert chain_hash(GENESIS, replace(row, hash=b"anything")) == row.hash


def test_the_canonical_form_is_stable_json_in_utc_without_the_hash():
    row = chain(1)[0]
    in_singapore = replace(row, at=row.at.astimezone(timezone(timedelta(hours=8))),
                           details={"n": 1, "call_id": row.details["call_id"]})
    document = json.loads(canonical(row))
    assert canonical(in_singapore) == canonical(row)
    assert "hash" not in document and document["prev_hash"] == GENESIS.hex()
    assert document["at"] == "2025-01-31T08:00:01.000000+00:00"
    assert list(document) == sorted(document)


@pytest.mark.parametrize("change", [
    {"reason": "curious"}, {"actor": "cli:mallory"}, {"details": {"call_id": "x", "n": 2}},
    {"at": T0}, {"session_id": None}, {"subject_hash": b"\x01" * 32},
])
def test_an_edited_row_is_named_by_its_seq(change):
    rows = chain(5)
    rows[2] = replace(rows[2], **change)
    result = verify_chain(rows)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, Problem.EDITED)
    assert result.rows_checked == 2 and result.head_seq == 2


def test_a_deleted_middle_row_shows_as_a_gap():
    rows = chain(5)
    del rows[2]
    result = verify_chain(rows)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, Problem.DELETED)
    assert "row 3 is missing" in result.message


def test_a_deleted_first_row_shows_as_a_trail_not_starting_at_1():
    result = verify_chain(chain(3)[1:])
    assert (result.first_bad_seq, result.problem) == (1, Problem.DELETED)


def test_a_row_rehashed_after_an_edit_breaks_the_next_link():
    rows = chain(5)
    rows[1] = sealed(replace(rows[1], reason="covered up"), rows[0].hash)
    result = verify_chain(rows)
    assert (result.first_bad_seq, result.problem) == (3, Problem.BAD_LINK)


def test_a_rewritten_chain_is_consistent_but_misses_its_anchor():
    rows = chain(4)
    anchor = rows[-1].hash
    rewritten, prev = [], GENESIS
    for row in rows:
        rewritten.append(sealed(replace(row, reason="rewritten") if row.seq == 2 else row, prev))
        prev = rewritten[-1].hash
    assert verify_chain(rewritten).ok
    assert verify_chain(rewritten, expected_head=anchor).problem == Problem.DELETED


def test_deleting_the_newest_rows_is_caught_only_against_an_anchored_head():
    rows = chain(5)
    anchor = rows[-1].hash
    truncated = rows[:3]
    assert verify_chain(truncated).ok
    result = verify_chain(truncated, expected_head=anchor)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 4, Problem.DELETED)


def test_a_trail_that_grew_since_its_head_was_anchored_verifies():
    rows = chain(5)
    assert verify_chain(rows, expected_head=rows[2].hash).ok
    assert verify_chain([], expected_head=GENESIS).ok


def test_an_entry_needs_an_aware_time():
    with pytest.raises(ValueError):
        AuditEntry(seq=1, at=datetime(2025, 1, 1), actor="a", action="x.y", target_type="t", target_id="1",
                   source="s")


# -- what goes into rows ---------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("", None), ("   ", None),
    ("  ticket 4411 \n", "ticket 4411"),
    ("customer +6591234567 complained", "customer +65****4567 complained"),
    ("a\x00b\x1bc", "a b c"),
    ("x" * 300, "x" * 200),
])
def test_a_reason_is_trimmed_printable_capped_and_never_holds_a_number(raw, expected):
    assert clean_reason(raw) == expected


def test_a_config_snapshot_leaves_secrets_out_and_hides_urls_behind_a_digest():
    settings = Settings(ari_password="ari-pw", ami_password="ami-pw", webhook_secret="hook-secret",
                        database_url="postgresql://u:db-pw@db/masking", webhook_url="https://x/h?token=t0k",
                        dial_timeout=45)
    snapshot = config_snapshot(settings, lambda value: f"digest-of-{len(value)}")
    text = json.dumps(snapshot)

    for secret in ("ari-pw", "ami-pw", "hook-secret", "db-pw", "t0k"):
        assert secret not in text
    assert "MASKING_ARI_PASSWORD" not in snapshot and "MASKING_WEBHOOK_SECRET" not in snapshot
    assert snapshot["MASKING_DATABASE_URL"].startswith("digest-of-")
    assert snapshot["MASKING_DIAL_TIMEOUT"] == "45"
    assert snapshot["MASKING_SIP_PORT"] == "5060" and snapshot["MASKING_PROMPT_BUSY"] == Settings().prompts.busy


def test_changed_settings_name_what_differs_appeared_or_went():
    before = {"MASKING_DIAL_TIMEOUT": "30", "MASKING_OLD": "1", "MASKING_SIP_PORT": "5060"}
    after = {"MASKING_DIAL_TIMEOUT": "45", "MASKING_NEW": "1", "MASKING_SIP_PORT": "5060"}
    assert changed_settings(before, after) == ["MASKING_DIAL_TIMEOUT", "MASKING_NEW", "MASKING_OLD"]
    assert fingerprint(before) != fingerprint(after) and fingerprint(after) == fingerprint(dict(after))
