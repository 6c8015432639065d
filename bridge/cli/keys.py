"""`masking keys`: the key file whose master keys encrypt personal data at rest, re-sealing under a new key,
and the audit keys that key the audit chain and sign its checkpoints.

Without that file the data is unreadable, so `init` never overwrites one (docs/privacy.md, docs/security.md).
"""
from __future__ import annotations

import sys

from bridge.cli import lookup_keys
from bridge.cli.common import UsageError, command, emit, group, open_store, operator
from bridge.config import Settings
from bridge.privacy.crypto import KeyRing
from bridge.store.errors import StoreError

STATUS_COLUMNS = ["key_id", "kind", "active", "in_key_file", "sessions", "recording_keys", "audit_rows", "state",
                  "hashed_rows"]


def add_commands(sub) -> None:
    ring = group(sub, "keys", "the keys that encrypt personal data at rest (MASKING_KEYS_FILE)")
    command(ring, "init", cmd_keys_init, "create the key file (refuses to overwrite one)")
    p = command(ring, "add", cmd_keys_add, "add a new master key and make it active for new writes")
    p.add_argument("--no-activate", action="store_true", help="add it, but keep sealing with the current key")
    p = command(ring, "rotate", cmd_keys_rotate, "re-seal data sealed under older keys with the active one")
    p.add_argument("--batch", type=int, default=500)
    command(ring, "add-audit", cmd_keys_add_audit,
            "add a new audit key, active for new audit rows and checkpoints (older ones stay to verify)")
    lookup_keys.add_commands(ring)
    command(ring, "status", cmd_keys_status,
            "key ids, the active ones, and what each seals or hashes: sessions, recording keys, audit rows,"
            " rows per lookup key", listing=True)


async def cmd_keys_init(settings: Settings, _args) -> int:
    path = settings.keys_path
    if path.exists():
        raise UsageError(f"{path} exists; use `masking keys add` to add a key")
    ring = KeyRing.generate()
    ring.save(path)
    print(f"created {path} with key {ring.active_id} and audit key {ring.audit_active};"
          " back it up apart from the database")
    return 0


async def cmd_keys_add(settings: Settings, args) -> int:
    ring = KeyRing.load(settings.keys_path)
    key_id = ring.add_key(activate=not args.no_activate)
    ring.save()
    await _audit_key_change(settings, "keys.added", key_id, {"active": ring.active_id})
    print(f"added key {key_id}" + ("" if args.no_activate else " (active)")
          + "; restart the services, then run `masking keys rotate`")
    return 0


async def cmd_keys_add_audit(settings: Settings, _args) -> int:
    ring = KeyRing.load(settings.keys_path)
    key_id = ring.add_audit_key()
    ring.save()
    await _audit_key_change(settings, "keys.audit_added", key_id, {"public_key": ring.audit_public_key(key_id).hex()})
    print(f"added audit key {key_id} (active); copy the key file to every host, restart the services,"
          " and keep the older audit keys: rows and checkpoints they signed are verified with them")
    return 0


async def _audit_key_change(settings: Settings, action: str, key_id: str, details: dict) -> None:
    try:
        async with open_store(settings) as store:
            await store.audit.append_by(operator(), action, "key", key_id, details=details)
    except StoreError as exc:  # the key is added; say the trail missed it
        print(f"masking: the audit row was not written: {exc}", file=sys.stderr)


async def cmd_keys_rotate(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        total = rewrapped = 0
        while resealed := await store.sessions.reseal(args.batch):
            total += resealed
        # Recordings: only their wrapped data keys change; the audio stays as it is.
        while done := await store.recordings.rewrap_keys(args.batch):
            rewrapped += done
        await store.audit.append_by(operator(), "keys.rotated", "key", store.keys.active_id,
                                    details={"sessions_resealed": total, "recording_keys_rewrapped": rewrapped})
    print(f"re-sealed {total} session(s) and re-wrapped {rewrapped} recording key(s) under key "
          f"{store.keys.active_id}")
    return 0


async def cmd_keys_status(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        sessions = await store.sessions.rows_by_key()
        recordings = await store.recordings.keys_by_master()
        audit_rows = await store.audit.rows_by_key()
        hashed = await store.lookup_keys.counts()
    keys = store.keys
    masters = [{"key_id": k, "kind": "master", "active": k == keys.active_id, "in_key_file": k in keys.keys,
                "sessions": sessions.get(k, 0), "recording_keys": recordings.get(k, 0)}
               for k in sorted(set(keys.keys) | set(sessions) | set(recordings))]
    audit = [{"key_id": k, "kind": "audit", "active": k == keys.audit_active, "in_key_file": k in keys.audit_keys,
              "audit_rows": audit_rows.get(k, 0),
              "public_key": keys.audit_public_key(k).hex() if k in keys.audit_keys else None}
             for k in sorted(set(keys.audit_keys) | {k for k in audit_rows if k is not None})]
    unkeyed = [{"key_id": None, "kind": "audit (unkeyed, before the keyed chain)", "active": False,
                "in_key_file": False, "audit_rows": audit_rows[None]}] if None in audit_rows else []
    emit(masters + audit + unkeyed + _lookup_rows(keys, hashed), STATUS_COLUMNS, args.json, key="keys")
    return 0


def _lookup_rows(keys: KeyRing, hashed: dict[str, dict[str, int]]) -> list[dict]:
    """A row per lookup key: its state and how many rows of each table it hashed (`rows`)."""
    lookup = keys.lookup
    ids = set(lookup.keys) | {k for by_key in hashed.values() for k in by_key}
    rows = []
    for key_id in sorted(ids):
        tables = {table: by_key.get(key_id, 0) for table, by_key in hashed.items()}
        state = ("active" if key_id == lookup.active else "retired" if key_id in lookup.retired
                 else "in use" if key_id in lookup.keys else "missing")
        rows.append({"key_id": key_id, "kind": "lookup", "active": key_id == lookup.active,
                     "in_key_file": key_id in lookup.keys, "state": state, "sessions": tables["masking_sessions"],
                     "hashed_rows": sum(tables.values()), "rows": tables})
    return rows
