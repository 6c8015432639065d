"""Every ending reaches the caller's ear, whatever played before it.

One table: each way a call can end without the parties talking (the
counterpart busy, not answering, failing; the caller not a participant, the
session expired, outside its window; the database down), crossed with each
kind of session (recorded, so a notice and in-band ringback first; not
recorded; with wait audio; on a shared number behind a PIN; click-to-call,
where the first party waits). For each, on the caller's side of the wire:
the ending's own prompt arrives (told from ringback, wait audio and the
other prompts by its pitch: every prompt here is a pure tone of its own), as
early media (183, never 200) for a caller not yet answered, and the final
SIP status (a BYE for click-to-call's answered first party) no later than
the prompt's length and a second after the counterpart's final response, or
after the rejection was decided.
"""
from __future__ import annotations

import asyncio
import itertools
import math
import os
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from bridge.recordings.wait_audio import sounds_dir
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from tests.integration.conftest import query, wait_for_call_row
from tests.integration.test_api_call import api_token  # noqa: F401 (fixture)
from tests.integration.test_connect import dialogs, first, place
from tests.integration.test_masked_call import assert_no_leftovers
from tests.integration.test_pin_calls import key_in
from tests.integration.test_wait_audio import tone_wav, upload
from tests.support.rtp import RtpSniffer
from tests.support.sipp import Sipp, SippResult, render

PROMPT_SECONDS = 1.0  # every prompt of the table: short, so the table runs quickly
BOUND = PROMPT_SECONDS + 1.0  # the bound: the prompt's length plus one second
DIAL_TIMEOUT = 2  # seconds a counterpart may ring
# A pure tone per prompt, away from ringback (425 Hz), the notice's beep and the wait audio (1 kHz).
TONES = {"BUSY": 1300, "NO_ANSWER": 1600, "UNREACHABLE": 1900, "NOT_A_PARTICIPANT": 2200,
         "SESSION_ENDED": 2500, "UNAVAILABLE": 2800, "PIN_FAILED": 3100,
         "PIN_REQUEST": 500, "PIN_INVALID": 800, "CONNECTING": 650}
SHORT_PROMPTS = {"PIN_REQUEST", "PIN_INVALID", "CONNECTING"}  # heard before the ending, not as it


@dataclass(frozen=True)
class Ending:
    prompt: str  # which MASKING_PROMPT_* the caller hears
    status: int  # the caller's final SIP status
    outcome: tuple[str, str | None]  # the row's disposition and reject_reason
    counterpart: str | None = None  # how the counterpart ends it: its SIPp scenario (None: never dialed)
    counterpart_status: int | None = None


ENDINGS = {
    "busy": Ending("BUSY", 486, ("busy", None), "refuses", 486),
    "no_answer": Ending("NO_ANSWER", 480, ("no_answer", None), "rings"),
    "counterpart_failed": Ending("UNREACHABLE", 503, ("failed", None), "refuses", 503),
    "not_a_participant": Ending("NOT_A_PARTICIPANT", 403, ("rejected", "not_a_participant")),
    "expired": Ending("SESSION_ENDED", 410, ("rejected", "session_expired")),
    "outside_window": Ending("SESSION_ENDED", 403, ("rejected", "outside_window")),
    "database_down": Ending("UNAVAILABLE", 503, ("rejected", "database_unavailable")),
}
# On a shared number a stranger's PIN names no session: with one attempt, the closing prompt.
PIN_STRANGER = Ending("PIN_FAILED", 403, ("rejected", "invalid_pin"))
KINDS = ("recorded", "not_recorded", "wait_audio", "shared_pin", "click_to_call")
DIALED = ("busy", "no_answer", "counterpart_failed")
REJECTED = ("not_a_participant", "expired", "outside_window")
TABLE = ([(ending, kind) for ending in DIALED for kind in KINDS]
         # A click-to-call is placed for a live session, both of whose parties it calls.
         + [(ending, kind) for ending in REJECTED for kind in KINDS if kind != "click_to_call"]
         # With the database down no session is known, so no kind either.
         + [("database_down", "any")])

_serial = itertools.count(1)


def prompt_wav(hz: int, seconds: float = PROMPT_SECONDS, rate: int = 8000) -> bytes:
    """A pure tone as Asterisk plays it without converting (8 kHz, mono, 16-bit)."""
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / rate)))
                      for n in range(int(rate * seconds)))
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(frames), b"WAVE", b"fmt ", 16, 1, 1, rate,
                       rate * 2, 2, 16, b"data", len(frames)) + frames


