"""The keyed audit chain and its signed checkpoints, without a database: what
someone who can change rows but holds no key file can and cannot get past."""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bridge.privacy.audit import GENESIS, AuditEntry, ChainWalk, Problem, canonical, sealed, verify_chain
from bridge.privacy.checkpoint import (CheckpointError, hashes_by_seq, parse_checkpoint, read_checkpoints,
                                       sign_checkpoint)
from bridge.privacy.crypto import AuditKeyMissing, KeyRing

T0 = datetime(2025, 1, 31, 8, 0, tzinfo=timezone.utc)
RING = KeyRing.generate()


def entry(seq: int, key_id: str | None = None) -> AuditEntry:
    return AuditEntry(seq=seq, at=T0 + timedelta(seconds=seq), actor="cli:ops", action="recording.read",
                      target_type="recording", target_id=f"r{seq}", source="cli@host", details={"n": seq},
                      key_id=key_id)


def chain(count: int, unkeyed: int = 0, ring: KeyRing = RING) -> list[AuditEntry]:
    """`unkeyed` rows from before the keyed chain, then keyed ones."""
    rows, prev = [], GENESIS
    for seq in range(1, count + 1):
        rows.append(sealed(entry(seq, None if seq <= unkeyed else ring.active_audit_id), prev, ring.audit_mac))
        prev = rows[-1].hash
    return rows


def plain_rehash(rows: list[AuditEntry], drop_key: bool) -> list[AuditEntry]:
    """What an attacker without the key can do: recompute SHA-256 hashes and relink."""
    out, prev = [], rows[0].prev_hash
    for row in rows:
        row = replace(row, key_id=None) if drop_key else row
        digest = hashlib.sha256(canonical(replace(row, prev_hash=prev))).digest()
        out.append(replace(row, prev_hash=prev, hash=digest))
        prev = digest
    return out


# -- the keyed chain ---------------------------------------------------------------------------
def test_a_keyed_chain_verifies_with_its_key_ring_and_not_without():
    rows = chain(4)
    assert verify_chain(rows, mac=RING.audit_mac).ok
    assert verify_chain(rows).problem == Problem.UNKNOWN_KEY
    assert verify_chain(rows, mac=KeyRing.generate().audit_mac).problem == Problem.UNKNOWN_KEY


def test_a_row_hash_is_an_hmac_that_another_audit_key_does_not_reproduce():
    row = chain(1)[0]
    assert row.hash != hashlib.sha256(canonical(row)).digest()
    other = KeyRing.generate()
    forged = sealed(replace(row, key_id=other.active_audit_id), GENESIS, other.audit_mac)
    assert verify_chain([replace(forged, key_id=row.key_id)], mac=RING.audit_mac).problem == Problem.EDITED


def test_a_row_rewritten_with_a_plain_sha256_is_caught_whether_or_not_its_key_id_is_kept():
    rows = chain(5)
    edited = rows[:2] + plain_rehash([replace(rows[2], reason="nothing to see"), *rows[3:]], drop_key=False)
    downgraded = rows[:2] + plain_rehash([replace(rows[2], reason="nothing to see"), *rows[3:]], drop_key=True)
    assert (verify_chain(edited, mac=RING.audit_mac).first_bad_seq,
            verify_chain(edited, mac=RING.audit_mac).problem) == (3, Problem.EDITED)
    assert (verify_chain(downgraded, mac=RING.audit_mac).first_bad_seq,
            verify_chain(downgraded, mac=RING.audit_mac).problem) == (3, Problem.UNKEYED)


def test_rows_from_before_the_keyed_chain_keep_verifying_as_they_were_sealed():
    rows = chain(5, unkeyed=2)
    result = verify_chain(rows, mac=RING.audit_mac)
    assert result.ok and "2 from before the keyed chain" in result.message


def test_an_unkeyed_row_keeps_the_hash_it_had_before_keys_existed():
    row = AuditEntry(seq=1, at=datetime(2025, 1, 31, 8, 0, 1, tzinfo=timezone.utc), actor="cli:ops",
                     action="recording.read", target_type="recording", target_id="r1", source="cli@host",
                     session_id=uuid.UUID(int=7), subject_hash=b"\x01" * 32, reason="ticket 4", details={"n": 1})
    # The hash main computed for this row before the keyed chain existed.
    assert sealed(row, GENESIS).hash.hex() == "8e3bc1c85a9394695cdc8389c6d0acba0bca09f4491d05a0570348fdd69e5c2c"
    assert "key_id" not in json.loads(canonical(row))


