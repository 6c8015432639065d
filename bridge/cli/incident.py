"""`masking incident`: the breach workbench (PDPA s26A-E, bridge/privacy/breach.py).

open (the clocks start) > scope (who was affected, from the audit trail) >
assess (notifiable?) > draft (the PDPC notification) > contacts (an encrypted
list for notifying the individuals) > notified > close (the decisions).
Nothing printed or written in clear holds a number.
"""
from __future__ import annotations

import functools
import json
import sys
from datetime import date, datetime, time, timezone
from pathlib import Path

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store, operator, parse_uuid
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.files import open_private
from bridge.privacy.breach import IncidentStateError

COLUMNS = ["id", "status", "title", "aware_at", "assess_due_at", "affected", "notifiable", "pdpc_due_at", "overdue"]


def add_commands(sub) -> None:
    incident = group(sub, "incident", "data breaches: assess, notify the PDPC and the individuals, close")
    p = command(incident, "open", cmd_open, "record a suspected breach: the assessment clock starts", listing=True)
    p.add_argument("title", help="what happened, in a line (numbers are masked)")
    p.add_argument("--aware", help="when the organisation became aware: YYYY-MM-DD or ISO 8601 (default: now)")
    p.add_argument("--notes")
    p = command(incident, "scope", cmd_scope, "count who an actor's reads in a time range affected", listing=True)
    p.add_argument("incident_id")
    p.add_argument("--actor", required=True, help="as in the audit trail (apikey:<prefix> covers that key)")
    p.add_argument("--from", dest="since", required=True, help="YYYY-MM-DD or ISO 8601 with an offset")
    p.add_argument("--until", help="YYYY-MM-DD or ISO 8601 with an offset (default: now)")
    p = command(incident, "assess", cmd_assess, "record the assessment: notifiable or not", listing=True)
    p.add_argument("incident_id")
    p.add_argument("--significant-harm", required=True, choices=["yes", "no"],
                   help="the organisation's judgement whether significant harm is likely (s26B(1)(a))")
    p.add_argument("--affected", type=int, help="the count, when the breach reaches beyond the bridge's ledger")
    p.add_argument("--at", help="when it was assessed (default: now)")
    p.add_argument("--notes")
    p = command(incident, "draft", cmd_draft, "write the PDPC notification's draft (markdown, 0600)")
    p.add_argument("incident_id")
    p.add_argument("--out", type=Path, required=True)
    p = command(incident, "contacts", cmd_contacts, "the affected individuals' numbers, encrypted with gpg")
    p.add_argument("incident_id")
    p.add_argument("--out", type=Path, required=True, help="the encrypted file to write (e.g. contacts.csv.gpg)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--passphrase-file", type=Path, help="symmetric encryption with the passphrase in this file")
    how.add_argument("--recipient", help="a public key in the operator's gpg keyring")
    p = command(incident, "notified", cmd_notified, "record who was notified, or why individuals were not",
                listing=True)
    p.add_argument("incident_id")
    p.add_argument("--pdpc", action="store_true", help="the PDPC was notified")
    p.add_argument("--reference", help="the PDPC's reference for the notification")
    p.add_argument("--individuals", action="store_true", help="the affected individuals were notified")
    p.add_argument("--exemption", help="why the individuals need not be notified (s26D(5)-(7))")
    p.add_argument("--at", help="when (default: now)")
    p = command(incident, "close", cmd_close, "close with the decisions recorded", listing=True)
    p.add_argument("incident_id")
    p.add_argument("--decision", required=True, help="what was decided and done (numbers are masked)")
    p = command(incident, "show", cmd_show, "one incident, its clocks and the ledger rows in its scope")
    p.add_argument("incident_id")
    p = command(incident, "list", cmd_list, "incidents by assessment deadline", listing=True)
    p.add_argument("--overdue", action="store_true", help="only those with a clock past its deadline")
    p.add_argument("--status", choices=["open", "assessed", "closed"])
    p.add_argument("--limit", type=int, default=100)


def moment(raw: str | None, what: str, now: datetime, future: bool = False) -> datetime:
    """YYYY-MM-DD (that day's start, UTC) or ISO 8601 with an offset; now when not given."""
    if raw is None:
        return now
    try:
        value = datetime.combine(date.fromisoformat(raw), time(), timezone.utc) if len(raw) == 10 \
            else datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"{what} must be YYYY-MM-DD or an ISO 8601 time with a UTC offset") from None
    if value.tzinfo is None:
        raise UsageError(f"{what} must carry a UTC offset")
    if value > now and not future:
        raise UsageError(f"{what} cannot be in the future")
    return value


def refusing(handler):
    """A command whose refusal (IncidentStateError: closed, not assessed...) exits 1 with its reason."""

    @functools.wraps(handler)
    async def run(settings: Settings, args) -> int:
        try:
            return await handler(settings, args)
        except IncidentStateError as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run


def show(incidents, as_json: bool, key: str | None = None) -> None:
    now = utcnow()
    items = [i.to_json(now) for i in incidents]
    if not as_json:
        for item in items:
            item["overdue"] = ",".join(item["overdue"]) or None
    emit(items, COLUMNS, as_json, key)


