"""The operator's command line: `masking ...`.

Everything the HTTP API does is reachable here too; listings print a table,
or with `--json` the same representation the API returns.

Exit codes: 0 success, 1 the system refused or is not in a state to do it
(database down, pool exhausted, session closed), 2 the input is wrong (bad
number, unknown option).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from bridge import logs
from bridge.cli.common import (EXIT_BAD_INPUT, EXIT_FAILED, UsageError, emit, open_store, operator, parse_uuid,
                               representations)
from bridge.config import ConfigError, Settings
from bridge.privacy.audit import ChainWalk, entry_json
from bridge.privacy.crypto import CryptoError, KeyRing
from bridge.privacy.numbers import InvalidNumber, parse_e164
from bridge.sessions import caller_id
from bridge.sessions.models import SessionRequest, purpose_allowed
from bridge.store import StoreError, ensure_database, utcnow


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
    except (StoreError, CryptoError, OSError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="masking", description="Phone-number masking bridge for Asterisk")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(group, name: str, handler, help_text: str, listing: bool = False) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_text)
        p.set_defaults(handler=handler)
        if listing:
            p.add_argument("--json", action="store_true", help="print JSON, as the HTTP API returns it")
        return p

    def group(name: str, help_text: str):
        return sub.add_parser(name, help=help_text).add_subparsers(dest=f"{name}_command", required=True)

    p = command(sub, "serve", cmd_serve, "run the bridge (ARI app, HTTP API, webhooks)")
    p.add_argument("--migrate", action="store_true", help="create and migrate the database first")
    command(sub, "serve-agi", cmd_serve_agi, "run only the FastAGI fallback (a standby for the dialplan)")
    command(sub, "run", cmd_run, "run everything on this machine: Asterisk, database, bridge")
    command(sub, "doctor", cmd_doctor, "check ARI, AMI, database and recording store")

    db = group("db", "database schema")
    command(db, "upgrade", cmd_db_upgrade, "create the database if missing and apply migrations")

    numbers = group("numbers", "the virtual-number pool")
    p = command(numbers, "add", cmd_numbers_add, "add virtual numbers (E.164) to the pool")
    p.add_argument("numbers", nargs="+")
    p.add_argument("--reserved", action="store_true", help="never auto-allocated; assign with --number")
    p.add_argument("--pin-mode", action="store_true", help="shared by many sessions: callers key the session's PIN")
    p = command(numbers, "list", cmd_numbers_list, "list the pool", listing=True)
    p.add_argument("--status", choices=["active", "retired"])
    p = command(numbers, "retire", cmd_numbers_retire, "retire a number no live session uses")
    p.add_argument("number")

    sessions = group("sessions", "masking sessions")
    p = command(sessions, "create", cmd_sessions_create, "bind two participants to a virtual number", listing=True)
    p.add_argument("--a", required=True, help="participant A (E.164)")
    p.add_argument("--purpose", required=True, help="why the numbers are used, e.g. delivery_order")
    p.add_argument("--recording-channels", type=int, choices=[1, 2], default=1,
                   help="2: each party on its own channel of a stereo recording")
    p.add_argument("--window-start", help="calls allowed from (ISO 8601 with offset)")
    p.add_argument("--window-end", help="calls allowed until (ISO 8601 with offset)")
    p.add_argument("--b", required=True, help="participant B (E.164)")
    p.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    p.add_argument("--ttl-mode", choices=["creation", "last_interaction"], default="creation")
    p.add_argument("--no-record", action="store_true", help="do not record this session's calls")
    p.add_argument("--number", help="assign this virtual number explicitly (reserved numbers too)")
    p.add_argument("--external-ref", help="the business's reference, e.g. the order id")
    p.add_argument("--pin-mode", action="store_true", help="on a shared (--pin-mode) number, with a PIN")
    p.add_argument("--pin-unknown-callers", action="store_true",
                   help="the PIN alone lets a caller who is neither participant reach B")
    p.add_argument("--webhook-url", help="where this session's call events go")
    p.add_argument("--time-limit", type=int, default=None,
                   help="end each call this many seconds after its answer (a warning beep comes first)")
    p.add_argument("--caller-id", choices=["shared", "per_participant"], default="shared",
                   help="per_participant: each participant dials, and sees, a virtual number of their own")
    p.add_argument("--number-b", help="with --caller-id per_participant: B's number, explicitly")
    p = command(sessions, "list", cmd_sessions_list, "latest sessions", listing=True)
    p.add_argument("--external-ref")
    p.add_argument("--status", choices=["active", "expired", "closed"])
    p.add_argument("--limit", type=int, default=50)
    p = command(sessions, "show", cmd_sessions_show, "one session", listing=True)
    p.add_argument("session_id")
    p = command(sessions, "extend", cmd_sessions_extend, "live again for TTL seconds from now", listing=True)
    p.add_argument("session_id")
    p.add_argument("--ttl", type=int, required=True)
    p = command(sessions, "close", cmd_sessions_close, "close; later calls hear the out-of-session prompt")
    p.add_argument("session_id")

    calls = group("calls", "call records")
    p = command(calls, "list", cmd_calls_list, "latest calls, newest first", listing=True)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--session", dest="session_id")
    p = command(calls, "show", cmd_calls_show, "one call", listing=True)
    p.add_argument("call_id")

    webhooks = group("webhooks", "call and session events sent to the business")
    p = command(webhooks, "list", cmd_webhooks_list, "latest events and their delivery", listing=True)
    p.add_argument("--status", choices=["pending", "delivered", "dead"])
    p.add_argument("--limit", type=int, default=50)
    command(webhooks, "retry", cmd_webhooks_retry, "send dead-lettered events again")

    ring = group("keys", "the keys that encrypt personal data at rest (MASKING_KEYS_FILE)")
    command(ring, "init", cmd_keys_init, "create the key file (refuses to overwrite one)")
    p = command(ring, "add", cmd_keys_add, "add a new master key and make it active for new writes")
    p.add_argument("--no-activate", action="store_true", help="add it, but keep sealing with the current key")
    p = command(ring, "rotate", cmd_keys_rotate, "re-seal data sealed under older keys with the active one")
    p.add_argument("--batch", type=int, default=500)
    command(ring, "status", cmd_keys_status, "key ids, the active one, and how many rows each seals",
            listing=True)

    keys = group("apikeys", "API keys for the HTTP API")
    p = command(keys, "create", cmd_apikeys_create, "create a key; the token is printed once")
    p.add_argument("--name", required=True)
    p.add_argument("--scope", action="append", choices=["sessions", "numbers", "recordings", "audit", "subjects"],
                   help="repeat for several; default: sessions")
    command(keys, "list", cmd_apikeys_list, "list keys (never their tokens)", listing=True)
    p = command(keys, "revoke", cmd_apikeys_revoke, "revoke a key by its prefix")
    p.add_argument("prefix")

    audit = group("audit", "the audit trail: who read or changed what")
    p = command(audit, "verify", cmd_audit_verify, "check the hash chain; print its head to anchor elsewhere")
    p.add_argument("--expect-head", metavar="HEX", help="a head printed before: fail if it is no longer there")
    p = command(audit, "list", cmd_audit_list, "latest rows, newest first", listing=True)
    p.add_argument("--action", help="e.g. recording.read")
    p.add_argument("--session", dest="session_id")
    p.add_argument("--limit", type=int, default=50)
    recordings = group("recordings", "recordings at rest")
    p = command(recordings, "seal", cmd_recordings_seal,
                "encrypt recordings stored before sealing existed (idempotent, in batches)")
    p.add_argument("--batch", type=int, default=20, help="recordings per batch")

    subject = group("subject", "data subjects' requests: access (export), correction, erasure")
    add_subject_commands(subject, command)

    ast = group("asterisk", "Asterisk configuration")
    p = command(ast, "config", cmd_asterisk_config, "render dialplan/ templates with the current settings")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--instance-dir", default="/var/lib/masking-asterisk",
                   help="directory Asterisk sees as its own (etc/, run/, spool/... below it)")
    add_retention_commands(sub, sessions, subject, command)
    return parser


# -- helpers ---------------------------------------------------------------------


def _iso_time(raw: str | None, option: str):
    from datetime import datetime

    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError(f"{option} must be an ISO 8601 time with a UTC offset")
    return moment


SESSION_COLUMNS = ["id", "virtual_number", "status", "record", "external_ref", "expires_at"]
CALL_COLUMNS = ["id", "started_at", "virtual_number", "direction", "disposition", "reject_reason", "setup_ms",
                "talk_seconds", "recording_id"]


# -- commands ----------------------------------------------------------------------
async def cmd_serve(settings: Settings, args) -> int:
    from bridge.service import serve

    if args.migrate:
        await cmd_db_upgrade(settings, args)
    await serve(settings)
    return 0


async def cmd_serve_agi(settings: Settings, _args) -> int:
    from bridge.service import serve_agi

    await serve_agi(settings)
    return 0


async def cmd_run(settings: Settings, args) -> int:
    """Asterisk (this project's configuration), database, bridge; Ctrl-C stops all."""
    from bridge.service import serve
    from bridge.stack.asterisk import AsteriskInstance

    _, created = KeyRing.load_or_create(settings.keys_path)
    if created:
        print(f"created a key ring at {settings.keys_path}: keep it safe, the data is unreadable without it",
              file=sys.stderr)
    await cmd_db_upgrade(settings, args)
    settings.recording_dir.mkdir(parents=True, exist_ok=True)
    asterisk = AsteriskInstance(settings)
    await asyncio.to_thread(asterisk.start)
    print(f"asterisk: SIP udp {settings.asterisk.sip_host}:{settings.asterisk.sip_port}, "
          f"ARI {settings.ari_url}, AMI {settings.ami_host}:{settings.ami_port}, "
          f"counterparts dialed at {settings.asterisk.outbound_host}:{settings.asterisk.outbound_port}; "
          f"HTTP API http://{settings.http_host}:{settings.http_port}; console log {asterisk.console_log}",
          file=sys.stderr)
    try:
        await serve(settings)
    finally:
        await asyncio.to_thread(asterisk.stop)
    return 0


async def cmd_db_upgrade(settings: Settings, _args) -> int:
    if await ensure_database(settings.database_url):
        print("created database", file=sys.stderr)
    async with open_store(settings) as store:
        applied = await store.upgrade()
    print("applied: " + (", ".join(applied) if applied else "nothing, schema is current"), file=sys.stderr)
    return 0


async def cmd_numbers_add(settings: Settings, args) -> int:
    numbers = [parse_e164(raw) for raw in args.numbers]
    failed = False
    async with open_store(settings) as store:
        for number in numbers:
            try:
                await store.add_number(number, reserved=args.reserved, by=operator(), pin_mode=args.pin_mode)
                print(f"added {number}{' (reserved)' if args.reserved else ''}{' (pin mode)' if args.pin_mode else ''}")
            except StoreError as exc:
                failed = True
                print(f"masking: {exc}", file=sys.stderr)
    return EXIT_FAILED if failed else 0


async def cmd_numbers_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        rows = [representations().number_json(r) for r in await store.list_numbers(args.status)]
    emit(rows, ["number", "status", "reserved", "pin_mode", "country", "live_sessions", "last_allocated_at"], args.json,
         "numbers")
    return 0


async def cmd_numbers_retire(settings: Settings, args) -> int:
    number = parse_e164(args.number)
    async with open_store(settings) as store:
        try:
            await store.retire_number(number, by=operator())
        except StoreError as exc:
            detail = f" (sessions {', '.join(exc.session_ids)})" if getattr(exc, "session_ids", None) else ""
            print(f"masking: {exc}{detail}", file=sys.stderr)
            return EXIT_FAILED
    print(f"retired {number}")
    return 0


async def cmd_sessions_create(settings: Settings, args) -> int:
    a = parse_e164(args.a, settings.default_region)
    b = parse_e164(args.b, settings.default_region)
    if a == b:
        raise UsageError("participants A and B must be different numbers")
    ttl = args.ttl if args.ttl is not None else settings.default_ttl
    if ttl <= 0:
        raise UsageError("--ttl must be a positive number of seconds")
    if not purpose_allowed(args.purpose, settings.allowed_purposes):
        raise UsageError("--purpose must be a code like delivery_order"
                         + (f", one of {', '.join(sorted(settings.allowed_purposes))}" if settings.allowed_purposes
                            else ""))
    window = [_iso_time(raw, name) for raw, name in ((args.window_start, "--window-start"),
                                                      (args.window_end, "--window-end"))]
    if window[0] and window[1] and window[1] <= window[0]:
        raise UsageError("--window-end must be after --window-start")
    if args.time_limit is not None and args.time_limit <= 0:
        raise UsageError("--time-limit must be a positive number of seconds")
    request = SessionRequest(
        participant_a=a, participant_b=b, ttl_seconds=ttl, ttl_mode=args.ttl_mode, purpose=args.purpose,
        recording_channels=args.recording_channels,
        window_starts_at=window[0], window_ends_at=window[1],
        record=settings.record_by_default and not args.no_record, external_ref=args.external_ref,
        webhook_url=args.webhook_url, sticky=settings.sticky, quarantine_seconds=settings.quarantine_seconds,
        virtual_number=parse_e164(args.number) if args.number else None, time_limit_seconds=args.time_limit,
        **caller_id_options(args),
        pin_mode=args.pin_mode, pin_unknown_callers=args.pin_unknown_callers, pin_length=settings.pin_length,
        pin_quarantine_seconds=settings.pin_quarantine_seconds)
    async with open_store(settings) as store:
        try:
            session, _ = await store.create_session(request)
        except StoreError as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
    # JSON by default: scripts read the virtual number from it.
    emit([session.to_json(utcnow())], SESSION_COLUMNS, True)
    return 0


def caller_id_options(args) -> dict:
    """--caller-id and --number-b, checked as the API checks them."""
    number_b = parse_e164(args.number_b) if args.number_b else None
    number = parse_e164(args.number) if args.number else None
    if problem := caller_id.numbers_problem(args.caller_id, number, number_b, caller_id.CLI_NAMES):
        raise UsageError(problem)
    if args.pin_mode and args.caller_id != "shared":
        raise UsageError("--pin-mode sessions share one number: it needs --caller-id shared")
    return {"caller_id_policy": args.caller_id, "virtual_number_b": number_b}


async def cmd_sessions_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        sessions = await store.list_sessions(args.external_ref, args.status, args.limit)
    emit([s.to_json(utcnow()) for s in sessions], SESSION_COLUMNS, args.json, "sessions")
    return 0


async def cmd_sessions_show(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        session = await store.get_session(parse_uuid(args.session_id, "session id"))
    emit([session.to_json(utcnow())], SESSION_COLUMNS + ["participant_a", "participant_b", "ttl_mode"], args.json)
    return 0


async def cmd_sessions_extend(settings: Settings, args) -> int:
    if args.ttl <= 0:
        raise UsageError("--ttl must be a positive number of seconds")
    async with open_store(settings) as store:
        session = await store.extend_session(parse_uuid(args.session_id, "session id"), args.ttl)
    emit([session.to_json(utcnow())], SESSION_COLUMNS, args.json)
    return 0


async def cmd_sessions_close(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        await store.close_session(parse_uuid(args.session_id, "session id"))
    print(f"closed {args.session_id}")
    return 0


async def cmd_calls_list(settings: Settings, args) -> int:
    session_id = parse_uuid(args.session_id, "--session") if args.session_id else None
    async with open_store(settings) as store:
        rows = await store.list_calls(args.limit, session_id)
    emit([representations().call_json(r) | {"storage_path": r["storage_path"]} for r in rows],
         CALL_COLUMNS + ["storage_path"], args.json, "calls")
    return 0


async def cmd_calls_show(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        row = await store.call(parse_uuid(args.call_id, "call id"))
    emit([representations().call_json(row)], CALL_COLUMNS + ["hangup_by", "ended_at"], args.json)
    return 0


async def cmd_webhooks_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        rows = await store.list_events(args.status, args.limit)
    emit(rows, ["event_id", "event_type", "status", "attempts", "last_error", "created_at"], args.json, "events")
    return 0


async def cmd_webhooks_retry(settings: Settings, _args) -> int:
    async with open_store(settings) as store:
        count = await store.retry_dead_events()
    print(f"requeued {count} dead-lettered event(s)")
    return 0


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
            await store.audit_by(operator(), "keys.added", "key", key_id, details={"active": ring.active_id})
    except StoreError as exc:  # the key is added; say the trail missed it
        print(f"masking: the audit row was not written: {exc}", file=sys.stderr)
    print(f"added key {key_id}" + ("" if args.no_activate else " (active)")
          + "; restart the services, then run `masking keys rotate`")
    return 0


async def cmd_keys_rotate(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        total = rewrapped = 0
        while resealed := await store.reseal_sessions(args.batch):
            total += resealed
        # Recordings: only their wrapped data keys change; the audio stays as it is.
        while done := await store.rewrap_recording_keys(args.batch):
            rewrapped += done
        await store.audit_by(operator(), "keys.rotated", "key", store.keys.active_id,
                             details={"sessions_resealed": total, "recording_keys_rewrapped": rewrapped})
    print(f"re-sealed {total} session(s) and re-wrapped {rewrapped} recording key(s) under key "
          f"{store.keys.active_id}")
    return 0


async def cmd_keys_status(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        counts = await store.rows_by_key()
    ids = sorted(set(store.keys.keys) | set(counts))
    emit([{"key_id": k, "active": k == store.keys.active_id, "in_key_file": k in store.keys.keys,
           "sessions": counts.get(k, 0)} for k in ids], ["key_id", "active", "in_key_file", "sessions"],
         args.json, key="keys")
    return 0


async def cmd_apikeys_create(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        token, row = await store.create_api_key(args.name, sorted(set(args.scope or ["sessions"])), by=operator())
    print(json.dumps({"token": token, "name": row["name"], "prefix": row["prefix"], "scopes": row["scopes"]},
                     indent=2))
    print("masking: store the token now; it cannot be shown again", file=sys.stderr)
    return 0


async def cmd_apikeys_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        rows = await store.list_api_keys()
    emit(rows, ["prefix", "name", "scopes", "created_at", "revoked_at"], args.json, "api_keys")
    return 0


async def cmd_apikeys_revoke(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        revoked = await store.revoke_api_key(args.prefix, by=operator())
    if not revoked:
        print("masking: no active key with that prefix", file=sys.stderr)
        return EXIT_FAILED
    print(f"revoked {args.prefix}")
    return 0


async def cmd_audit_verify(settings: Settings, args) -> int:
    try:
        expected = bytes.fromhex(args.expect_head) if args.expect_head else None
    except ValueError:
        raise UsageError("--expect-head must be a hash in hex, as verify prints it") from None
    walk = ChainWalk(expected)
    async with open_store(settings) as store:
        async for row in store.walk_audit():
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
        rows = await store.list_audit(action=args.action, session_id=session_id, limit=args.limit)
    emit([entry_json(r) for r in rows], ["seq", "at", "actor", "action", "target_type", "target_id", "source",
                                         "reason"], args.json, "entries")

async def cmd_recordings_seal(settings: Settings, args) -> int:
    from bridge.recordings.backfill import seal_stored_recordings

    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    async with open_store(settings) as store:
        report = await seal_stored_recordings(store, args.batch)
    print(f"sealed {report.sealed} recording(s), skipped {report.skipped} (see the log)")
    return 0


# -- data subjects ---------------------------------------------------------------------
def add_subject_commands(subject, command) -> None:
    p = command(subject, "export", cmd_subject_export, "a zip of everything held about one number")
    p.add_argument("number", help="the person's number (E.164)")
    p.add_argument("--audio", action="store_true", help="include the recordings' audio, decrypted")
    p.add_argument("--out", type=Path, help="the zip to write (default: subject-export-<time>.zip here)")
    p.add_argument("--request", dest="request_id", help="the access request this answers: marked done")
    request = subject.add_parser("request", help="track a request received from a person").add_subparsers(
        dest="request_command", required=True)
    p = command(request, "open", cmd_subject_request_open, "record a request and its due date", listing=True)
    p.add_argument("number", help="the person's number (E.164); only its keyed hash is kept")
    p.add_argument("--kind", required=True, choices=["access", "correction", "erasure"])
    p.add_argument("--received", help="when it was received: YYYY-MM-DD or ISO 8601 (default: now)")
    p.add_argument("--notes", help="free text, without numbers (any is masked)")
    p = command(request, "close", cmd_subject_request_close, "mark a request answered (or refused)", listing=True)
    p.add_argument("request_id")
    p.add_argument("--refused", action="store_true", help="refused, not answered (say why in --notes)")
    p.add_argument("--notes")
    p = command(subject, "requests", cmd_subject_requests, "requests by due date", listing=True)
    p.add_argument("--overdue", action="store_true", help="only open requests past their due date")
    p.add_argument("--status", choices=["open", "done", "refused"])
    p.add_argument("--kind", choices=["access", "correction", "erasure"])
    p.add_argument("--limit", type=int, default=100)


REQUEST_COLUMNS = ["id", "kind", "subject", "status", "received_at", "due_at", "overdue", "completed_at"]


async def cmd_subject_export(settings: Settings, args) -> int:
    from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen
    from bridge.privacy.subject_export import export_subject

    number = parse_e164(args.number, settings.default_region)
    request_id = parse_uuid(args.request_id, "--request") if args.request_id else None
    now = utcnow()
    path = args.out or Path(f"subject-export-{now:%Y%m%dT%H%M%SZ}.zip")
    if path.exists():
        raise UsageError(f"{path} exists; name another file with --out")
    partial = path.with_name(f".{path.name}.partial")  # renamed once complete: never half a zip under its name
    async with open_store(settings) as store:
        try:
            with open(partial, "wb") as out:
                summary = await export_subject(store, number, out, operator(), now, args.audio, request_id)
            os.replace(partial, path)
        except RequestMismatch as exc:
            raise UsageError(str(exc)) from None
        except RequestNotOpen as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            partial.unlink(missing_ok=True)
    counts = ", ".join(f"{v} {k}" for k, v in summary.counts.items())
    answered = (f"; request {request_id} done" if summary.request_done
                else f"; request {request_id} was closed meanwhile, not by this export" if request_id else "")
    print(f"wrote {path}: {counts}{answered}")
    return 0


async def cmd_subject_request_open(settings: Settings, args) -> int:
    from bridge.privacy.subject_access import due_at, received_at

    number = parse_e164(args.number, settings.default_region)
    try:
        received = received_at(args.received, utcnow())
    except ValueError as exc:
        raise UsageError(f"--received: {exc}") from None
    async with open_store(settings) as store:
        request = await store.open_subject_request(args.kind, number, received,
                                                   due_at(received, settings.subject_request_days), operator(),
                                                   args.notes)
    emit([request.to_json(utcnow())], REQUEST_COLUMNS, args.json)
    return 0


async def cmd_subject_request_close(settings: Settings, args) -> int:
    from bridge.privacy.subject_access import RequestNotOpen

    request_id = parse_uuid(args.request_id, "request id")
    async with open_store(settings) as store:
        try:
            request = await store.complete_subject_request(request_id, operator(),
                                                           "refused" if args.refused else "done", args.notes)
        except RequestNotOpen as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
    emit([request.to_json(utcnow())], REQUEST_COLUMNS + ["completed_by"], args.json)
    return 0


async def cmd_subject_requests(settings: Settings, args) -> int:
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be between 1 and 1000")
    async with open_store(settings) as store:
        requests = await store.list_subject_requests(args.status, args.overdue, args.kind, args.limit)
    now = utcnow()
    emit([r.to_json(now) for r in requests], REQUEST_COLUMNS, args.json, "requests")
    return 0


# -- retention, legal hold, erasure (docs/privacy.md) ---------------------------------
def add_retention_commands(sub, sessions, subject, command) -> None:
    p = command(sessions, "hold", cmd_sessions_hold,
                "put a session under legal hold: purge and erasure keep it whole until released", listing=True)
    p.add_argument("session_id")
    p.add_argument("--reason", required=True, help="why (a case or ticket); numbers in it are masked")
    p = command(sessions, "release-hold", cmd_sessions_release_hold, "lift a legal hold", listing=True)
    p.add_argument("session_id")
    p.add_argument("--reason", help="why, for the audit row")
    p = command(sub, "purge", cmd_purge, "anonymise or delete what is past its retention (idempotent)",
                listing=True)
    p.add_argument("--dry-run", action="store_true", help="count what is due; change nothing")
    p.add_argument("--batch", type=int, default=None, help="rows per transaction (MASKING_PURGE_BATCH)")
    p = command(subject, "erase", cmd_subject_erase,
                "anonymise every session of a number, except those under legal hold", listing=True)
    p.add_argument("number", help="the subject's number (E.164)")
    p.add_argument("--reason", help="why (the request's reference), for the audit row")
    p.add_argument("--request", dest="request_id", help="the open erasure request this answers: marked done")


async def cmd_sessions_hold(settings: Settings, args) -> int:
    from bridge.privacy.audit import clean_reason

    if clean_reason(args.reason) is None:
        raise UsageError("--reason must say why the session is held")
    by = operator()
    async with open_store(settings) as store:
        session = await store.set_legal_hold(parse_uuid(args.session_id, "session id"), args.reason, by)
    emit([session.to_json(utcnow())], SESSION_COLUMNS + ["legal_hold"], args.json)
    return 0


async def cmd_sessions_release_hold(settings: Settings, args) -> int:
    from dataclasses import replace

    by = replace(operator(), reason=args.reason)
    async with open_store(settings) as store:
        session = await store.release_legal_hold(parse_uuid(args.session_id, "session id"), by)
    emit([session.to_json(utcnow())], SESSION_COLUMNS + ["legal_hold"], args.json)
    return 0


async def cmd_purge(settings: Settings, args) -> int:
    batch = settings.purge_batch if args.batch is None else args.batch
    if batch < 1:
        raise UsageError("--batch must be at least 1")
    async with open_store(settings) as store:
        report = await store.purge(settings.retention, batch, dry_run=args.dry_run, by=operator(),
                                   webhook_url=settings.webhook_url or None)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    verb = "would purge" if args.dry_run else "purged"
    for kind, counts in report.to_json()["kinds"].items():
        print(f"{kind}: {verb} {counts['purged']}, kept under legal hold {counts['held']}")
    if report.held_sessions:
        print("kept under legal hold: sessions " + ", ".join(report.to_json()["held_sessions"]))
    return 0


async def cmd_subject_erase(settings: Settings, args) -> int:
    from dataclasses import replace

    from bridge.privacy.audit import clean_reason
    from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen

    number = parse_e164(args.number, settings.default_region)
    request_id = parse_uuid(args.request_id, "--request") if args.request_id else None
    async with open_store(settings) as store:
        try:
            report = await store.erase_subject(number, replace(operator(), reason=clean_reason(args.reason)),
                                               request_id=request_id, webhook_url=settings.webhook_url or None)
        except RequestMismatch as exc:
            raise UsageError(str(exc)) from None
        except RequestNotOpen as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
    body = report.to_json()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"erased {body['sessions_erased']} session(s) of {body['subject']}: "
          f"{body['recordings_shredded']} recording(s) shredded, {body['calls_cleared']} call(s) cleared"
          + (f"; closed first (were live): {', '.join(body['closed_first'])}" if body["closed_first"] else ""))
    for kept in body["kept"]:
        why = kept["reason"] + (f" ({kept['legal_hold_reason']})" if kept["legal_hold_reason"] else "")
        print(f"kept {kept['session_id']}: {why}")
    if request_id:
        print(f"request {request_id} done")
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

