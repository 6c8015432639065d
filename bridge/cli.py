"""The operator's command line: `masking ...`.

Exit codes: 0 success, 1 the system is not in a state to do it (database
down, Asterisk missing), 2 the input is wrong (bad number, unknown option).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from bridge import logs
from bridge.config import ConfigError, Settings
from bridge.privacy.numbers import InvalidNumber, parse_e164
from bridge.sessions.models import SessionRequest
from bridge.store import (
    NotFound, NumberAlreadyInPool, NumberInUse, NumberUnavailable, PoolExhausted, SessionNotActive, Store,
    StoreError, ensure_database, utcnow,
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the operator: exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        return asyncio.run(args.handler(settings, args)) or 0
    except (UsageError, InvalidNumber, ConfigError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StoreError, OSError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="masking", description="Phone-number masking bridge for Asterisk")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the bridge (ARI app and health endpoints)")
    p.add_argument("--migrate", action="store_true", help="create and migrate the database first")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("run", help="run everything on this machine: Asterisk, database, bridge")
    p.set_defaults(handler=cmd_run)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="create the database if missing and apply migrations")
    p.set_defaults(handler=cmd_db_upgrade)

    numbers = sub.add_parser("numbers", help="the virtual-number pool").add_subparsers(dest="n", required=True)
    p = numbers.add_parser("add", help="add virtual numbers (E.164) to the pool")
    p.add_argument("numbers", nargs="+")
    p.set_defaults(handler=cmd_numbers_add)
    p = numbers.add_parser("list", help="list the pool")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_numbers_list)

    sessions = sub.add_parser("sessions", help="masking sessions").add_subparsers(dest="s", required=True)
    p = sessions.add_parser("create", help="bind two participants to a virtual number")
    p.add_argument("--a", required=True, help="participant A (E.164)")
    p.add_argument("--b", required=True, help="participant B (E.164)")
    p.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    p.add_argument("--no-record", action="store_true", help="do not record this session's calls")
    p.add_argument("--number", help="assign this virtual number explicitly (reserved numbers too)")
    p.set_defaults(handler=cmd_sessions_create)
    p = sessions.add_parser("close", help="close a session; later calls hear the out-of-session prompt")
    p.add_argument("session_id")
    p.set_defaults(handler=cmd_sessions_close)

    calls = sub.add_parser("calls", help="call records").add_subparsers(dest="c", required=True)
    p = calls.add_parser("list", help="latest calls, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_calls_list)

    keys = sub.add_parser("apikeys", help="API keys for the HTTP API").add_subparsers(dest="k", required=True)
    p = keys.add_parser("create", help="create a key; the token is printed once")
    p.add_argument("--name", required=True)
    p.add_argument("--scope", action="append", choices=["sessions", "numbers", "recordings"],
                   help="repeat for several; default: sessions")
    p.set_defaults(handler=cmd_apikeys_create)
    p = keys.add_parser("list", help="list keys (never their tokens)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_apikeys_list)
    p = keys.add_parser("revoke", help="revoke a key by its prefix")
    p.add_argument("prefix")
    p.set_defaults(handler=cmd_apikeys_revoke)

    p = sub.add_parser("doctor", help="check ARI, AMI, database and recording store")
    p.set_defaults(handler=cmd_doctor)

    ast = sub.add_parser("asterisk", help="Asterisk configuration").add_subparsers(dest="a", required=True)
    p = ast.add_parser("config", help="render dialplan/ templates with the current settings")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--instance-dir", default="/var/lib/masking-asterisk",
                   help="directory Asterisk sees as its own (etc/, run/, spool/... below it)")
    p.set_defaults(handler=cmd_asterisk_config)
    return parser


async def _store(settings: Settings) -> Store:
    return await Store.connect(settings.database_url, settings.db_timeout)


async def cmd_serve(settings: Settings, args) -> int:
    from bridge.service import serve

    if args.migrate:
        await cmd_db_upgrade(settings, args)
    await serve(settings)
    return 0


async def cmd_run(settings: Settings, args) -> int:
    """Asterisk (this project's configuration), database, bridge; Ctrl-C stops all."""
    from bridge.service import serve
    from bridge.stack.asterisk import AsteriskInstance

    await cmd_db_upgrade(settings, args)
    settings.recording_dir.mkdir(parents=True, exist_ok=True)
    asterisk = AsteriskInstance(settings)
    await asyncio.to_thread(asterisk.start)
    print(f"asterisk: SIP udp {settings.asterisk.sip_host}:{settings.asterisk.sip_port}, "
          f"ARI {settings.ari_url}, AMI {settings.ami_host}:{settings.ami_port}, "
          f"counterparts dialed at {settings.asterisk.outbound_host}:{settings.asterisk.outbound_port}; "
          f"console log {asterisk.console_log}", file=sys.stderr)
    try:
        await serve(settings)
    finally:
        await asyncio.to_thread(asterisk.stop)
    return 0


async def cmd_db_upgrade(settings: Settings, _args) -> int:
    if await ensure_database(settings.database_url):
        print("created database", file=sys.stderr)
    store = await _store(settings)
    try:
        applied = await store.upgrade()
    finally:
        await store.close()
    print("applied: " + (", ".join(applied) if applied else "nothing, schema is current"), file=sys.stderr)
    return 0


async def cmd_numbers_add(settings: Settings, args) -> int:
    numbers = [parse_e164(raw) for raw in args.numbers]
    store = await _store(settings)
    try:
        for number in numbers:
            try:
                await store.add_number(number)
                print(f"added {number}")
            except NumberAlreadyInPool as exc:
                print(f"skipped: {exc}", file=sys.stderr)
    finally:
        await store.close()
    return 0


async def cmd_numbers_list(settings: Settings, args) -> int:
    store = await _store(settings)
    try:
        rows = await store.list_numbers()
    finally:
        await store.close()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    else:
        print(f"{'number':<18} {'status':<8} {'live sessions':>13}  last allocated")
        for r in rows:
            print(f"{r['number']:<18} {r['status']:<8} {r['live_sessions']:>13}  {r['last_allocated_at'] or '-'}")
    return 0


async def cmd_sessions_create(settings: Settings, args) -> int:
    a = parse_e164(args.a, settings.default_region)
    b = parse_e164(args.b, settings.default_region)
    if a == b:
        raise UsageError("participants A and B must be different numbers")
    ttl = args.ttl if args.ttl is not None else settings.default_ttl
    if ttl <= 0:
        raise UsageError("--ttl must be a positive number of seconds")
    store = await _store(settings)
    try:
        session, _ = await store.create_session(SessionRequest(
            participant_a=a, participant_b=b, ttl_seconds=ttl,
            record=settings.record_by_default and not args.no_record,
            sticky=settings.sticky, quarantine_seconds=settings.quarantine_seconds,
            virtual_number=parse_e164(args.number) if args.number else None))
    except (PoolExhausted, NumberInUse, NumberUnavailable) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    print(json.dumps(session.to_json(utcnow()), indent=2))
    return 0


async def cmd_sessions_close(settings: Settings, args) -> int:
    try:
        session_id = uuid.UUID(args.session_id)
    except ValueError:
        raise UsageError("session id must be a UUID") from None
    store = await _store(settings)
    try:
        await store.close_session(session_id)
    except (NotFound, SessionNotActive) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    print(f"closed {session_id}")
    return 0


async def cmd_calls_list(settings: Settings, args) -> int:
    store = await _store(settings)
    try:
        rows = await store.list_calls(args.limit)
    finally:
        await store.close()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(f"{'started (UTC)':<20} {'virtual number':<15} {'direction':<9} {'disposition':<11} "
          f"{'reason':<20} {'setup ms':>8} {'talk s':>7}  recording")
    for r in rows:
        print(f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['virtual_number']:<15} {r['direction'] or '-':<9} "
              f"{r['disposition']:<11} {r['reject_reason'] or '-':<20} {r['setup_ms'] or '-':>8} "
              f"{r['talk_seconds'] or '-':>7}  {r['storage_path'] or '-'}")
    return 0


