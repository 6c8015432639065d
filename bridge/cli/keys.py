"""`masking keys`: the key file whose master keys encrypt personal data at rest, and re-sealing under a new key.

Without that file the data is unreadable, so `init` never overwrites one (docs/privacy.md).
"""
from __future__ import annotations

import sys

from bridge.cli.common import UsageError, command, emit, group, open_store, operator
from bridge.config import Settings
from bridge.privacy.crypto import KeyRing
from bridge.store.errors import StoreError


def add_commands(sub) -> None:
    ring = group(sub, "keys", "the keys that encrypt personal data at rest (MASKING_KEYS_FILE)")
    command(ring, "init", cmd_keys_init, "create the key file (refuses to overwrite one)")
    p = command(ring, "add", cmd_keys_add, "add a new master key and make it active for new writes")
    p.add_argument("--no-activate", action="store_true", help="add it, but keep sealing with the current key")
    p = command(ring, "rotate", cmd_keys_rotate, "re-seal data sealed under older keys with the active one")
    p.add_argument("--batch", type=int, default=500)
    command(ring, "status", cmd_keys_status, "key ids, the active one, and how many rows each seals",
            listing=True)


async def cmd_keys_init(settings: Settings, _args) -> int:
    path = settings.keys_path
    if path.exists():
        raise UsageError(f"{path} exists; use `masking keys add` to add a key")
    ring = KeyRing.generate()
    ring.save(path)
    print(f"created {path} with key {ring.active_id}; back it up apart from the database")
    return 0


async def cmd_keys_add(settings: Settings, args) -> int:
    ring = KeyRing.load(settings.keys_path)
    key_id = ring.add_key(activate=not args.no_activate)
    ring.save()
    try:
        async with open_store(settings) as store:
            await store.audit.append_by(operator(), "keys.added", "key", key_id, details={"active": ring.active_id})
    except StoreError as exc:  # the key is added; say the trail missed it
        print(f"masking: the audit row was not written: {exc}", file=sys.stderr)
    print(f"added key {key_id}" + ("" if args.no_activate else " (active)")
          + "; restart the services, then run `masking keys rotate`")
    return 0


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
        counts = await store.sessions.rows_by_key()
    ids = sorted(set(store.keys.keys) | set(counts))
    emit([{"key_id": k, "active": k == store.keys.active_id, "in_key_file": k in store.keys.keys,
           "sessions": counts.get(k, 0)} for k in ids], ["key_id", "active", "in_key_file", "sessions"],
         args.json, key="keys")
    return 0
