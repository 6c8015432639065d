"""`masking purge`: anonymise or delete what is past its retention, except what is under legal hold.

Idempotent and in bounded batches, as the service's own periodic purge (docs/privacy.md).
"""
from __future__ import annotations

import json

from bridge.cli.common import UsageError, command, open_store, operator
from bridge.config import Settings
from bridge.privacy.retention import policy_in_force
from bridge.recordings.backfill import plaintext_retirer


def add_commands(sub) -> None:
    p = command(sub, "purge", cmd_purge, "anonymise or delete what is past its retention (idempotent)",
                listing=True)
    p.add_argument("--dry-run", action="store_true", help="count what is due; change nothing")
    p.add_argument("--batch", type=int, default=None, help="rows per transaction (MASKING_PURGE_BATCH)")


async def cmd_purge(settings: Settings, args) -> int:
    batch = settings.purge_batch if args.batch is None else args.batch
    if batch < 1:
        raise UsageError("--batch must be at least 1")
    async with open_store(settings) as store:
        report = await store.retention.purge(policy_in_force(settings), batch, dry_run=args.dry_run,
                                             by=operator(), webhook_url=settings.webhook_url or None,
                                             retire=plaintext_retirer(store))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    verb = "would purge" if args.dry_run else "purged"
    for kind, counts in report.to_json()["kinds"].items():
        print(f"{kind}: {verb} {counts['purged']}, kept under legal hold {counts['held']}")
    if report.held_sessions:
        print("kept under legal hold: sessions " + ", ".join(report.to_json()["held_sessions"]))
    return 0
