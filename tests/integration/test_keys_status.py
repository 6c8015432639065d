"""`masking keys status`: what each key seals, so an operator knows when an old key can go."""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from bridge.privacy.crypto import KeyRing
from bridge.store import Store
from tests.integration.test_cli import masking
from tests.integration.test_recordings_at_rest import answered_call
from tests.support.recordings import store_recording


async def test_keys_status_counts_sessions_recording_keys_and_audit_rows_per_key(store, dsn, tmp_path):
    ring = KeyRing.load(store.keys.path)
    ring.save(tmp_path / "keys.json")
    old = Store(store.pool, KeyRing.load(tmp_path / "keys.json"), store.timeout)
    for n in (21, 22):
        await store_recording(old, await answered_call(old, n), tmp_path / str(n), b"RIFF" + bytes(4000))
    newer = KeyRing.load(tmp_path / "keys.json")
    new_id = newer.add_key()
    newer.save()
    await store_recording(Store(store.pool, newer, store.timeout), await answered_call(old, 23), tmp_path / "23",
                          b"RIFF" + bytes(4000))
    for n in range(2):
        await old.audit.append("cli:test", "recording.read", "recording", str(n), source="cli@test")
    operator = SimpleNamespace(env={"MASKING_DATABASE_URL": dsn, "MASKING_KEYS_FILE": str(tmp_path / "keys.json"),
                                    "MASKING_STATE_DIR": str(tmp_path)})

    result = await asyncio.to_thread(masking, operator, "keys", "status", "--json")

    assert result.returncode == 0, result.stderr
    keys = {(k["kind"], k["key_id"]): k for k in json.loads(result.stdout)["keys"]}
    first, second = keys[("master", ring.active_id)], keys[("master", new_id)]
    assert (first["active"], first["sessions"], first["recording_keys"]) == (False, 3, 2)
    assert (second["active"], second["sessions"], second["recording_keys"]) == (True, 0, 1)
    audit = keys[("audit", ring.audit_active)]
    assert (audit["active"], audit["audit_rows"]) == (True, 2)
    assert audit["public_key"] == ring.audit_public_key(ring.audit_active).hex()
