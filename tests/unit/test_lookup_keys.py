"""Lookup keys (bridge/privacy/lookup.py): several in the ring, one active, lookups under each in use."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from bridge.privacy.crypto import KeyFileError, KeyRing
from bridge.privacy.lookup import LookupKeyError
from bridge.sessions.pin_guard import FailureCount, combined

NUMBER = "+6591234567"


def legacy_file(path, ring: KeyRing) -> dict:
    """A key file as written before rotation: a single `lookup` key."""
    document = json.loads(path.read_text())
    for name in ("lookup_keys", "lookup_active", "lookup_retired"):
        document.pop(name)
    path.write_text(json.dumps(document))
    return document


def test_a_key_file_from_before_rotation_loads_with_its_key_as_l0_and_the_same_hashes(tmp_path):
    ring = KeyRing.generate()
    ring.save(tmp_path / "keys.json")
    document = legacy_file(tmp_path / "keys.json", ring)

    loaded = KeyRing.load(tmp_path / "keys.json")

    old_formula = hmac.new(base64.b64decode(document["lookup"]), b"number:" + NUMBER.encode(), hashlib.sha256)
    assert loaded.lookup_key_id == "l0" and loaded.lookup_hashes(NUMBER) == [old_formula.digest()]
    assert loaded.lookup_hash(NUMBER) == ring.lookup_hash(NUMBER)


def test_a_new_lookup_key_is_active_for_new_rows_and_lookups_try_both_active_first(tmp_path):
    ring = KeyRing.generate()
    old_hash = ring.lookup_hash(NUMBER)

    new_id = ring.lookup.add()

    assert new_id == "l1" and ring.lookup_key_id == "l1"
    assert ring.lookup_hash(NUMBER) != old_hash
    assert ring.lookup_hashes(NUMBER) == [ring.lookup_hash(NUMBER), old_hash]
    assert len(set(ring.keyed_digests("idempotency", b"{}"))) == 2


def test_a_retired_key_is_no_longer_tried_by_lookups_but_still_finds_kept_rows(tmp_path):
    ring = KeyRing.generate()
    old_hash = ring.lookup_hash(NUMBER)
    ring.lookup.add()

    ring.lookup.retire("l0")

    assert old_hash not in ring.lookup_hashes(NUMBER)
    assert ring.kept_hashes(NUMBER) == [ring.lookup_hash(NUMBER), old_hash]
    ring.lookup.forget("l0")
    assert ring.kept_hashes(NUMBER) == [ring.lookup_hash(NUMBER)]


def test_the_active_key_cannot_be_retired_nor_an_unretired_one_forgotten():
    ring = KeyRing.generate()
    with pytest.raises(LookupKeyError):
        ring.lookup.retire("l0")
    ring.lookup.add()
    with pytest.raises(LookupKeyError):
        ring.lookup.forget("l0")
    with pytest.raises(LookupKeyError):
        ring.lookup.retire("l9")


def test_the_key_file_keeps_every_lookup_key_its_state_and_the_legacy_one_for_older_binaries(tmp_path):
    ring = KeyRing.generate()
    legacy = ring.lookup_key
    ring.lookup.add()
    ring.lookup.add()
    ring.lookup.retire("l0")
    ring.save(tmp_path / "keys.json")

    loaded = KeyRing.load(tmp_path / "keys.json")

    assert loaded.lookup.in_use == ["l2", "l1"] and loaded.lookup.retired == {"l0"}
    assert loaded.lookup_hashes(NUMBER) == ring.lookup_hashes(NUMBER)
    assert json.loads((tmp_path / "keys.json").read_text())["lookup"] == base64.b64encode(legacy).decode()
    assert os.stat(tmp_path / "keys.json").st_mode & 0o077 == 0


def test_a_key_file_naming_a_missing_active_lookup_key_is_refused(tmp_path):
    ring = KeyRing.generate()
    ring.save(tmp_path / "keys.json")
    document = json.loads((tmp_path / "keys.json").read_text())
    document["lookup_active"] = "l7"
    (tmp_path / "keys.json").write_text(json.dumps(document))
    with pytest.raises(KeyFileError):
        KeyRing.load(tmp_path / "keys.json")


def test_no_lookup_key_material_in_the_ring_repr():
    ring = KeyRing.generate()
    ring.lookup.add()
    shown = repr(ring)
    assert all(key.hex() not in shown and base64.b64encode(key).decode() not in shown
               for key in ring.lookup.keys.values())


def test_a_running_ring_takes_a_lookup_key_added_to_its_file_by_another_process(tmp_path):
    path = tmp_path / "keys.json"
    KeyRing.generate().save(path)
    running = KeyRing.load(path)
    before = running.lookup_hash(NUMBER)
    operator = KeyRing.load(path)
    operator.lookup.add()
    time.sleep(0.01)
    operator.save()

    deadline = time.monotonic() + 3
    while running.lookup_key_id != "l1" and time.monotonic() < deadline:
        time.sleep(0.1)

    assert running.lookup_key_id == "l1" and running.lookup_hashes(NUMBER)[1] == before


def test_a_callers_wrong_pins_under_two_keys_count_as_one():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    old = FailureCount(3, now, 1, now + timedelta(minutes=1))
    new = FailureCount(2, now + timedelta(minutes=5), 0, None)

    both = combined([old, new])

    assert both == FailureCount(5, now, 1, now + timedelta(minutes=1))
    assert combined([]) == FailureCount()


def test_a_reading_of_the_lookup_keys_is_not_changed_by_a_later_reload(tmp_path):
    """A row's hashes and its `lookup_key_id` come from one reading: a reload between them
    would label an old-key hash with the new key, and `rehash` would never move it."""
    path = tmp_path / "keys.json"
    KeyRing.generate().save(path)
    running = KeyRing.load(path)
    reading = running.lookups()
    operator = KeyRing.load(path)
    operator.lookup.add()
    time.sleep(0.01)
    operator.save()

    running.reload()

    assert (reading.active, running.lookup_key_id) == ("l0", "l1")
    assert reading.hash(NUMBER) == running.lookup_hashes(NUMBER)[1]