def test_a_key_id_swapped_on_a_keyed_row_breaks_it():
    ring = KeyRing.generate()
    rows = chain(3, ring=ring)
    swapped = replace(rows[1], key_id=ring.add_audit_key())
    assert verify_chain([rows[0], swapped, rows[2]], mac=ring.audit_mac).problem == Problem.EDITED


def test_rows_keyed_under_a_retired_audit_key_still_verify_after_a_new_one_is_added():
    ring = KeyRing.generate()
    old = chain(2, ring=ring)
    ring.add_audit_key()
    newer = sealed(entry(3, ring.active_audit_id), old[-1].hash, ring.audit_mac)
    assert verify_chain([*old, newer], mac=ring.audit_mac).ok
    assert {r.key_id for r in (*old, newer)} == set(ring.audit_keys)


def test_a_ring_without_an_audit_key_cannot_key_a_row():
    ring = KeyRing.generate()
    ring.audit_keys.clear()
    ring.audit_active = None
    with pytest.raises(AuditKeyMissing, match="no audit key"):
        ring.active_audit_id


# -- checkpoints ---------------------------------------------------------------------------------
def test_the_newest_rows_deleted_are_caught_against_a_checkpoint():
    rows = chain(5)
    checkpoints = {5: rows[-1].hash}
    result = verify_chain(rows[:3], mac=RING.audit_mac, checkpoints=checkpoints)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 4, Problem.DELETED)
    assert "seq 5 was checkpointed" in result.message


def test_a_whole_chain_rewritten_without_keys_is_caught_at_the_checkpointed_row():
    rows = chain(5)
    rewritten = plain_rehash([replace(rows[0], reason="nothing to see"), *rows[1:]], drop_key=True)
    assert verify_chain(rewritten).ok, "in itself it is a consistent plain chain"
    result = verify_chain(rewritten, mac=RING.audit_mac, checkpoints={4: rows[3].hash})
    assert (result.first_bad_seq, result.problem) == (4, Problem.REWRITTEN)


def test_a_trail_that_grew_past_every_checkpoint_verifies():
    rows = chain(6)
    assert verify_chain(rows, mac=RING.audit_mac, checkpoints={2: rows[1].hash, 5: rows[4].hash}).ok


def test_a_walk_continues_from_a_checkpoint():
    rows = chain(5)
    walk = ChainWalk(mac=RING.audit_mac, start=(3, rows[2].hash))
    assert all(walk.add(row) for row in rows[3:]) and walk.result().head_seq == 5


def test_a_checkpoint_line_round_trips_and_verifies():
    checkpoint = sign_checkpoint(RING, 5, b"\x07" * 32, T0, "bridge-1")
    [read] = read_checkpoints(RING, [checkpoint.to_line()])
    assert read == checkpoint
    assert parse_checkpoint(checkpoint.to_line()).key_id == RING.audit_active


@pytest.mark.parametrize("field, value", [("seq", 4), ("hash", "00" * 32), ("at", "2030-01-01T00:00:00+00:00"),
                                          ("host", "elsewhere"), ("key_id", "a-other")])
def test_a_checkpoint_changed_after_signing_is_refused(field, value):
    line = json.loads(sign_checkpoint(RING, 5, b"\x07" * 32, T0, "bridge-1").to_line())
    line[field] = value
    with pytest.raises(CheckpointError, match="line 1"):
        read_checkpoints(RING, [json.dumps(line)])


def test_a_checkpoint_signed_with_another_ring_is_refused():
    other = sign_checkpoint(KeyRing.generate(), 5, b"\x07" * 32, T0, "bridge-1")
    with pytest.raises(CheckpointError, match="does not hold"):
        read_checkpoints(RING, [other.to_line()])


@pytest.mark.parametrize("line", ["not json", "{}", '{"seq": 1}', "[]"])
def test_a_malformed_checkpoint_line_is_refused(line):
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoints(RING, [line])


def test_two_checkpoints_of_one_seq_that_disagree_mean_a_rewrite():
    first = sign_checkpoint(RING, 5, b"\x07" * 32, T0, "bridge-1")
    second = sign_checkpoint(RING, 5, b"\x08" * 32, T0 + timedelta(minutes=5), "bridge-1")
    with pytest.raises(CheckpointError, match="disagree"):
        hashes_by_seq([first, second])
    assert hashes_by_seq([first, first]) == {5: b"\x07" * 32}
    assert hashes_by_seq([sign_checkpoint(RING, 0, GENESIS, T0, "h")]) == {}
