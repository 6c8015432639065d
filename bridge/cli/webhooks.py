"""`masking webhooks`: the call and session events sent to the business, and another try for the dead-lettered."""
from __future__ import annotations

from bridge.cli.common import command, emit, group, open_store
from bridge.config import Settings


def add_commands(sub) -> None:
    webhooks = group(sub, "webhooks", "call and session events sent to the business")
    p = command(webhooks, "list", cmd_webhooks_list, "latest events and their delivery", listing=True)
    p.add_argument("--status", choices=["pending", "delivered", "dead"])
    p.add_argument("--limit", type=int, default=50)
    command(webhooks, "retry", cmd_webhooks_retry, "send dead-lettered events again")


async def cmd_webhooks_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        rows = await store.outbox.list(args.status, args.limit)
    emit(rows, ["event_id", "event_type", "status", "attempts", "last_error", "created_at"], args.json, "events")
    return 0


async def cmd_webhooks_retry(settings: Settings, _args) -> int:
    async with open_store(settings) as store:
        count = await store.outbox.retry_dead()
    print(f"requeued {count} dead-lettered event(s)")
    return 0
