"""`masking subject`'s rights of access and correction (bridge/privacy/rights.py):
the export's audio and encryption options, `request verify` (the identity
check, before an export answers a request) and `correct` (carried out, and
sent to the past year's recipients)."""
from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, open_store, operator, parse_uuid
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.files import open_private
from bridge.numbering import parse_e164
from bridge.privacy.rights import VERIFY_METHODS

REQUEST_COLUMNS = ["id", "kind", "subject", "status", "due_at", "identity_verified"]


def add_export_options(p) -> None:
    p.add_argument("--include-mixed-audio", action="store_true",
                   help="also include recordings holding both voices on one channel (they reveal the other"
                        " party's voice: withheld by default)")
    encrypt = p.add_mutually_exclusive_group()
    encrypt.add_argument("--passphrase-file", type=Path,
                         help="encrypt the archive with gpg to the passphrase in this file (AES-256)")
    encrypt.add_argument("--recipient", help="encrypt the archive with gpg to this public key (id or address)")


def add_rights_commands(subject, request) -> None:
    p = command(request, "verify", cmd_subject_request_verify,
                "record how the requester's identity was checked (before an export answers it)", listing=True)
    p.add_argument("request_id")
    p.add_argument("--method", required=True, choices=VERIFY_METHODS)
    p.add_argument("--by", required=True, help="who checked (a name or staff id, without numbers)")
    p = command(subject, "correct", cmd_subject_correct,
                "correct the number held for a person, and tell past recipients", listing=True)
    p.add_argument("number", help="the number held (E.164)")
    p.add_argument("--to", dest="corrected", required=True, help="the correct number (E.164)")
    p.add_argument("--request", dest="request_id", help="the correction request this answers: marked done")


def archive_sink(args):
    """How the export's archive is written: clear (0600), or encrypted by gpg."""
    if args.passphrase_file is None and args.recipient is None:
        return open_private
    from bridge.subjects.encrypt import encrypted_sink

    if args.passphrase_file is not None and not args.passphrase_file.is_file():
        raise UsageError("--passphrase-file: no such file")
    return partial(encrypted_sink, passphrase_file=args.passphrase_file, recipient=args.recipient)


async def cmd_subject_request_verify(settings: Settings, args) -> int:
    from bridge.privacy.audit import clean_reason
    from bridge.privacy.subject_access import RequestNotOpen

    request_id = parse_uuid(args.request_id, "request id")
    checker = clean_reason(args.by)
    if checker is None:
        raise UsageError("--by: say who checked the requester's identity")
    async with open_store(settings) as store:
        try:
            request = await store.subjects.verify_request(request_id, args.method, operator(), checker)
        except RequestNotOpen as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
    emit([request.to_json(utcnow())], REQUEST_COLUMNS, args.json)
    return 0


async def cmd_subject_correct(settings: Settings, args) -> int:
    from bridge.privacy.rights import IdentityNotVerified, NothingToCorrect
    from bridge.privacy.subject_access import RequestMismatch, RequestNotOpen
    from bridge.store.errors import NumberInUse

    number = parse_e164(args.number, settings.default_region)
    corrected = parse_e164(args.corrected, settings.default_region)
    request_id = parse_uuid(args.request_id, "--request") if args.request_id else None
    async with open_store(settings) as store:
        try:
            report = await store.corrections.correct_number(number, corrected, operator(), request_id)
        except (RequestMismatch, NothingToCorrect) as exc:
            raise UsageError(str(exc)) from None
        except (RequestNotOpen, IdentityNotVerified, NumberInUse) as exc:
            print(f"masking: {exc}", file=sys.stderr)
            return EXIT_FAILED
    body = report.to_json()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"corrected {body['subject']} to {body['corrected_to']} in {len(body['sessions_corrected'])} session(s);"
          f" {body['recipients_notified']} past recipient(s) told (subject.corrected)")
    for kept in body["kept"]:
        print(f"kept {kept['session_id']}: {kept['reason']}")
    if request_id:
        print(f"request {request_id} done")
    return 0
