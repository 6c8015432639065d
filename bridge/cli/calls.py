"""`masking calls`: call records, as the HTTP API represents them; each shown writes a `call.read` ledger row."""
from __future__ import annotations

from bridge.api.calls import call_json  # the CLI prints what the API returns
from bridge.cli.common import command, emit, group, open_store, operator, parse_uuid
from bridge.config import Settings

CALL_COLUMNS = ["id", "started_at", "virtual_number", "direction", "disposition", "reject_reason", "setup_ms",
                "talk_seconds", "recording_id"]


def add_commands(sub) -> None:
    calls = group(sub, "calls", "call records")
    p = command(calls, "list", cmd_calls_list, "latest calls, newest first", listing=True)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--session", dest="session_id")
    p = command(calls, "show", cmd_calls_show, "one call", listing=True)
    p.add_argument("call_id")


async def cmd_calls_list(settings: Settings, args) -> int:
    session_id = parse_uuid(args.session_id, "--session") if args.session_id else None
    async with open_store(settings) as store:
        rows = await store.calls.list(args.limit, session_id)
        await store.disclosures.calls_read(operator(), rows, {"via": "cli"})
    emit([call_json(r) | {"storage_path": r["storage_path"]} for r in rows],
         CALL_COLUMNS + ["storage_path"], args.json, "calls")
    return 0


async def cmd_calls_show(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        row = await store.calls.get(parse_uuid(args.call_id, "call id"))
        await store.disclosures.calls_read(operator(), [row], {"via": "cli"})
    emit([call_json(row)], CALL_COLUMNS + ["hangup_by", "ended_at"], args.json)
    return 0