async def cmd_apikeys_create(settings: Settings, args) -> int:
    store = await _store(settings)
    try:
        token, row = await store.create_api_key(args.name, sorted(set(args.scope or ["sessions"])))
    finally:
        await store.close()
    print(json.dumps({"token": token, "name": row["name"], "prefix": row["prefix"], "scopes": row["scopes"]},
                     indent=2))
    print("masking: store the token now; it cannot be shown again", file=sys.stderr)
    return 0


async def cmd_apikeys_list(settings: Settings, args) -> int:
    store = await _store(settings)
    try:
        rows = await store.list_api_keys()
    finally:
        await store.close()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(f"{'prefix':<10} {'name':<24} {'scopes':<30} revoked")
    for r in rows:
        print(f"{r['prefix']:<10} {r['name']:<24} {','.join(r['scopes']):<30} {r['revoked_at'] or '-'}")
    return 0


async def cmd_apikeys_revoke(settings: Settings, args) -> int:
    store = await _store(settings)
    try:
        revoked = await store.revoke_api_key(args.prefix)
    finally:
        await store.close()
    if not revoked:
        print("masking: no active key with that prefix", file=sys.stderr)
        return EXIT_FAILED
    print(f"revoked {args.prefix}")
    return 0


async def cmd_doctor(settings: Settings, _args) -> int:
    from bridge.doctor import run_checks

    results = await run_checks(settings)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'ok ' if r.ok else 'FAIL'} {r.name:<{width}}  {r.detail}")
    return 0 if all(r.ok for r in results) else EXIT_FAILED


async def cmd_asterisk_config(settings: Settings, args) -> int:
    from bridge.stack.asterisk import AsteriskInstall, render_templates, template_values

    install = AsteriskInstall(root=Path("/"), module_dir="/usr/lib/x86_64-linux-gnu/asterisk/modules")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render_templates(template_values(settings, install, args.instance_dir)).items():
        (args.out / name).write_text(text)
    print(f"rendered into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
