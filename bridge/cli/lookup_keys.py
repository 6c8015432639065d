"""`masking keys add-lookup | rehash | retire-lookup`: rotating the lookup key that
hashes numbers for lookups (bridge/privacy/lookup.py, bridge/store/lookup_keys.py).

The order: `add-lookup` (new rows use the new key at once; running services read
the key file within a second, so copy it to every host first), `rehash` until
nothing is left (resumable: it may be stopped and run again), `retire-lookup`
(refused while a row still uses the key). docs/security.md, "Rotating the lookup key".
"""
from __future__ import annotations

import sys

from bridge.cli.common import UsageError, command, open_store, operator
from bridge.config import Settings
from bridge.privacy.crypto import KeyRing
from bridge.privacy.lookup import LookupKeyError
from bridge.store.errors import StoreError
from bridge.store.lookup_keys import KEPT


def add_commands(ring) -> None:
    command(ring, "add-lookup", cmd_add_lookup,
            "add a new lookup key (hashes numbers for lookups), active for new rows; then run `keys rehash`")
    p = command(ring, "rehash", cmd_rehash,
                "re-hash rows made under older lookup keys with the active one, in batches (resumable)")
    p.add_argument("--batch", type=int, default=500, help="rows per table per transaction")
    p.add_argument("--batches", type=int, default=None, help="stop after this many batches (run again to resume)")
    p = command(ring, "retire-lookup", cmd_retire_lookup,
                "stop using an old lookup key in lookups (refused while rows still use it)")
    p.add_argument("key_id")
    p.add_argument("--forget", action="store_true",
                   help="also delete it from the key file: audit rows and requests under it can no longer be "
                        "found by number")


async def cmd_add_lookup(settings: Settings, _args) -> int:
    ring = KeyRing.load(settings.keys_path)
    key_id = ring.lookup.add()
    ring.save()
    await _audit(settings, "keys.lookup_added", key_id, {"in_use": ring.lookup.in_use})
    print(f"added lookup key {key_id} (active); copy the key file to every host (services read it within a"
          " second), then run `masking keys rehash`")
    return 0


async def cmd_rehash(settings: Settings, args) -> int:
    if args.batch < 1 or (args.batches is not None and args.batches < 1):
        raise UsageError("--batch and --batches must be positive")
    async with open_store(settings) as store:
        active = store.keys.lookup_key_id
        counts = await store.lookup_keys.counts()
        stale = sorted({k for table, by_key in counts.items() if table not in KEPT for k in by_key} - {active})
        moved = batches = 0
        while stale and (args.batches is None or batches < args.batches):
            done = await store.lookup_keys.rehash_batch(stale, args.batch)
            batches += 1
            moved += done
            if not done:
                break
        left = {k: n for k, n in (await _left(store, active)).items() if n}
        await store.audit.append_by(operator(), "keys.lookup_rehashed", "key", active,
                                    details={"rows": moved, "batches": batches, "left": left})
    print(f"re-hashed or dropped {moved} row(s) in {batches} batch(es) under lookup key {active}; "
          + (f"left under older keys: {left} (run again)" if left else "none left under older keys"))
    return 0


async def _left(store, active: str) -> dict[str, int]:
    counts = await store.lookup_keys.counts()
    left: dict[str, int] = {}
    for table, by_key in counts.items():
        if table not in KEPT:
            for key_id, rows in by_key.items():
                if key_id != active:
                    left[key_id] = left.get(key_id, 0) + rows
    return left


async def cmd_retire_lookup(settings: Settings, args) -> int:
    ring = KeyRing.load(settings.keys_path)
    async with open_store(settings) as store:
        holding = await store.lookup_keys.holding(args.key_id)
        kept = {t: n for t, n in (await store.lookup_keys.counts()).items() if t in KEPT}
    if holding:
        raise UsageError(f"lookup key {args.key_id} still hashes rows {holding}; run `masking keys rehash` first")
    try:
        if args.key_id not in ring.lookup.retired:
            ring.lookup.retire(args.key_id)
        if args.forget:
            ring.lookup.forget(args.key_id)
    except LookupKeyError as exc:
        raise UsageError(str(exc)) from None
    ring.save()
    kept_rows = sum(by_key.get(args.key_id, 0) for by_key in kept.values())
    await _audit(settings, "keys.lookup_forgotten" if args.forget else "keys.lookup_retired", args.key_id,
                 {"kept_rows": kept_rows})
    print(f"lookup key {args.key_id} " + (
        f"deleted from the key file; audit rows, requests and {kept_rows} request digest(s) made under it"
        " can no longer be found by number" if args.forget else
        "retired: no longer tried by lookups, kept to find audit rows and requests made under it"))
    return 0


async def _audit(settings: Settings, action: str, key_id: str, details: dict) -> None:
    try:
        async with open_store(settings) as store:
            await store.audit.append_by(operator(), action, "key", key_id, details=details)
    except StoreError as exc:  # the key file changed; say the trail missed it
        print(f"masking: the audit row was not written: {exc}", file=sys.stderr)
