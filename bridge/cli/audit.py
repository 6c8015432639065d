"""`masking audit`: read the audit trail, checkpoint its head outside the database, and verify it.

`verify` checks every row's HMAC and link, and that every checkpoint in the file (the service writes them;
`checkpoint` writes one now) is still in the trail with its hash: an edited, deleted, inserted or rewritten row
shows, and so do the newest rows deleted (docs/security.md). `list` filters by action, session, actor, time
range and subject (a number, in any spelling, matched by its keyed hash: the number itself is never stored).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bridge.auditing import take_checkpoint, verify_trail
from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store, parse_uuid
from bridge.config import Settings
from bridge.numbering import to_e164
from bridge.privacy.audit import entry_json
from bridge.privacy.checkpoint import CheckpointError
from bridge.privacy.ledger import parse_moment


def add_commands(sub) -> None:
    audit = group(sub, "audit", "the audit trail: who read or changed what")
    p = command(audit, "verify", cmd_audit_verify, "check the keyed chain against the checkpoints; print its head")
    p.add_argument("--expect-head", metavar="HEX", help="a head printed before: fail if it is no longer there")
    p.add_argument("--checkpoints", metavar="FILE", type=Path,
                   help="checkpoints to check against (default: MASKING_AUDIT_CHECKPOINT_FILE)")
    command(audit, "checkpoint", cmd_audit_checkpoint,
            "sign the trail's head and append it to the checkpoint file (and syslog, URL if set)")
    p = command(audit, "list", cmd_audit_list, "latest rows, newest first", listing=True)
    p.add_argument("--action", help="e.g. recording.read")
    p.add_argument("--session", dest="session_id")
    p.add_argument("--actor", help="who: apikey:<prefix>[:<name>], cli:<user>, console:..., service")
    p.add_argument("--since", help="from (inclusive): YYYY-MM-DD (UTC) or ISO 8601 with an offset")
    p.add_argument("--until", help="to (exclusive): YYYY-MM-DD (UTC) or ISO 8601 with an offset")
    p.add_argument("--subject", metavar="NUMBER",
                   help="rows about this number or its sessions (matched by its keyed hash; any spelling)")
    p.add_argument("--limit", type=int, default=50)


async def cmd_audit_verify(settings: Settings, args) -> int:
    try:
        expected = bytes.fromhex(args.expect_head) if args.expect_head else None
    except ValueError:
        raise UsageError("--expect-head must be a hash in hex, as verify prints it") from None
    path = args.checkpoints or settings.audit_checkpoint_path
    async with open_store(settings) as store:
        try:
            result, checkpoints = await verify_trail(store, path, expected)
        except CheckpointError as exc:
            print(f"audit checkpoints in {path} cannot be trusted: {exc}")
            return EXIT_FAILED
    if not result.ok:
        print(f"audit trail broken at seq {result.first_bad_seq}: {result.message}")
        return EXIT_FAILED
    if checkpoints:
        newest = max(checkpoints, key=lambda c: c.seq)
        against = (f"; reaches all {len(checkpoints)} checkpoint(s), the newest of seq {newest.seq}"
                   f" taken {newest.at.isoformat(timespec='seconds')}")
    else:
        against = ""
        print(f"masking: no checkpoint in {path}: deleting the newest rows would go unnoticed"
              " (the service writes checkpoints; so does `masking audit checkpoint`)", file=sys.stderr)
    print(f"audit trail ok: {result.message}; head seq {result.head_seq} hash {result.head_hash.hex()}{against}")
    return 0


async def cmd_audit_checkpoint(settings: Settings, _args) -> int:
    async with open_store(settings) as store:
        checkpoint, failures = await take_checkpoint(store, settings)
    print(checkpoint.to_line(), end="")
    for failure in failures:
        print(f"masking: the checkpoint is in {settings.audit_checkpoint_path} but {failure}", file=sys.stderr)
    return EXIT_FAILED if failures else 0


async def cmd_audit_list(settings: Settings, args) -> int:
    session_id = parse_uuid(args.session_id, "--session") if args.session_id else None
    try:
        since, until = (parse_moment(raw, option) if raw else None
                        for raw, option in ((args.since, "--since"), (args.until, "--until")))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    subject = to_e164(args.subject, settings.default_region) if args.subject else None
    if args.subject and subject is None:
        raise UsageError("--subject must be a phone number (+65..., 65... or its national digits)")
    async with open_store(settings) as store:
        subject_hash = store.keys.kept_hashes(subject) if subject else None  # under every key in the file
        rows = await store.audit.list(action=args.action, session_id=session_id, limit=args.limit,
                                      actor=args.actor, since=since, until=until, subject_hash=subject_hash,
                                      subject_sessions=subject_hash is not None)
    emit([entry_json(r) for r in rows], ["seq", "at", "actor", "action", "target_type", "target_id", "source",
                                         "reason"], args.json, "entries")
