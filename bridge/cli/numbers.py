"""`masking numbers`: the pool of virtual numbers that sessions are given.

Adding and retiring are audited as the operator at this terminal.
"""
from __future__ import annotations

import sys

from bridge.api.numbers import number_json  # the CLI prints what the API returns
from bridge.cli.common import EXIT_FAILED, command, emit, group, open_store, operator
from bridge.config import Settings
from bridge.numbering import parse_e164
from bridge.store.errors import StoreError


def add_commands(sub) -> None:
    numbers = group(sub, "numbers", "the virtual-number pool")
    p = command(numbers, "add", cmd_numbers_add, "add virtual numbers (E.164) to the pool")
    p.add_argument("numbers", nargs="+")
    p.add_argument("--reserved", action="store_true", help="never auto-allocated; assign with --number")
    p.add_argument("--pin-mode", action="store_true", help="shared by many sessions: callers key the session's PIN")
    p = command(numbers, "list", cmd_numbers_list, "list the pool", listing=True)
    p.add_argument("--status", choices=["active", "retired"])
    p = command(numbers, "retire", cmd_numbers_retire, "retire a number no live session uses")
    p.add_argument("number")


async def cmd_numbers_add(settings: Settings, args) -> int:
    numbers = [parse_e164(raw) for raw in args.numbers]
    failed = False
    async with open_store(settings) as store:
        for number in numbers:
            try:
                await store.numbers.add(number, reserved=args.reserved, by=operator(), pin_mode=args.pin_mode)
                print(f"added {number}{' (reserved)' if args.reserved else ''}{' (pin mode)' if args.pin_mode else ''}")
            except StoreError as exc:
                failed = True
                print(f"masking: {exc}", file=sys.stderr)
    return EXIT_FAILED if failed else 0


async def cmd_numbers_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        rows = [number_json(r) for r in await store.numbers.list(args.status)]
    emit(rows, ["number", "status", "reserved", "pin_mode", "country", "live_sessions", "last_allocated_at"], args.json,
         "numbers")
    return 0


async def cmd_numbers_retire(settings: Settings, args) -> int:
    number = parse_e164(args.number)
    async with open_store(settings) as store:
        try:
            await store.numbers.retire(number, by=operator())
        except StoreError as exc:
            detail = f" (sessions {', '.join(exc.session_ids)})" if getattr(exc, "session_ids", None) else ""
            print(f"masking: {exc}{detail}", file=sys.stderr)
            return EXIT_FAILED
    print(f"retired {number}")
    return 0
