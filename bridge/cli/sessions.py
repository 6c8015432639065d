"""`masking sessions`: create, read, extend and close masking sessions, and hold them for a legal dispute.

Options are checked as the HTTP API checks them, so both refuse the same input; legal hold is in docs/privacy.md.
What shows participants' numbers (create, show, and the --json of the others) writes its ledger rows first.
"""
from __future__ import annotations

import sys

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store, operator, parse_uuid
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.numbering import parse_e164
from bridge.sessions import caller_id
from bridge.sessions.models import SessionRequest, purpose_allowed
from bridge.store.errors import StoreError

SESSION_COLUMNS = ["id", "virtual_number", "status", "record", "external_ref", "expires_at"]


def add_commands(sub) -> None:
    sessions = group(sub, "sessions", "masking sessions")
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
    p = command(sessions, "hold", cmd_sessions_hold,
                "put a session under legal hold: purge and erasure keep it whole until released", listing=True)
    p.add_argument("session_id")
    p.add_argument("--reason", required=True, help="why (a case or ticket); numbers in it are masked")
    p = command(sessions, "release-hold", cmd_sessions_release_hold, "lift a legal hold", listing=True)
    p.add_argument("session_id")
    p.add_argument("--reason", help="why, for the audit row")


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
            session, _ = await store.sessions.create(request)
        except StoreError as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
        await store.disclosures.session_created(operator(), session, {"via": "cli"})
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


async def cmd_sessions_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        sessions = await store.sessions.list(args.external_ref, args.status, args.limit)
        if args.json:  # the table shows no participant's number
            await store.disclosures.sessions_read(operator(), sessions, {"via": "cli list"})
    emit([s.to_json(utcnow()) for s in sessions], SESSION_COLUMNS, args.json, "sessions")
    return 0


async def cmd_sessions_show(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        session = await store.sessions.get(parse_uuid(args.session_id, "session id"))
        await store.disclosures.sessions_read(operator(), [session], {"via": "cli show"})
    emit([session.to_json(utcnow())], SESSION_COLUMNS + ["participant_a", "participant_b", "ttl_mode"], args.json)
    return 0


async def cmd_sessions_extend(settings: Settings, args) -> int:
    if args.ttl <= 0:
        raise UsageError("--ttl must be a positive number of seconds")
    async with open_store(settings) as store:
        session = await store.sessions.extend(parse_uuid(args.session_id, "session id"), args.ttl)
        if args.json:
            await store.disclosures.sessions_read(operator(), [session], {"via": "cli extend"})
    emit([session.to_json(utcnow())], SESSION_COLUMNS, args.json)
    return 0


async def cmd_sessions_close(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        await store.sessions.close(parse_uuid(args.session_id, "session id"))
    print(f"closed {args.session_id}")
    return 0


async def cmd_sessions_hold(settings: Settings, args) -> int:
    from bridge.privacy.audit import clean_reason

    if clean_reason(args.reason) is None:
        raise UsageError("--reason must say why the session is held")
    by = operator()
    async with open_store(settings) as store:
        session = await store.holds.set(parse_uuid(args.session_id, "session id"), args.reason, by)
        if args.json:
            await store.disclosures.sessions_read(by, [session], {"via": "cli hold"})
    emit([session.to_json(utcnow())], SESSION_COLUMNS + ["legal_hold"], args.json)
    return 0


async def cmd_sessions_release_hold(settings: Settings, args) -> int:
    from dataclasses import replace

    by = replace(operator(), reason=args.reason)
    async with open_store(settings) as store:
        session = await store.holds.release(parse_uuid(args.session_id, "session id"), by)
        if args.json:
            await store.disclosures.sessions_read(by, [session], {"via": "cli release-hold"})
    emit([session.to_json(utcnow())], SESSION_COLUMNS + ["legal_hold"], args.json)
    return 0