def install_prompts(directory: Path) -> dict[str, str]:
    """The table's prompts in Asterisk's sounds (shared with other runs: same
    names, same bytes, written atomically); returns the settings naming them."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = {}
    for name, hz in TONES.items():
        seconds = 0.5 if name in SHORT_PROMPTS else PROMPT_SECONDS
        sound = f"tone-{hz}hz-{int(seconds * 1000)}ms"
        if not (directory / f"{sound}.wav").exists():
            temporary = directory / f".{sound}.{os.getpid()}"
            temporary.write_bytes(prompt_wav(hz, seconds))
            temporary.replace(directory / f"{sound}.wav")
        settings[f"MASKING_PROMPT_{name}"] = f"masking/endings/{sound}"
    return settings


@dataclass
class Table:
    stack: object
    token: str
    wait_audio_id: str
    overrides: dict[str, str]

    def restart(self, **extra: str) -> None:
        self.stack.stop_service()
        self.stack.start_service(**self.overrides, **extra)


@pytest.fixture(scope="module")
def table(stack, api_token):  # noqa: F811 (fixture)
    """The shared stack with the table's prompts, a short dial timeout and one
    PIN attempt; the service as it was after the module."""
    status, audio = upload(stack, api_token, tone_wav(5.0))
    assert status == 201, audio
    overrides = {**install_prompts(sounds_dir(stack.settings) / "endings"),
                 "MASKING_DIAL_TIMEOUT": str(DIAL_TIMEOUT), "MASKING_PIN_ATTEMPTS": "1"}
    table = Table(stack, api_token, audio["id"], overrides)
    table.restart()
    yield table
    stack.stop_service()
    stack.start_service()


@dataclass(frozen=True)
class Session:
    virtual_number: str
    a: str
    b: str
    id: str
    pin: str | None = None


def new_session(stack, kind: str, wait_audio_id: str) -> Session:
    n = next(_serial)
    number, a, b = f"+656830{n:04d}", f"+659830{n:04d}", f"+658830{n:04d}"

    async def create():
        store = await Store.connect(stack.dsn, stack.keys)
        try:
            await store.numbers.add(number, pin_mode=kind == "shared_pin")
            session, _ = await store.sessions.create(SessionRequest(
                a, b, ttl_seconds=600, purpose="delivery_order", virtual_number=number,
                record=kind in ("recorded", "shared_pin", "click_to_call"), pin_mode=kind == "shared_pin",
                wait_audio_id=wait_audio_id if kind in ("wait_audio", "click_to_call") else None))
            return session
        finally:
            await store.close()

    session = asyncio.run(create())
    return Session(number, a, b, str(session.id), session.pin)


def make_it_end(stack, ending: str, session: Session) -> None:
    """Bring the session into the state that ends the call."""
    if ending == "expired":
        query(stack.dsn, "UPDATE masking_sessions SET created_at = now() - interval '2 hours',"
                         " expires_at = now() - interval '1 hour' WHERE id = $1::uuid", session.id)
    elif ending == "outside_window":  # the purpose allowed calls during an hour that is over
        query(stack.dsn, "UPDATE masking_sessions SET window_starts_at = now() - interval '2 hours',"
                         " window_ends_at = now() - interval '1 hour' WHERE id = $1::uuid", session.id)


@dataclass
class Heard:
    """The caller's side of the wire, and the moment the ending was decided."""

    caller: SippResult
    rtp: RtpSniffer
    decided: datetime
    released: datetime  # the final status (or, answered, the BYE) reached the caller


def counterpart_sipp(stack, tmp_path: Path, ending: Ending, tag: str) -> Sipp | None:
    if ending.counterpart is None:
        return None
    if ending.counterpart == "rings":
        scenario = render("uas_ring.xml", tmp_path, tag=tag)
    else:
        scenario = render("uas_status.xml", tmp_path, status=ending.counterpart_status, reason="Refused", tag=tag)
    counterpart = Sipp(tmp_path, scenario, [], f"{tag}counterpart", port=stack.counterpart_port).start()
    time.sleep(0.2)  # SIPp binds its port
    return counterpart


def when_ended(counterpart: SippResult, ending: Ending) -> datetime:
    """The counterpart's final response; for one that rings, when we gave up on it (CANCEL)."""
    if ending.counterpart == "rings":
        return counterpart.first("received", "CANCEL")
    return counterpart.first("sent", f"SIP/2.0 {ending.counterpart_status}")


