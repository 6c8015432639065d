"""A business back end's view, end to end: API session, real call, signed webhooks, recording."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.webhooks import verify
from tests.integration.conftest import query
from tests.integration.test_cli import masking
from tests.integration.test_masked_call import sealed_audio
from tests.support.ports import free_port



class Receiver:
    """A business's webhook endpoint: records each request's body and headers."""

    def __init__(self, answer: dict | None = None, delay: float = 0):
        self.requests: list[tuple[dict, bytes]] = []
        self.replied_at: list[datetime] = []
        received, replied_at = self.requests, self.replied_at

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                time.sleep(delay)
                replied_at.append(datetime.now())  # the business has decided
                reply = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(200 if answer is not None else 204)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]

    def wait_for(self, event_type: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event["type"] == event_type:
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no {event_type} webhook; got {[e['type'] for e in self.events()]}")


@pytest.fixture(scope="module")
def api_token(stack) -> str:
    result = masking(stack, "apikeys", "create", "--name", "delivery-app", "--scope", "sessions",
                     "--scope", "numbers", "--scope", "recordings")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["token"]


def call_api(stack, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.settings.http_port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_business_creates_a_session_gets_signed_call_events_and_reads_the_recording(stack, place_call,
                                                                                          api_token):
    receiver = Receiver()
    status, _ = call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000001"})
    assert status == 201
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": "+6594000001", "participant_b": "+6584000001", "purpose": "delivery_order", "ttl_seconds": 600,
        "external_ref": "order-777", "webhook_url": receiver.url})
    assert status == 201, body
    session = json.loads(body)

    call = place_call("+6594000001", session["virtual_number"], uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output

    completed = receiver.wait_for("call.completed")
    types = [e["type"] for e in receiver.events()]
    assert types.index("call.ringing") < types.index("call.answered") < types.index("call.completed")
    for headers, body in receiver.requests:
        assert verify(stack.settings.webhook_secret, headers["X-Masking-Timestamp"], body, headers["X-Masking-Signature"])
        for number in ("6594000001", "6584000001"):
            assert number.encode() not in body, "a participant's number reached a webhook body"
    data = completed["data"]
    assert data["session_id"] == session["id"] and data["external_ref"] == "order-777"
    # One id whoever writes it (docs/faults.md), and the row says it was told.
    assert completed["id"] == str(uuid.uuid5(uuid.UUID(data["call_id"]), "call.completed"))
    assert query(stack.dsn, "SELECT reported FROM calls WHERE id = $1", uuid.UUID(data["call_id"])) == [
        {"reported": True}]
    assert data["disposition"] == "answered" and data["direction"] == "a_to_b" and data["recording_id"]

    status, body = call_api(stack, api_token, "GET", f"/v1/recordings/{data['recording_id']}")
    assert status == 200
    meta = json.loads(body)
    status, audio = call_api(stack, api_token, "GET", f"/v1/recordings/{data['recording_id']}/audio")
    assert status == 200 and audio[:4] == b"RIFF" and len(audio) == meta["bytes"]
    assert hashlib.sha256(audio).hexdigest() == meta["sha256"] and meta["sealed"] is True
    row = query(stack.dsn, "SELECT * FROM recordings WHERE id = $1", uuid.UUID(data["recording_id"]))[0]
    assert sealed_audio(stack, row) == audio  # and the file on disk holds none of it in the clear
    status, body = call_api(stack, api_token, "GET", f"/v1/calls?session_id={session['id']}")
    assert [c["disposition"] for c in json.loads(body)["calls"]] == ["answered"]

    listed = masking(stack, "audit", "list", "--session", session["id"], "--json")
    reads = [e for e in json.loads(listed.stdout)["entries"] if e["action"].startswith("recording.")]
    assert [(e["action"], e["target_id"]) for e in reads] == [("recording.audio", data["recording_id"]),
                                                                ("recording.read", data["recording_id"])]
    assert all(e["actor"].endswith(":delivery-app") and e["source"] == "127.0.0.1" for e in reads)
    assert masking(stack, "audit", "verify").returncode == 0


def test_a_session_expires_on_time_tells_the_business_and_its_callers_hear_the_prompt(stack, place_call,
                                                                                       api_token):
    receiver = Receiver()
    call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000002"})
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": "+6594000002", "participant_b": "+6584000002", "purpose": "delivery_order", "ttl_seconds": 1,
        "webhook_url": receiver.url})
    session = json.loads(body)

    expired = receiver.wait_for("session.expired", timeout=10)
    call = place_call("+6594000002", session["virtual_number"], uac="uac_rejected.xml",
                      uac_values={"final_status": 410, "tag": "expired-api"})

    assert expired["data"]["session_id"] == session["id"]
    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "caller heard no prompt"
    status, body = call_api(stack, api_token, "GET", f"/v1/calls?session_id={session['id']}")
    rows = json.loads(body)["calls"]
    assert [(c["disposition"], c["reject_reason"]) for c in rows] == [("rejected", "session_expired")]


def received_at(result, start_line: str) -> datetime:
    """When SIPp logged receiving the first message that starts with `start_line`."""
    for block in re.split(r"^-{10,} ", result.messages, flags=re.M):
        stamp, _, rest = block.partition("\n")
        if "message received" in rest.split("\n", 1)[0] and rest.split("\n", 2)[2].startswith(start_line):
            return datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f")
    raise AssertionError(f"no {start_line!r} received")


@pytest.fixture
def out_of_session_business(stack):
    """Restart the service asking `receiver` about calls that match no session."""
    started = []

    def start(receiver: Receiver, timeout: float = 2.0) -> None:
        stack.stop_service()
        stack.start_service(MASKING_OUT_OF_SESSION_URL=receiver.url, MASKING_OUT_OF_SESSION_TIMEOUT=str(timeout))
        started.append(True)

    yield start
    if started:
        stack.stop_service()
        stack.start_service()


def test_a_business_can_connect_an_out_of_session_caller_to_a_sellers_reserved_number(
        stack, place_call, api_token, out_of_session_business):
    seller, customer = "+6584000010", "+6594000010"
    call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000010", "reserved": True})
    business = Receiver(answer={"action": "connect", "counterpart": seller, "ttl_seconds": 900,
                                "external_ref": "seller-shop-1"})
    out_of_session_business(business)

    call = place_call(customer, "+6564000010", uas="uas_answer.xml", talk_ms=1500)

    assert call.counterpart.succeeded, call.counterpart.output
    invite = next(m for m in call.counterpart.received() if m.startswith("INVITE"))
    assert f"To: <sip:{seller}@" in invite and customer not in invite
    headers, body = business.requests[0]
    assert verify(stack.settings.webhook_secret, headers["X-Masking-Timestamp"], body, headers["X-Masking-Signature"])
    assert json.loads(body)["reason"] == "not_a_participant"
    status, body = call_api(stack, api_token, "GET", "/v1/sessions?external_ref=seller-shop-1")
    sessions = json.loads(body)["sessions"]
    assert len(sessions) == 1 and sessions[0]["virtual_number"] == "+6564000010"


def test_a_slow_out_of_session_business_falls_back_to_the_prompt_in_bounded_time(
        stack, place_call, api_token, out_of_session_business):
    call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000011"})
    business = Receiver(answer={"action": "connect", "counterpart": "+6584000011"}, delay=5)
    out_of_session_business(business, timeout=1.0)

    call = place_call("+6594000011", "+6564000011", uac="uac_rejected.xml",
                      uac_values={"final_status": 403, "tag": "slow-business"})

    assert call.caller.succeeded, call.caller.output
    assert call.caller_rtp.level > 100, "caller heard no prompt"
    # The prompt did not wait for the business: it started before the late answer.
    prompt_started = received_at(call.caller, "SIP/2.0 183")
    deadline = time.monotonic() + 10
    while not business.replied_at and time.monotonic() < deadline:
        time.sleep(0.1)
    assert prompt_started < business.replied_at[0]
    status, body = call_api(stack, api_token, "GET", "/v1/sessions?status=active")
    assert all(s["virtual_number"] != "+6564000011" for s in json.loads(body)["sessions"])


def test_a_call_on_a_last_interaction_session_restarts_its_ttl(stack, place_call, api_token):
    call_api(stack, api_token, "POST", "/v1/numbers", {"number": "+6564000020"})
    status, body = call_api(stack, api_token, "POST", "/v1/sessions", {
        "participant_a": "+6594000020", "participant_b": "+6584000020", "purpose": "delivery_order", "ttl_seconds": 600,
        "ttl_mode": "last_interaction", "record": False})
    session = json.loads(body)

    call = place_call("+6594000020", session["virtual_number"], uas="uas_answer.xml", talk_ms=1000)

    assert call.counterpart.succeeded, call.counterpart.output
    status, body = call_api(stack, api_token, "GET", f"/v1/sessions/{session['id']}")
    after = json.loads(body)
    assert after["ttl_mode"] == "last_interaction" and after["expires_at"] > session["expires_at"]
