"""`masking subject`: data subjects' requests: export what is held about a number, erase it, track requests' due dates.

Erasure spares sessions under legal hold, which stay whole until released (docs/privacy.md).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store, operator, parse_uuid
from bridge.cli.rights import add_export_options, add_rights_commands, archive_sink
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.files import open_private
from bridge.numbering import parse_e164
from bridge.recordings.backfill import plaintext_retirer

REQUEST_COLUMNS = ["id", "kind", "subject", "status", "received_at", "due_at", "overdue", "completed_at"]


def add_commands(sub) -> None:
    subject = group(sub, "subject", "data subjects' requests: access (export), correction, erasure, withdrawal")
    p = command(subject, "export", cmd_subject_export, "a zip of everything held about one number")
    p.add_argument("number", help="the person's number (E.164)")
    p.add_argument("--audio", action="store_true", help="include the recordings' audio, decrypted")
    p.add_argument("--out", type=Path, help="the zip to write (default: subject-export-<time>.zip here)")
    p.add_argument("--request", dest="request_id", help="the access request this answers: marked done")
    add_export_options(p)
    request = subject.add_parser("request", help="track a request received from a person").add_subparsers(
        dest="request_command", required=True)
    p = command(request, "open", cmd_subject_request_open, "record a request and its due date", listing=True)
    p.add_argument("number", help="the person's number (E.164); only its keyed hash is kept")
    p.add_argument("--kind", required=True, choices=["access", "correction", "erasure", "withdrawal"],
                   help="withdrawal is carried out at once (as `subject withdraw`)")
    p.add_argument("--received", help="when it was received: YYYY-MM-DD or ISO 8601 (default: now)")
    p.add_argument("--notes", help="free text, without numbers (any is masked)")
    p = command(request, "close", cmd_subject_request_close, "mark a request answered (or refused)", listing=True)
    p.add_argument("request_id")
    p.add_argument("--refused", action="store_true", help="refused, not answered (say why in --notes)")
    p.add_argument("--notes")
    add_rights_commands(subject, request)
    p = command(subject, "requests", cmd_subject_requests, "requests by due date", listing=True)
    p.add_argument("--overdue", action="store_true", help="only open requests past their due date")
    p.add_argument("--status", choices=["open", "done", "refused"])
    p.add_argument("--kind", choices=["access", "correction", "erasure", "withdrawal"])
    p.add_argument("--limit", type=int, default=100)
    p = command(subject, "withdraw", cmd_subject_withdraw,
                "a person withdraws consent: their calls are no longer recorded, past recordings not used",
                listing=True)
    p.add_argument("number", help="the person's number (E.164); only its keyed hash is kept")
    p.add_argument("--received", help="when it was received: YYYY-MM-DD or ISO 8601 (default: now)")
    p.add_argument("--notes", help="free text, without numbers (any is masked)")
    p = command(subject, "erase", cmd_subject_erase,
                "anonymise every session of a number, except those under legal hold", listing=True)
    p.add_argument("number", help="the subject's number (E.164)")
    p.add_argument("--reason", help="why (the request's reference), for the audit row")
    p.add_argument("--request", dest="request_id", help="the open erasure request this answers: marked done")


async def cmd_subject_export(settings: Settings, args) -> int:
    from bridge.privacy.rights import IdentityNotVerified
    from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen
    from bridge.subjects.encrypt import EncryptionFailed
    from bridge.subjects.export import export_subject

    number = parse_e164(args.number, settings.default_region)
    request_id = parse_uuid(args.request_id, "--request") if args.request_id else None
    now = utcnow()
    sink = archive_sink(args)
    path = args.out or Path(f"subject-export-{now:%Y%m%dT%H%M%SZ}.zip" + (".gpg" if sink is not open_private else ""))
    if path.exists():
        raise UsageError(f"{path} exists; name another file with --out")
    partial = path.with_name(f".{path.name}.partial")  # renamed once complete: never half a zip under its name
    async with open_store(settings) as store:
        try:
            with sink(partial) as out:
                summary = await export_subject(store, number, out, operator(), now, args.audio, request_id,
                                               args.include_mixed_audio)
            os.replace(partial, path)
        except RequestMismatch as exc:
            raise UsageError(str(exc)) from None
        except (RequestNotOpen, IdentityNotVerified, EncryptionFailed) as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            partial.unlink(missing_ok=True)
    counts = ", ".join(f"{v} {k}" for k, v in summary.counts.items())
    answered = (f"; request {request_id} done" if summary.request_done
                else f"; request {request_id} was closed meanwhile, not by this export" if request_id else "")
    print(f"wrote {path}: {counts}{answered}" + ("; encrypted" if sink is not open_private else ""))
    if args.audio:
        print("audio: only the person's own channel of two-channel recordings; "
              + ("mixed recordings INCLUDED: they hold the other party's voice too" if args.include_mixed_audio
                 else "mixed recordings withheld (withheld.json says which and why)"))
    return 0


async def cmd_subject_request_open(settings: Settings, args) -> int:
    from bridge.privacy.subject_access import due_at, received_at

    number = parse_e164(args.number, settings.default_region)
    try:
        received = received_at(args.received, utcnow())
    except ValueError as exc:
        raise UsageError(f"--received: {exc}") from None
    if args.kind == "withdrawal":
        return await cmd_subject_withdraw(settings, args)
    async with open_store(settings) as store:
        request = await store.subjects.open_request(args.kind, number, received,
                                                   due_at(received, settings.subject_request_days), operator(),
                                                   args.notes)
    emit([request.to_json(utcnow())], REQUEST_COLUMNS, args.json)
    return 0


async def cmd_subject_withdraw(settings: Settings, args) -> int:
    from bridge.privacy.subject_access import WITHDRAWAL_CONSEQUENCES, due_at, received_at

    number = parse_e164(args.number, settings.default_region)
    try:
        received = received_at(args.received, utcnow())
    except ValueError as exc:
        raise UsageError(f"--received: {exc}") from None
    async with open_store(settings) as store:
        request = await store.consent.withdraw(number, operator(), received,
                                               due_at(received, settings.subject_request_days), args.notes)
    body = {**request.to_json(utcnow()), "do_not_record": True, "consequences": list(WITHDRAWAL_CONSEQUENCES)}
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"consent withdrawn for {body['subject']}: request {request.id} done; tell the person:")
    for consequence in WITHDRAWAL_CONSEQUENCES:
        print(f"- {consequence}")
    return 0


async def cmd_subject_request_close(settings: Settings, args) -> int:
    from bridge.privacy.subject_access import RequestNotOpen

    request_id = parse_uuid(args.request_id, "request id")
    async with open_store(settings) as store:
        try:
            request = await store.subjects.complete_request(request_id, operator(),
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
        requests = await store.subjects.list_requests(args.status, args.overdue, args.kind, args.limit)
    now = utcnow()
    emit([r.to_json(now) for r in requests], REQUEST_COLUMNS, args.json, "requests")
    return 0


async def cmd_subject_erase(settings: Settings, args) -> int:
    from dataclasses import replace

    from bridge.privacy.audit import clean_reason
    from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen

    number = parse_e164(args.number, settings.default_region)
    request_id = parse_uuid(args.request_id, "--request") if args.request_id else None
    async with open_store(settings) as store:
        try:
            report = await store.erasure.erase(number, replace(operator(), reason=clean_reason(args.reason)),
                                               request_id=request_id, webhook_url=settings.webhook_url or None,
                                               retire=plaintext_retirer(store))
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
