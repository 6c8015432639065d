"""`masking audit`: read the audit trail, and verify its hash chain so an edited, deleted or inserted row shows.

`verify` prints the chain's head, to anchor elsewhere and check later with `--expect-head` (docs/privacy.md).
"""
from __future__ import annotations

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store, parse_uuid
from bridge.config import Settings
from bridge.privacy.audit import ChainWalk, entry_json


def add_commands(sub) -> None:
    audit = group(sub, "audit", "the audit trail: who read or changed what")
    p = command(audit, "verify", cmd_audit_verify, "check the hash chain; print its head to anchor elsewhere")
    p.add_argument("--expect-head", metavar="HEX", help="a head printed before: fail if it is no longer there")
    p = command(audit, "list", cmd_audit_list, "latest rows, newest first", listing=True)
    p.add_argument("--action", help="e.g. recording.read")
    p.add_argument("--session", dest="session_id")
    p.add_argument("--limit", type=int, default=50)


async def cmd_audit_verify(settings: Settings, args) -> int:
    try:
        expected = bytes.fromhex(args.expect_head) if args.expect_head else None
    except ValueError:
        raise UsageError("--expect-head must be a hash in hex, as verify prints it") from None
    walk = ChainWalk(expected)
    async with open_store(settings) as store:
        async for row in store.audit.walk():
            if not walk.add(row):
                break
    result = walk.result()
    if not result.ok:
        print(f"audit trail broken at seq {result.first_bad_seq}: {result.message}")
        return EXIT_FAILED
    print(f"audit trail ok: {result.message}; head seq {result.head_seq} hash {result.head_hash.hex()}")
    return 0


async def cmd_audit_list(settings: Settings, args) -> int:
    session_id = parse_uuid(args.session_id, "--session") if args.session_id else None
    async with open_store(settings) as store:
        rows = await store.audit.list(action=args.action, session_id=session_id, limit=args.limit)
    emit([entry_json(r) for r in rows], ["seq", "at", "actor", "action", "target_type", "target_id", "source",
                                         "reason"], args.json, "entries")
