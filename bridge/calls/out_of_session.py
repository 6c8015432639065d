"""Ask the business what to do with a call that matches no live session.

Configured with MASKING_OUT_OF_SESSION_URL. The request is signed like the
event webhooks and carries the dialed virtual number, the caller's number (the
business needs it to recognise its customer) and why no session matched. The
business answers, within MASKING_OUT_OF_SESSION_TIMEOUT seconds:

    {"action": "connect", "counterpart": "+6591234567", "ttl_seconds": 3600, "record": true}

to create a session on the spot (caller = participant A, on the dialed number,
reserved numbers included) and connect the call; anything else, a slow answer,
or an error, and the caller hears the out-of-session prompt.

The request goes out through bridge/outbound/ like the webhooks (https, a
public destination or the allow-list, no redirects), and the answer is read
up to 64 KiB. It discloses the caller's number: its audit row (the caller's
keyed hash, the host and its country) is written first, and a session the
answer creates writes its `session.created` rows (bridge/privacy/ledger.py).
"""
from __future__ import annotations

import json
import time

import asyncpg

from bridge.config import Settings
from bridge.logs import get_logger
from bridge.numbering import InvalidNumber, parse_e164
from bridge.outbound.client import DeliveryFailed, OutboundHttp, status_category
from bridge.privacy import ledger
from bridge.privacy.crypto import KeyFileError
from bridge.privacy import purposes
from bridge.sessions.models import SessionRequest, purpose_allowed
from bridge.sessions.resolve import Connect, Reject, RejectReason
from bridge.store import Store
from bridge.store.disclosures import service_actor
from bridge.store.errors import StoreError
from bridge.webhooks import sign

log = get_logger("bridge.calls")
MAX_ANSWER_BYTES = 64 * 1024
ASKABLE = frozenset({RejectReason.NOT_A_PARTICIPANT, RejectReason.SESSION_EXPIRED, RejectReason.SESSION_CLOSED})


class NoDecision(Exception):
    """The business did not ask to connect (or could not be understood in time)."""


def connect_request(answer: object, caller: str, virtual_number: str, settings: Settings) -> SessionRequest:
    """The session a business's answer asks for; NoDecision when it asks for none."""
    if not isinstance(answer, dict) or answer.get("action") != "connect":
        raise NoDecision("the business did not ask to connect")
    try:
        counterpart = parse_e164(str(answer.get("counterpart", "")), settings.default_region)
    except InvalidNumber:
        raise NoDecision("counterpart is not a valid number") from None
    ttl = answer.get("ttl_seconds", settings.default_ttl)
    record = answer.get("record", settings.record_by_default)
    if counterpart == caller or not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0 \
            or not isinstance(record, bool):
        raise NoDecision("the answer is malformed")
    purpose = answer.get("purpose", settings.out_of_session_purpose)
    if not isinstance(purpose, str) or not purpose_allowed(purpose, settings.allowed_purposes):
        raise NoDecision("the answer names no allowed purpose")
    registry = purposes.registry_for(settings)
    if purposes.refusal_for_session(registry, purpose, None, None, None, None):
        raise NoDecision("the answer names no registered purpose, or a marketing one (no Do Not Call evidence)")
    record = purposes.records(registry, purpose, record)
    return SessionRequest(participant_a=caller, participant_b=counterpart, ttl_seconds=ttl, record=record,
                          purpose=purpose, virtual_number=virtual_number,
                          external_ref=_text(answer.get("external_ref")))


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


async def ask_business(store: Store, settings: Settings, virtual_number: str, caller: str | None,
                       rejection: Reject) -> Connect | Reject:
    body = json.dumps({"type": "call.out_of_session", "virtual_number": virtual_number, "caller": caller,
                       "reason": rejection.reason.value}).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "X-Masking-Timestamp": str(timestamp),
               "X-Masking-Signature": sign(settings.webhook_secret, timestamp, body)}
    # The caller's number leaves for the business: the ledger's row first, or nothing is sent.
    try:  # an unmapped host: the country the out-of-session purpose declares, if exactly one
        declared = purposes.declared_country(purposes.registry_for(settings), settings.out_of_session_purpose)
    except purposes.RegistryError:
        declared = None
    destination = ledger.destination_details(settings.out_of_session_url, settings.destination_country_map, declared)
    try:
        await store.disclosures.out_of_session(caller, destination, {"reason": rejection.reason.value})
    except (StoreError, KeyFileError, asyncpg.PostgresError) as exc:
        log.warning("out_of_session.unaudited", error=type(exc).__name__)
        return rejection
    try:
        async with OutboundHttp(settings.outbound_policy, settings.out_of_session_timeout) as http:
            answer = await http.post(settings.out_of_session_url, body, headers, read_limit=MAX_ANSWER_BYTES)
        if answer.status != 200:
            raise DeliveryFailed(status_category(answer.status))
        request = connect_request(json.loads(answer.body), caller, virtual_number, settings)
        session, _ = await store.sessions.create(request)
        await store.disclosures.session_created(service_actor(), session, {"via": "out_of_session", **destination})
    except DeliveryFailed as exc:
        log.warning("out_of_session.failed", error=exc.category, detail=exc.detail)
        return rejection
    except (NoDecision, ValueError, StoreError):
        return rejection
    return Connect(session, session.participant_b, "a_to_b")