async def cmd_open(settings: Settings, args) -> int:
    aware = moment(args.aware, "--aware", utcnow())
    async with open_store(settings) as store:
        incident = await store.incidents.open(args.title, aware, operator(), args.notes)
    show([incident], args.json)
    return 0


@refusing
async def cmd_scope(settings: Settings, args) -> int:
    incident_id = parse_uuid(args.incident_id, "incident id")
    if not args.actor.strip():
        raise UsageError("--actor must name an actor of the audit trail (masking audit list shows them)")
    now = utcnow()
    since, until = moment(args.since, "--from", now), moment(args.until, "--until", now, future=True)
    if until <= since:
        raise UsageError("--until must be after --from")
    async with open_store(settings) as store:
        incident, actions = await store.incidents.scope(incident_id, args.actor, since, until, operator())
    if args.json:
        print(json.dumps({**incident.to_json(utcnow()), "rows": actions}, indent=2))
        return 0
    scale = "500 or more: significant scale, notifiable" if incident.affected >= 500 else "under 500"
    print(f"incident {incident.id}: {incident.affected} affected individual(s) ({scale}) in"
          f" {sum(actions.values())} row(s) of {args.actor}: "
          + (", ".join(f"{a} {n}" for a, n in sorted(actions.items())) or "none"))
    return 0


@refusing
async def cmd_assess(settings: Settings, args) -> int:
    incident_id = parse_uuid(args.incident_id, "incident id")
    at = moment(args.at, "--at", utcnow())
    if args.affected is not None and args.affected < 0:
        raise UsageError("--affected cannot be negative")
    async with open_store(settings) as store:
        incident = await store.incidents.assess(incident_id, args.significant_harm == "yes", at, operator(),
                                                args.affected, args.notes)
    show([incident], args.json)
    return 0


async def cmd_draft(settings: Settings, args) -> int:
    from bridge.privacy.breach import draft_notification

    incident_id = parse_uuid(args.incident_id, "incident id")
    if args.out.exists():
        raise UsageError(f"{args.out} exists; name another file with --out")
    async with open_store(settings) as store:
        incident = await store.incidents.get(incident_id)
        actions = await store.incidents.actions_in_scope(incident)
        text = draft_notification(incident, actions, utcnow())
        await store.audit.append_by(operator(), "incident.drafted", "incident", str(incident_id),
                                    details={"affected": incident.affected})
    with open_private(args.out, "w") as out:
        out.write(text)
    print(f"wrote {args.out}: the PDPC notification's draft; complete the [to complete] lines")
    return 0


@refusing
async def cmd_contacts(settings: Settings, args) -> int:
    from bridge.cli.gpg import GpgError, encrypt_to_file

    incident_id = parse_uuid(args.incident_id, "incident id")
    if args.out.exists():
        raise UsageError(f"{args.out} exists; name another file with --out")
    if args.passphrase_file is not None and not args.passphrase_file.is_file():
        raise UsageError("--passphrase-file must name a readable file")
    how = {"recipient": args.recipient} if args.recipient else {"encryption": "passphrase"}
    async with open_store(settings) as store:
        numbers, unreachable = await store.incidents.contacts(incident_id, operator(), how)
    plaintext = ("number\n" + "".join(f"{n}\n" for n in numbers)).encode()
    try:
        await encrypt_to_file(plaintext, args.out, args.passphrase_file, args.recipient)
    except GpgError as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {args.out}: {len(numbers)} number(s), encrypted"
          + (f"; {unreachable} affected individual(s) have no number left (erased or purged)" if unreachable else ""))
    return 0


@refusing
async def cmd_notified(settings: Settings, args) -> int:
    incident_id = parse_uuid(args.incident_id, "incident id")
    if not (args.pdpc or args.individuals or args.exemption):
        raise UsageError("say who was notified: --pdpc, --individuals, or --exemption")
    if args.individuals and args.exemption:
        raise UsageError("--individuals and --exemption exclude each other")
    at = moment(args.at, "--at", utcnow())
    async with open_store(settings) as store:
        incident = await store.incidents.notified(
            incident_id, operator(), pdpc_at=at if args.pdpc else None, reference=args.reference,
            individuals_at=at if args.individuals else None, exemption=args.exemption)
    show([incident], args.json)
    return 0


@refusing
async def cmd_close(settings: Settings, args) -> int:
    incident_id = parse_uuid(args.incident_id, "incident id")
    async with open_store(settings) as store:
        incident = await store.incidents.close(incident_id, args.decision, operator())
    show([incident], args.json)
    return 0


async def cmd_show(settings: Settings, args) -> int:
    incident_id = parse_uuid(args.incident_id, "incident id")
    async with open_store(settings) as store:
        incident = await store.incidents.get(incident_id)
        actions = await store.incidents.actions_in_scope(incident)
    print(json.dumps({**incident.to_json(utcnow()), "rows": actions}, indent=2))
    return 0


async def cmd_list(settings: Settings, args) -> int:
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be between 1 and 1000")
    async with open_store(settings) as store:
        incidents = await store.incidents.list(args.status, args.overdue, args.limit)
    show(incidents, args.json, "incidents")
    return 0