def call_in(stack, tmp_path: Path, kind: str, ending_name: str, ending: Ending, session: Session | None) -> Heard:
    """A caller dials the session's number (keying its PIN on a shared one)."""
    tag = f"{ending_name}-{kind}-"
    counterpart = counterpart_sipp(stack, tmp_path, ending, tag)
    caller_number = session.a if session else "+6593999999"
    if ending_name == "not_a_participant":
        caller_number = "+6597779999"
    if kind == "shared_pin":
        scenario = render("uac_pin.xml", tmp_path, pcap=key_in(tmp_path, session.pin), final_status=ending.status,
                          final_next="rejected", tag=tag)
    else:
        scenario = render("uac_rejected.xml", tmp_path, final_status=ending.status, tag=tag)
    number = session.virtual_number if session else "+6563999999"
    caller = Sipp(tmp_path, scenario, ["-s", number, "-key", "caller", caller_number, stack.sip_target],
                  f"{tag}caller")
    with RtpSniffer(caller.media_port) as heard, RtpSniffer(caller.media_port, from_port=True) as sent:
        result = caller.start().wait(40)
    assert result.succeeded, f"the caller did not get {ending.status}: {result.output}"
    counterpart_result = counterpart.wait(10) if counterpart else None
    if counterpart_result is not None:
        assert counterpart_result.succeeded, counterpart_result.output
        decided = when_ended(counterpart_result, ending)
    elif kind == "shared_pin":
        decided = sent.last_arrival(101)  # the last digit of the PIN
    else:
        decided = result.first("sent", "INVITE")
    assert not any(m.startswith("SIP/2.0 200") for m in result.received()), "the caller was answered"
    assert any(m.startswith("SIP/2.0 183") for m in result.received()), "no early media"
    return Heard(result, heard, decided, result.first("received", f"SIP/2.0 {ending.status}"))


def click_to_call(table: Table, tmp_path: Path, ending_name: str, ending: Ending, session: Session) -> Heard:
    """The business connects the session: the first party answers, the second ends it."""
    tag = f"{ending_name}-click-"
    scenario = "uas_connect_second_rings.xml" if ending.counterpart == "rings" else \
        "uas_connect_second_refuses.xml"
    path = render(scenario, tmp_path, second=session.b.lstrip("+"), status=ending.counterpart_status or "",
                  reason="Refused", tag=tag)
    parties = Sipp(tmp_path, path, ["-m", "2", "-d", "1000"], f"{tag}parties",
                   port=table.stack.counterpart_port).start()
    time.sleep(0.2)  # SIPp binds its port
    with RtpSniffer(parties.media_port) as heard:
        status, _, placed = place(table.stack, table.token, session.id, **{
            "from": "a", "first_ring_timeout_seconds": 10, "second_ring_timeout_seconds": DIAL_TIMEOUT})
        assert status == 202, placed
        result = parties.wait(40)
    assert result.succeeded, result.output
    first_party, second_party = dialogs(result)
    second_ended = (first(second_party, "CANCEL").at if ending.counterpart == "rings"
                    else first(second_party, f"SIP/2.0 {ending.counterpart_status}", received=False).at)
    return Heard(result, heard, second_ended, first(first_party, "BYE").at)


@pytest.mark.parametrize(("ending_name", "kind"), TABLE, ids=[f"{e}-{k}" for e, k in TABLE])
def test_every_ending_is_heard_in_early_media_and_released_within_its_prompt_and_a_second(
        table, tmp_path, ending_name, kind):
    stack = table.stack
    ending = PIN_STRANGER if (kind, ending_name) == ("shared_pin", "not_a_participant") else ENDINGS[ending_name]
    session = None if kind == "any" else new_session(stack, kind, table.wait_audio_id)
    if session:
        make_it_end(stack, ending_name, session)

    if ending_name == "database_down":
        table.restart(MASKING_DATABASE_URL="postgresql://postgres@127.0.0.1:9/nowhere", MASKING_DB_TIMEOUT="1")
        try:
            heard = call_in(stack, tmp_path, kind, ending_name, ending, session)
        finally:
            table.restart()
    elif kind == "click_to_call":
        heard = click_to_call(table, tmp_path, ending_name, ending, session)
    else:
        heard = call_in(stack, tmp_path, kind, ending_name, ending, session)

    prompt_packets = heard.rtp.tone_packets(TONES[ending.prompt], between=(heard.decided, heard.released))
    assert prompt_packets >= 0.7 * PROMPT_SECONDS * 50, \
        f"the caller heard {prompt_packets} packets of the {ending.prompt} prompt before the release"
    took = (heard.released - heard.decided).total_seconds()
    assert took <= BOUND, f"released {took:.1f} s after the ending (the prompt is {PROMPT_SECONDS} s)"
    if session:
        row = wait_for_call_row(stack, session.virtual_number)
        assert (row["disposition"], row["reject_reason"]) == ending.outcome
    assert_no_leftovers(stack)
