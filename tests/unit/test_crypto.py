"""Numbers at rest: sealed to their row, hashed with a key, keys kept out of sight."""
import json
import os

import pytest

from bridge.privacy.crypto import (BadSignature, DecryptionFailed, KeyFileError, KeyRing, UnknownKey, number_context,
                                   verify_signature)
from bridge.store.schema import migration_steps

NUMBER = "+6591234567"


def test_a_sealed_number_opens_only_in_its_own_row_and_column():
    ring = KeyRing.generate()
    blob = ring.seal_number(NUMBER, number_context("masking_sessions", 1, "participant_a"))
    assert NUMBER.encode() not in blob
    assert ring.open_number(ring.active_id, blob, number_context("masking_sessions", 1, "participant_a")) == NUMBER
    for elsewhere in (number_context("masking_sessions", 2, "participant_a"),
                      number_context("masking_sessions", 1, "participant_b")):
        with pytest.raises(DecryptionFailed):
            ring.open_number(ring.active_id, blob, elsewhere)


def test_a_tampered_ciphertext_is_refused():
    ring = KeyRing.generate()
    blob = bytearray(ring.seal_number(NUMBER, "ctx"))
    blob[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        ring.open_number(ring.active_id, bytes(blob), "ctx")


def test_lookup_hashes_are_equal_for_equal_numbers_and_depend_on_the_key():
    ring, other = KeyRing.generate(), KeyRing.generate()
    assert ring.lookup_hash(NUMBER) == ring.lookup_hash(NUMBER)
    assert ring.lookup_hash(NUMBER) != ring.lookup_hash("+6591234568")
    assert ring.lookup_hash(NUMBER) != other.lookup_hash(NUMBER)


def test_rows_sealed_under_an_older_key_open_after_a_new_key_is_activated():
    ring = KeyRing.generate()
    old_id, blob = ring.active_id, ring.seal_number(NUMBER, "ctx")
    new_id = ring.add_key()
    assert ring.active_id == new_id != old_id
    assert ring.open_number(old_id, blob, "ctx") == NUMBER
    del ring.keys[old_id]
    with pytest.raises(UnknownKey):
        ring.open_number(old_id, blob, "ctx")


def test_the_key_file_round_trips_and_must_not_be_readable_by_others(tmp_path):
    path = tmp_path / "keys.json"
    ring = KeyRing.generate()
    ring.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = KeyRing.load(path)
    assert loaded.lookup_hash(NUMBER) == ring.lookup_hash(NUMBER)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyRing.load(path)


def test_key_file_errors_and_reprs_never_show_key_material(tmp_path):
    ring = KeyRing.generate()
    secrets_ = [v.hex() for v in ring.keys.values()] + [ring.lookup_key.hex()]
    assert not any(s in repr(ring) for s in secrets_)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"active": "x", "keys": {"y": "AAAA"}, "lookup": "AAAA"}))
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError) as caught:
        KeyRing.load(path)
    assert "AAAA" not in str(caught.value)
    with pytest.raises(KeyFileError, match="masking keys init"):
        KeyRing.load(tmp_path / "missing.json")


def test_a_migration_is_split_at_its_code_steps():
    sql = "ALTER TABLE t ADD c int;\n-- masking:code fill_c\nALTER TABLE t ALTER c SET NOT NULL;\n"
    assert migration_steps(sql) == [("sql", "ALTER TABLE t ADD c int;"), ("code", "fill_c"),
                                    ("sql", "ALTER TABLE t ALTER c SET NOT NULL;")]
    assert migration_steps("SELECT 1;") == [("sql", "SELECT 1;")]


# -- audit keys ---------------------------------------------------------------------------------
def test_a_new_key_file_holds_an_audit_key_whose_secret_never_shows(tmp_path):
    ring = KeyRing.generate()
    ring.save(tmp_path / "keys.json")
    loaded = KeyRing.load(tmp_path / "keys.json")
    assert loaded.audit_active == ring.audit_active and loaded.audit_keys == ring.audit_keys
    assert loaded.audit_mac(ring.audit_active, b"row") == ring.audit_mac(ring.audit_active, b"row")
    assert not any(v.hex() in repr(ring) for v in ring.audit_keys.values())


def test_a_key_file_from_before_audit_keys_still_loads_and_gets_one_added(tmp_path):
    path = tmp_path / "keys.json"
    old = KeyRing.generate()
    old.save(path)
    document = json.loads(path.read_text())
    del document["audit"], document["audit_active"]  # as files were written before
    path.write_text(json.dumps(document))
    ring = KeyRing.load(path)
    assert ring.audit_active is None and ring.lookup_hash(NUMBER) == old.lookup_hash(NUMBER)
    added = ring.add_audit_key()
    ring.save()
    assert KeyRing.load(path).audit_active == added and KeyRing.load(path).keys == old.keys


def test_the_audit_mac_and_signature_depend_on_the_audit_key():
    ring, other = KeyRing.generate(), KeyRing.generate()
    key_id = ring.audit_active
    assert ring.audit_mac(key_id, b"row") != other.audit_mac(other.audit_active, b"row")
    signature = ring.audit_sign(key_id, b"checkpoint")
    verify_signature(ring.audit_public_key(key_id), signature, b"checkpoint")
    with pytest.raises(BadSignature):
        verify_signature(other.audit_public_key(other.audit_active), signature, b"checkpoint")
    with pytest.raises(BadSignature):
        verify_signature(ring.audit_public_key(key_id), signature, b"checkpoint!")
    with pytest.raises(UnknownKey):
        ring.audit_mac("a-nope", b"row")
